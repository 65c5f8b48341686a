"""Property: any string in any field is either rejected with a clear error naming that field, or rendered
into a config that real `haproxy -c` accepts, with the value inside its own line and token position."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haplane.compose import compose_table
from haplane.errors import ValidationError
from haplane.registry.payload import merge_payload, parse_payload
from haplane.render import render

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy binary not installed")

NASTY = "\n\r\t #'\"\\${}[]:;,/%&=?*!@~()<>|`^" + "\x00\x0b\x7f" + "é"
text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.text(alphabet=st.sampled_from("abcXYZ019.-_" + NASTY), min_size=0, max_size=20),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True),
    st.from_regex(r"/?[a-z0-9._~-]{0,10}(/[a-z0-9%]{0,5})?", fullmatch=True),
)


def base() -> dict[str, Any]:
    return {"table": "t", "running": [], "candidates": [{
        "serviceName": "svc", "configMode": "host", "predicate": "a.example.com", "cookie": "SID",
        "containers": [{"id": "c1", "ip": "127.0.0.2:8080"}]}]}


def haproxy_check(cfg: str) -> subprocess.CompletedProcess[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as fh:
        fh.write(cfg)
        fh.flush()
        return subprocess.run([HAPROXY, "-c", "-q", "-f", fh.name], capture_output=True, text=True, timeout=30)


def lines_with(cfg: str, first: str) -> list[list[str]]:
    return [line.split() for line in cfg.splitlines() if line.split()[:1] == [first]]


Setter = Callable[[dict[str, Any], str], None]
Finder = Callable[[str, Any], bool]


def _set_candidate(key: str) -> Setter:
    def setter(p: dict[str, Any], value: str) -> None:
        p["candidates"][0][key] = value
    return setter


def _set_container(key: str) -> Setter:
    def setter(p: dict[str, Any], value: str) -> None:
        p["candidates"][0]["containers"][0][key] = value
    return setter


def _path_mode(p: dict[str, Any], value: str) -> None:
    p["candidates"][0]["configMode"] = "path"
    p["candidates"][0]["predicate"] = value


CASES: dict[str, tuple[Setter, str, Callable[[str, list[list[str]]], bool]]] = {
    # field path, setter, first word of the line that must carry it, check on that line's tokens
    "candidates[0].serviceName": (_set_candidate("serviceName"), "backend",
                                  lambda v, ls: [["backend", v]] == ls),
    "candidates[0].predicate": (_set_candidate("predicate"), "acl",
                                lambda v, ls: len(ls) == 1 and ls[0][-1] == v.lower().rstrip(".")
                                and len(ls[0]) == 6),
    "candidates[0].cookie": (_set_candidate("cookie"), "cookie",
                             lambda v, ls: ls == [["cookie", v, "prefix", "nocache"]]),
    "candidates[0].containers[0].id": (_set_container("id"), "server",
                                       lambda v, ls: len(ls) == 1 and ls[0][1] == v and ls[0][4] == v),
    "candidates[0].containers[0].ip": (_set_container("ip"), "server",
                                       lambda v, ls: len(ls) == 1 and len(ls[0]) == 6),
    "path-predicate": (_path_mode, "acl",
                       lambda v, ls: all(len(t) == 4 for t in ls) and ls[0][3].strip("/") == v.strip("/")),
}


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=text)
def test_every_string_is_rejected_or_stays_in_place(case: str, value: str) -> None:
    setter, first, ok = CASES[case]
    payload = base()
    setter(payload, value)
    try:
        table, _ = merge_payload(parse_payload(payload), {})
    except ValidationError as exc:
        expected_field = "candidates[0].predicate" if case == "path-predicate" else case
        assert exc.field == expected_field, (exc.field, str(exc))
        assert str(exc).startswith(expected_field + ":")
        return
    cfg = render(compose_table(list(table.values())))
    if value == "" and case in ("candidates[0].predicate", "candidates[0].cookie", "path-predicate"):
        # an empty optional value means 'not set': no routing rule / no stickiness, nothing rendered
        assert lines_with(cfg, first) == [], cfg
        return
    # the value never opened a new line, section or comment
    assert "#" not in cfg.split("\n", 1)[1]
    assert ok(value, lines_with(cfg, first)), cfg
    result = haproxy_check(cfg)
    assert result.returncode == 0, (value, result.stdout, result.stderr, cfg)
