"""The access log: HAProxy's httplog/tcplog lines parsed and named, both output formats read back, rotation,
the collector over a real UNIX datagram socket, the latency window, and `haplane logs`."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haplane.accesslog import (
    AccessLogCollector,
    FileSink,
    LatencyWindow,
    format_record,
    log_target,
    names_of,
    parse_haproxy_line,
    parse_output_line,
)
from haplane.model.haproxy import Backend, Config, Server
from haplane.settings import load

# lines exactly as HAProxy 2.6 sends them with `format raw` (captured from a real one)
HTTP = ('127.0.0.1:39956 [01/Dec/2026:02:37:18.937] http web/s1 0/0/0/1/1 200 417 - - ---- 1/1/0/0/0 0/0 '
        '"GET /a?b=1 HTTP/1.1"')
HTTP_404_QUOTE = ('127.0.0.1:39960 [01/Dec/2026:02:37:18.939] http web/s2 0/0/0/3/3 404 500 - - ---- 1/1/0/0/0 0/0 '
                  '"GET /nope?a=#22b#22 HTTP/1.1"')
NOSRV = ('127.0.0.1:40000 [01/Dec/2026:02:37:19.001] http http/<NOSRV> 0/-1/-1/-1/0 503 217 - - SC-- 1/1/0/0/0 0/0 '
         '"GET / HTTP/1.1"')
TCP = "127.0.0.1:41310 [01/Dec/2026:02:37:18.942] tcpfe db/s1 0/0/12 417 -- 1/1/0/0/0 0/0"


def names(backend: str, server: str) -> tuple[str | None, str | None]:
    return {("web", "s1"): ("web", "i-1"), ("web", "s2"): ("web", "i-2"), ("db", "s1"): ("db", "pg-a")}.get(
        (backend, server), (None, None))


def test_http_line_named_and_timed() -> None:
    parsed = parse_haproxy_line(HTTP, names)
    assert parsed is not None
    rec, span = parsed
    assert (rec.service, rec.instance, rec.status, rec.bytes) == ("web", "i-1", 200, 417)
    assert (rec.request_ms, rec.queue_ms, rec.connect_ms, rec.response_ms, rec.total_ms) == (0, 0, 0, 1, 1)
    assert (rec.method, rec.path, rec.http_version, rec.termination) == ("GET", "/a?b=1", "HTTP/1.1", "----")
    assert rec.status_class == "2xx"
    # local time, as HAProxy writes it
    assert time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime(rec.time)) == "01/Dec/2026:02:37:18"
    assert HTTP[span[0]:span[1]] == "web/s1"


def test_output_never_names_a_slot() -> None:
    for line in (HTTP, HTTP_404_QUOTE, TCP):
        rec, span = parse_haproxy_line(line, names)  # type: ignore[misc]
        text = format_record(rec, line, span, "haproxy")
        assert "/s1 " not in text and "/s2 " not in text
        doc = json.loads(format_record(rec, line, span, "json"))
        assert doc["instance"] in ("i-1", "i-2", "pg-a") and "s1" not in json.dumps(doc)
    # a server the agent does not know (a free slot) is named by nobody, not by its slot
    rec, _ = parse_haproxy_line(HTTP.replace("web/s1", "web/s7"), names)  # type: ignore[misc]
    assert rec.instance is None


def test_both_formats_read_back() -> None:
    for line in (HTTP, HTTP_404_QUOTE, NOSRV, TCP):
        rec, span = parse_haproxy_line(line, names)  # type: ignore[misc]
        for fmt in ("json", "haproxy"):
            back = parse_output_line(format_record(rec, line, span, fmt))  # type: ignore[arg-type]
            assert back is not None, (fmt, line)
            assert (back.service, back.instance, back.status, back.total_ms, back.path) == \
                   (rec.service, rec.instance, rec.status, rec.total_ms, rec.path)
            assert abs(back.time - rec.time) < 0.002
    assert parse_output_line("not a log line") is None
    assert parse_output_line('{"time": "x"}') is None


def test_nosrv_and_tcp() -> None:
    rec, _ = parse_haproxy_line(NOSRV, names)  # type: ignore[misc]
    assert (rec.service, rec.instance, rec.status, rec.termination) == (None, None, 503, "SC--")
    rec, _ = parse_haproxy_line(TCP, names)  # type: ignore[misc]
    assert (rec.service, rec.instance, rec.status, rec.total_ms, rec.connect_ms) == ("db", "pg-a", None, 12, 0)


def test_names_of_config() -> None:
    be = Backend("web", servers=(Server("s1", "127.0.0.2", 80, instance="i-1"), Server("s2", "127.0.0.1", 1)),
                 slotted=True, owner="service:web")
    fb = Backend("web_fallback", servers=(Server("s1", "127.0.0.3", 80, instance="i-9"),), slotted=True,
                 owner="service:web")
    static = Backend("legacy", servers=(Server("m1", "127.0.0.4", 8080),), owner="backend:legacy")
    n = names_of(Config(backends=(be, fb, static)))
    assert n[("web", "s1")] == ("web", "i-1") and n[("web", "s2")] == ("web", None)
    assert n[("web_fallback", "s1")] == ("web", "i-9")
    assert n[("legacy", "m1")] == ("legacy", "127.0.0.4:8080")


def test_log_target_modes(tmp_path: Path) -> None:
    sock = tmp_path / "log.sock"
    assert log_target(sock, "off", 10) is None
    assert log_target(sock, "full", 10) == f"{sock} len 8192 format raw local0 info"
    assert log_target(sock, "sampled", 25) == f"{sock} len 8192 format raw sample 1:25 local0 info"


def test_a_mistyped_access_log_setting_is_refused() -> None:
    from haplane.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"setting access_log \(HAPLANE_ACCESS_LOG\): 'ful'"):
        load(env={"HAPLANE_ACCESS_LOG": "ful"})
    with pytest.raises(ConfigurationError, match="access_log_sample"):
        load(env={"HAPLANE_ACCESS_LOG_SAMPLE": "ten"})
    with pytest.raises(ConfigurationError, match=r"haproxy_stats_address.*loopback"):
        load(env={"HAPLANE_HAPROXY_STATS_ADDRESS": "10.0.0.1"})
    with pytest.raises(ConfigurationError, match="access_log_format"):
        load({"access_log_format": "xml"}, env={})
    assert load(env={"HAPLANE_ACCESS_LOG": "sampled"}).access_log == "sampled"


def test_file_sink_rotates(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    sink = FileSink(path, max_bytes=4096, keep=2)
    for i in range(200):
        sink.write([f"line {i:04d} " + "x" * 40])
    sink.close()
    assert path.exists() and (tmp_path / "access.log.1").exists() and (tmp_path / "access.log.2").exists()
    assert not (tmp_path / "access.log.3").exists()
    assert all(p.stat().st_size <= 4096 for p in tmp_path.glob("access.log*"))
    assert path.read_text().splitlines()[-1].startswith("line 0199")


class ListSink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)

    def close(self) -> None:
        pass


async def test_collector_reads_datagrams(tmp_path: Path) -> None:
    sink = ListSink()
    window = LatencyWindow()
    c = AccessLogCollector(tmp_path / "log.sock", sink, names, "json", observers=[window.observe])
    await c.start()
    try:
        out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for line in (HTTP, HTTP_404_QUOTE, "garbage", TCP):
            out.sendto((line + "\n").encode(), str(tmp_path / "log.sock"))
        for _ in range(100):
            if len(sink.lines) == 3:
                break
            await asyncio.sleep(0.01)
        assert [json.loads(x)["instance"] for x in sink.lines] == ["i-1", "i-2", "pg-a"]
        assert (c.received, c.unparsed) == (4, 1)
    finally:
        await c.stop()
    assert not (tmp_path / "log.sock").exists()


def test_latency_window_quantiles() -> None:
    now = [1000.0]
    w = LatencyWindow(window=60, clock=lambda: now[0])
    base = parse_haproxy_line(HTTP, names)[0]  # type: ignore[index]
    from dataclasses import replace

    for ms in range(1, 101):  # 1..100 ms
        w.observe(replace(base, total_ms=ms))
    p95 = w.quantile("web", 0.95)
    assert p95 is not None and 90 <= p95 <= 120  # within a bucket (25 %) of 95
    assert w.quantile("web", 0.95, "i-1") == p95
    assert w.quantile("web", 0.95, "i-2") is None
    now[0] += 61  # out of the window
    assert w.quantile("web", 0.95) is None


def _logs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "haplane", "logs", *args], capture_output=True, text=True,
                          timeout=30, cwd=cwd, env={"PATH": "/usr/bin:/bin"})


def test_logs_command_filters_both_formats(tmp_path: Path) -> None:
    lines = []
    for i, line in enumerate((HTTP, HTTP_404_QUOTE, TCP, NOSRV)):
        rec, span = parse_haproxy_line(line, names)  # type: ignore[misc]
        lines.append(format_record(rec, line, span, "json" if i % 2 else "haproxy"))
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    r = _logs("--file", str(log), "--service", "web", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2 and "i-1" in r.stdout and "i-2" in r.stdout
    r = _logs("--file", str(log), "--status", "4xx", "--json", cwd=tmp_path)
    docs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(d["service"], d["instance"], d["status"]) for d in docs] == [("web", "i-2", 404)]
    r = _logs("--file", str(log), "--status", "5xx", cwd=tmp_path)
    assert len(r.stdout.splitlines()) == 1 and "503" in r.stdout
    r = _logs("--file", str(log), "--status", "fivexx", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--status 'fivexx'" in r.stderr
    r = _logs("--state-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert r.returncode == 1 and "access log is off" in r.stderr and "Traceback" not in r.stderr


def test_logs_follow_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    rec, span = parse_haproxy_line(HTTP, names)  # type: ignore[misc]
    first = format_record(rec, HTTP, span, "json")
    log.write_text(first + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "haplane", "logs", "--file", str(log), "-f", "--json"],
                            stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["instance"] == "i-1"
        rec2, span2 = parse_haproxy_line(HTTP_404_QUOTE, names)  # type: ignore[misc]
        line = format_record(rec2, HTTP_404_QUOTE, span2, "json")
        sink = FileSink(log, max_bytes=len(first) + 2 * len(line) + 10, keep=1)
        for _ in range(3):  # the third write rotates the file (once)
            sink.write([line])
            time.sleep(0.3)
        sink.close()
        assert (tmp_path / "access.log.1").exists()
        got = [json.loads(proc.stdout.readline())["status"] for _ in range(3)]
        assert got == [404, 404, 404]
    finally:
        proc.terminate()
        proc.wait(5)
