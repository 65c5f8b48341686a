"""Hostile values in the value types (issue #17): each is a ValidationError naming the field, never an
exception that becomes a 500, and what is accepted stays one pattern in its own place in haproxy.cfg."""

from __future__ import annotations

import pytest

from haplane.compose import compose
from haplane.errors import ValidationError
from haplane.model import values as v
from haplane.model.cfgtokens import split_line
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, Rule
from haplane.render import render

NON_ASCII = ["\u2028", "\u00a0", "ß", "\U0001f600", "/caf\u00e9"]


@pytest.mark.parametrize("bad", ["²", "1²", "٣", "\U0001d7e0", "8" * 5000, "1" * 31, "Ⅻ"])
def test_non_ascii_digits_and_huge_numbers_are_validation_errors(bad: str) -> None:
    for check in (lambda x: v.port(x, "port"), lambda x: v.weight(x, "weight"),
                  lambda x: v.integer(x, "slot", 0, 10**6), lambda x: v.milliseconds(x, "interval_ms")):
        with pytest.raises(ValidationError) as exc:
            check(bad)
        assert exc.value.field in ("port", "weight", "slot", "interval_ms")


@pytest.mark.parametrize("raw", ["127.0.0.2:²", "127.0.0.2:8" + "0" * 5000, "[::1]:\uff18\uff10"])
def test_a_port_inside_an_address_is_ascii_digits(raw: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Instance.from_dict({"address": raw}, service="s", id="i")
    assert exc.value.field == "address"


@pytest.mark.parametrize("bad", ["::1%lo", "fe80::1%eth0", "[fe80::1%eth0]", "[fe80::1%25eth0]", "0x7f.1",
                                 "127.1", "0x7f000001", "2130706433"])
def test_addresses_haproxy_would_read_otherwise_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        v.address(bad, "address")
    assert exc.value.field == "address"


def test_ordinary_addresses_still_pass() -> None:
    assert v.address("fe80::1", "a") == "fe80::1"
    assert v.address("[::1]", "a") == "::1"
    assert v.address("db1.internal", "a") == "db1.internal"
    assert v.address("10.0.0.1", "a") == "10.0.0.1"


@pytest.mark.parametrize("bad", ["\ud800", "/a\udfff", "^/x\ud800$"])
def test_a_lone_surrogate_is_a_validation_error_everywhere(bad: str) -> None:
    for check in (v.regex, v.match_value, v.name, v.path_prefix, v.host_name, v.version, v.cookie_name,
                  v.header_name, lambda x, f: v.native_line("http-request set-header X " + x, f)):
        with pytest.raises(ValidationError) as exc:
            check(bad, "rules[0].value")
        assert exc.value.field == "rules[0].value"


@pytest.mark.parametrize("op", ["path", "path_beg", "path_reg", "url", "url_beg", "url_reg", "hdr", "hdr_beg",
                                "hdr_dom"])
@pytest.mark.parametrize("char", NON_ASCII)
def test_non_ascii_patterns_are_refused_for_every_rule_type(op: str, char: str) -> None:
    rtype = "path" if op.startswith("path") else "url" if op.startswith("url") else "header"
    with pytest.raises(ValidationError) as exc:
        Rule.from_dict({"type": rtype, "operation": op, "value": "/a" + char, "backend": "b"}, "rules[3]")
    assert exc.value.field == "rules[3].value"
    assert "ASCII" in exc.value.rule


def test_every_alphabet_is_written_in_one_table_and_is_ascii() -> None:
    for kind, alphabet in v.ALPHABETS.items():
        assert alphabet.says, kind
        assert all(ord(c) < 128 for c in alphabet.chars), kind


def _acl_words(op: str, value: str) -> list[tuple[str, ...]]:
    rtype = "path" if op.startswith("path") else "url" if op.startswith("url") else "header"
    fe = FrontendSpec.from_dict({"bind": "127.0.0.1:8080", "backend": "b",
                                 "rules": [{"type": rtype, "operation": op, "value": value, "backend": "b"}]},
                                name="f")
    be = BackendSpec.from_dict({"type": "static", "members": [{"host": "127.0.0.2", "port": 80}]}, name="b")
    cfg = render(compose(Registry((), (), (fe,), (be,))))
    return [split_line(line).words for line in cfg.splitlines() if split_line(line).words[:1] == ("acl",)
            and op in line]


@pytest.mark.parametrize("op", ["path", "path_beg", "path_reg", "url", "url_beg", "url_reg", "hdr", "hdr_beg",
                                "hdr_dom"])
@pytest.mark.parametrize("value", ["-i", "--", "-n", "-u", "-M", "-m", "-f", "-"])
def test_a_rule_value_that_looks_like_an_acl_flag_is_a_pattern(op: str, value: str) -> None:
    lines = _acl_words(op, value)
    assert len(lines) == 1
    words = lines[0]
    # acl NAME CRITERION [-i] -- VALUE: the flags end before the value, whatever it looks like
    assert words[-1] == value and words[-2] == "--", words
    assert "-i" not in words[3:-2] or op.startswith("hdr"), words


@pytest.mark.parametrize("huge", [10**5000, -(10**5000), "9" * 5000], ids=["int", "negative", "string"])
def test_a_huge_number_is_refused_and_its_error_can_be_printed(huge: object) -> None:
    for check in (lambda x: v.port(x, "port"), lambda x: v.seconds(x, "ttl"), lambda x: v.integer(x, "slot", 0, 9)):
        with pytest.raises(ValidationError) as exc:
            check(huge)
        assert len(str(exc.value)) < 300  # repr() of a 5,000-digit int raises: the 422 became a 500
