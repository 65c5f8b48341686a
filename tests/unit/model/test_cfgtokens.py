"""model.cfgtokens splits a line as HAProxy 2.6 does: held to the manual's rules and to real HAProxy, which
tells its own split through ``.notice WORD`` (it prints the one word after ``.notice``, or names the second one
as an unexpected argument)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haplane.model.cfgtokens import LineError, split_line

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@pytest.mark.parametrize(("line", "words"), [
    ("  acl a path /x  ", ("acl", "a", "path", "/x")),
    ('"global"', ("global",)),
    ("'global' x", ("global", "x")),
    ("\\x67lobal", ("global",)),
    ('"frontend" x', ("frontend", "x")),
    ("a\\ b c", ("a b", "c")),
    ("a#b c", ("a",)),
    ("a\\#b c", ("a#b", "c")),
    ("'a#b' c", ("a#b", "c")),
    ("'a\\x41'", ("a\\x41",)),
    ('"a\\x41"', ("aA",)),
    ("a\\qb", ("a\\qb",)),
    ("$HOME", ("$HOME",)),
    ("'$HOME'", ("$HOME",)),
    ('"\\$HOME"', ("$HOME",)),
    ('x "a"\'b\'c', ("x", "abc")),
    ("a\tb\vc\fd", ("a", "b", "c", "d")),
    ("a\nb", ("a",)),
    ('x ""', ("x",)),
    ('x "" y', ("x", "", "y")),
    ("# all comment", ()),
    ("", ()),
])
def test_split(line: str, words: tuple[str, ...]) -> None:
    assert split_line(line).words == words


def test_variables_are_named_never_read_here() -> None:
    os.environ.setdefault("HOME", "/root")
    line = split_line('x "$HOME" "${A}" "${B-dflt}" "${C[*]}"')
    assert line.env == ("HOME", "A", "B", "C")
    assert line.words == ("x", "", "", "dflt")  # a trailing empty word is no word
    assert split_line('"${.LINE}"').env == (".LINE",)


@pytest.mark.parametrize("bad", ['"open', "'open", '"${A"', '"$1"', '"${.X}"', "\\x4", "\\xZZ", '"${A[x]}"'])
def test_lines_haproxy_refuses(bad: str) -> None:
    with pytest.raises(LineError):
        split_line(bad)


def test_scope_lines() -> None:
    assert split_line("  [scope]").scope


# what HAProxy says about '.notice <fuzz>' on line N
_NOTICE = re.compile(r"parsing \[[^:]+:(\d+)\]: '(.*)'\.$")
_UNEXPECTED = re.compile(r"parsing \[[^:]+:(\d+)\]: Unexpected argument '(.*)' for '\.notice'")
_REFUSED = re.compile(r"parsing \[[^:]+:(\d+)\]: (unmatched|forbidden|truncated)")

_PIECES = [*"ab$ {}-_.x4F#'\"\\\t[*]", "\\x", "${", "\\x6", "HOME"]
fuzz = st.lists(st.sampled_from(_PIECES), max_size=14).map("".join).filter(
    lambda s: ".LINE" not in s and ".FILE" not in s and ".SECTION" not in s)


def _haproxy_says(lines: list[str], tmp: Path) -> dict[int, tuple[str, str]]:
    path = tmp / "t.cfg"
    path.write_text("".join(f".notice {line}\n" for line in lines))
    out = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, timeout=30,
                         env={"PATH": os.environ.get("PATH", "")})
    # HAProxy prints the bytes a word holds: `\xff` is byte 0xff, not UTF-8; latin-1 reads byte N as chr(N), which
    # is what split_line makes of `\xHH` (reading the output as UTF-8 failed on such words, one run in four)
    said: dict[int, tuple[str, str]] = {}
    for text in (out.stdout + out.stderr).decode("latin-1").splitlines():
        for kind, rx in (("one", _NOTICE), ("second", _UNEXPECTED), ("refused", _REFUSED)):
            m = rx.search(text)
            if m:
                said[int(m.group(1))] = (kind, m.group(2))
                break
    return said


@pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy binary not installed")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(fuzz, min_size=1, max_size=40))
def test_the_split_is_haproxys_own(lines: list[str], tmp_path: Path) -> None:
    said = _haproxy_says(lines, tmp_path)
    for n, line in enumerate(lines, start=1):
        try:
            words = split_line(".notice " + line).words
        except LineError:
            assert said.get(n, ("", ""))[0] == "refused", (line, said.get(n))
            continue
        if len(words) > 2 and words[2] != "":
            assert said.get(n) == ("second", words[2]), (line, words, said.get(n))
        else:
            assert said.get(n) == ("one", words[1] if len(words) > 1 else ""), (line, words, said.get(n))
