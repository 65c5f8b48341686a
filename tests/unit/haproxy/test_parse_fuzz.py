"""Property: whatever HAProxy (or something in its place) answers, the parsers of its answers return a value of
their type or raise the one documented parse error (``HAProxyParseError``) -- never anything else, and never
stall. Garbage, real answers cut short, fields added, dropped or swapped, huge numbers, NUL and other control
characters, bytes that are not UTF-8 (the runtime client decodes with replacement characters)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import haproxy_samples as samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haplane.agent.stats import parse_live
from haplane.errors import HAProxyParseError, HAProxyUnavailable
from haplane.haproxy import parse, runtime
from haplane.model.observed import CheckResult, Info, ProcInfo
from haplane.tls import runtime as ssl

SHOW_SSL_CERT = "# transaction\n*/x/a.pem\n# filename\n/x/a.pem\n/x/b.pem\n"
CRT_LIST = "# /x/list\n/x/a.pem [alpn h2] a.example.com\n/x/b.pem\n"
SSL_DETAIL = ("Filename: /x/a.pem\nStatus: Used\nSerial: 01\nSHA1 FingerPrint: ABCDEF\n"
              "notAfter: Jan  1 00:00:00 2030 GMT\n")
REAL = [samples.SERVERS_STATE, samples.SHOW_STAT, samples.SHOW_PROC, samples.SHOW_PROC_OLD_WORKER,
        samples.CHECK_OUTPUT, samples.CHECK_OUTPUT_PROXY, samples.SHOW_INFO, samples.SHOW_MAP, samples.MAP_LIST,
        SHOW_SSL_CERT, CRT_LIST, SSL_DETAIL]

HUGE = ["9" * 5000, "-" + "9" * 5000, "18446744073709551616", "1e308", "nan", "0x" + "f" * 40, "-0", "١٢٣"]
JUNK = ["", " ", "#", "# be_id", ",", "\x00", "\x7f", "\ufffd", "\r", "\t", '"', '""', "[", "]", "0x", ":", "(", ")"]
SEPARATORS = [" ", ",", "\n", "\t", ":", "\r\n"]


@st.composite
def mangled(draw: st.DrawFn) -> str:
    """A real answer with its lines cut, dropped, repeated or their fields replaced, or garbage outright."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        raw = draw(st.binary(max_size=400))
        return raw.decode("utf-8", "replace")  # as the runtime client decodes what it reads
    if choice == 1:
        return draw(st.text(max_size=300))
    text = draw(st.sampled_from(REAL))
    lines = text.split("\n")
    out = []
    for line in lines:
        action = draw(st.integers(0, 7))
        if action == 0:
            continue  # dropped
        if action == 1:
            line = line[:draw(st.integers(0, max(0, len(line))))]  # truncated
        elif action == 2:
            sep = draw(st.sampled_from(SEPARATORS))
            fields = line.split(sep)
            if fields:
                i = draw(st.integers(0, len(fields) - 1))
                fields[i] = draw(st.sampled_from(HUGE + JUNK) | st.text(max_size=8))
                if draw(st.booleans()):
                    fields.insert(i, draw(st.sampled_from(HUGE + JUNK)))
                if draw(st.booleans()) and len(fields) > 1:
                    del fields[draw(st.integers(0, len(fields) - 1))]
            line = sep.join(fields)
        elif action == 3:
            line = line * draw(st.integers(2, 3))  # repeated
        elif action == 4:
            out.append(line)  # the line twice
        out.append(line)
    if choice == 4 and out:
        out = out[:draw(st.integers(0, len(out)))]  # the answer cut short
    return "\n".join(out)


def _expect(fn: Callable[[str], Any], text: str, kind: type | tuple[type, ...]) -> None:
    try:
        value = fn(text)
    except HAProxyParseError:
        return
    assert isinstance(value, kind), (fn, value)


PARSERS: list[tuple[Callable[[str], Any], type | tuple[type, ...]]] = [
    (parse.parse_servers_state, list), (parse.parse_stat, list), (parse.parse_info, Info),
    (parse.parse_kv, dict), (parse.parse_show_proc, ProcInfo), (parse.parse_show_map, dict),
    (parse.parse_map_list, dict), (lambda t: parse.parse_get_map(t, "a.test"), (str, type(None))),
    (parse.parse_uptime, int), (lambda t: parse.parse_check_output(t, 1), CheckResult),
    (lambda t: parse.config_lines((t,)), tuple), (lambda t: parse.named_proxies((t,)), tuple),
    (lambda t: parse.proxy_lines((t,), t), tuple),
    (lambda t: parse.filter_server_state(t, {("b", "s1"): ("1.2.3.4", 80)}), tuple),
    (lambda t: parse.answer_error("set server b/s addr 1.2.3.4", t), (str, type(None))),
    (lambda t: parse.answer_error("show stat", t), (str, type(None))),
    (parse_live, list), (ssl.parse_show_ssl_cert, tuple), (ssl.parse_crt_list, tuple),
    (ssl.parse_ssl_cert_detail, dict),
]


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(text=mangled())
def test_every_parser_returns_a_value_or_its_documented_error(text: str) -> None:
    for fn, kind in PARSERS:
        _expect(fn, text, kind)


def test_answers_far_larger_than_any_real_one_do_not_stall() -> None:
    """Long lines of what the regular expressions look for, without what ends a match: linear work each."""
    for text in ["1 master 0 " + "x" * 200_000 + " y z q", "[" + "a:1" * 100_000, "0x" + " " * 200_000 + "k v",
                 "# pxname,svname\n" + '"' + "a" * 300_000 + '",b', "0 (" + "(" * 100_000 + ") ",
                 "[ALERT] " + "(1) " * 50_000 + ": x"]:
        for fn, kind in PARSERS:
            _expect(fn, text, kind)


@settings(max_examples=200, deadline=2000)
@given(chunks=st.lists(st.binary(max_size=64) | st.sampled_from([b"\n> ", b"\n\n> ", b"> ", b"\n", b"\xff\xfe"]),
                       max_size=20),
       count=st.integers(1, 5))
def test_the_runtime_framing_reads_answers_or_says_haproxy_is_unavailable(chunks: list[bytes], count: int) -> None:
    """The stream of a Runtime API connection, cut anywhere, with any bytes: ``count`` answers (strings) or
    ``HAProxyUnavailable`` when it ends first -- nothing else."""
    async def read() -> list[str] | None:
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        try:
            return await runtime._Frames().read(reader, count, "test")
        except HAProxyUnavailable:
            return None

    answers = asyncio.run(read())
    assert answers is None or (len(answers) == count and all(isinstance(a, str) for a in answers))
