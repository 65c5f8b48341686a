"""The access log: every request HAProxy handles (or one in N), with service and instance names, written
where the operator says.

How it flows, with no syslog daemon in between:

    HAProxy ──``log <state_dir>/log.sock format raw [sample 1:N]``──▶ AccessLogCollector (UNIX datagram socket)
        ──parse (HAProxy's httplog / tcplog line)──▶ slot → (service, instance) ──▶ file with rotation | stdout
                                                                             └──▶ observers (latency window)

HAProxy writes its own HTTP log format (``option httplog``; TCP frontends fall back to ``tcplog``), one
datagram per request, without a syslog header (``format raw``). It never blocks on the socket: when haplane
does not read fast enough, the kernel drops datagrams and HAProxy counts them. Sampling (``sample 1:N``) is
done by HAProxy itself, so a sampled log costs HAProxy nothing for the requests it skips.

haplane replaces HAProxy's slot names (``web/s3``) by the names the operator knows (``web/i-0abc``), and writes
either JSON (one object a line) or HAProxy's line with the names replaced (``format = "haproxy"``).
``haplane logs`` reads both back (``parse_output_line``).

Who calls what: ``haplane agent``/``up`` builds an ``AccessLogCollector`` with a ``resolve`` function over the
agent's desired config (``names_of``), ``start()`` before HAProxy starts and ``stop()`` at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import re
import socket
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from haplane.errors import ConfigurationError
from haplane.model.haproxy import Config

log = logging.getLogger("haplane.accesslog")

SOCKET_NAME = "log.sock"
LINE_MAX = 8192  # HAProxy's ``len``: longer lines are cut by HAProxy, never split
Mode = Literal["off", "sampled", "full"]
Format = Literal["json", "haproxy"]
Names = Callable[[str, str], tuple[str | None, str | None]]  # (backend, server) -> (service, instance)

# HAProxy's httplog line (configuration manual, 8.2.3), as sent with ``format raw``:
# 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0
#   {captured request headers} {captured response headers} "GET /index.html HTTP/1.1"
_HTTP = re.compile(
    r"(?P<client>\S+) \[(?P<date>[^\]]+)\] (?P<frontend>\S+) (?P<backend>[^/ ]+)/(?P<server>\S+) "
    r"(?P<TR>-?\d+)/(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tr>-?\d+)/\+?(?P<Ta>-?\d+) (?P<status>-?\d+) \+?(?P<bytes>\d+) "
    r"\S+ \S+ (?P<term>\S{4}) (?P<act>\d+)/(?P<fe>\d+)/(?P<be>\d+)/(?P<srv>\d+)/\+?(?P<retries>\d+) "
    r"(?P<sq>\d+)/(?P<bq>\d+)(?: \{[^}]*\})*(?: \"(?P<request>.*)\")?")
# tcplog (8.2.2): 10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0
_TCP = re.compile(
    r"(?P<client>\S+) \[(?P<date>[^\]]+)\] (?P<frontend>\S+) (?P<backend>[^/ ]+)/(?P<server>\S+) "
    r"(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/\+?(?P<Tt>-?\d+) \+?(?P<bytes>\d+) (?P<term>\S{2}) "
    r"(?P<act>\d+)/(?P<fe>\d+)/(?P<be>\d+)/(?P<srv>\d+)/\+?(?P<retries>\d+) (?P<sq>\d+)/(?P<bq>\d+)")


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One request (HTTP) or connection (TCP). Times are milliseconds, -1 where HAProxy did not get that far
    (``request_ms`` .. ``response_ms``); ``total_ms`` is HAProxy's Ta (HTTP) or Tt (TCP)."""

    time: float  # when HAProxy accepted the connection (UNIX seconds)
    client: str
    frontend: str
    service: str | None  # the backend's service (or Thalassa backend), None when no backend was chosen
    instance: str | None  # the instance that answered, None when no server was (NOSRV)
    status: int | None  # HTTP status, None for TCP
    bytes: int  # bytes sent to the client
    request_ms: int
    queue_ms: int
    connect_ms: int
    response_ms: int
    total_ms: int
    termination: str  # HAProxy's termination state: "----" for a normal end (see its manual, 8.5)
    retries: int
    queue_server: int
    queue_backend: int
    method: str | None = None
    path: str | None = None
    http_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _FIELDS}  # not asdict(): this runs for every request
        d["time"] = iso_time(self.time)
        return d

    @property
    def status_class(self) -> str:
        return f"{self.status // 100}xx" if self.status is not None and self.status >= 100 else "other"


_FIELDS = tuple(f.name for f in fields(AccessRecord))
_ISO_CACHE: dict[int, str] = {}


def iso_time(t: float) -> str:
    """RFC 3339 in UTC with milliseconds (``2026-12-01T02:37:18.937Z``), one strftime a second."""
    sec = int(t)
    head = _ISO_CACHE.get(sec)
    if head is None:
        if len(_ISO_CACHE) > 64:
            _ISO_CACHE.clear()
        head = _ISO_CACHE[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{head}.{min(999, int((t - sec) * 1000)):03d}Z"


class _Dates:
    """HAProxy's accept date (local time, ``01/Dec/2026:02:37:18.937``) → UNIX time, one strptime a second."""

    def __init__(self) -> None:
        self._cache: dict[str, float] = {}

    def __call__(self, text: str) -> float:
        head, _, ms = text.rpartition(".")
        base = self._cache.get(head)
        if base is None:
            try:
                base = datetime.strptime(head, "%d/%b/%Y:%H:%M:%S").timestamp()  # local time, like HAProxy's
            except ValueError:
                return time.time()
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[head] = base
        return base + (int(ms) / 1000 if ms.isdigit() else 0.0)


def _none(name: str) -> str | None:
    return None if name in ("<NOSRV>", "-") else name


def parse_haproxy_line(line: str, names: Names | None = None, dates: Callable[[str], float] | None = None
                       ) -> tuple[AccessRecord, tuple[int, int]] | None:
    """An httplog or tcplog line → (record, span of ``backend/server`` in the line), or None if it is neither.
    ``names`` turns HAProxy's (backend, server) into (service, instance)."""
    dates = dates or _Dates()
    m = _HTTP.match(line)
    tcp = m is None
    if m is None:
        m = _TCP.match(line)
        if m is None:
            return None
    backend, server = m["backend"], m["server"]
    # no backend chosen (no rule matched, no default): HAProxy names the frontend itself, with no server
    chosen = not (server == "<NOSRV>" and backend == m["frontend"])
    service, instance = (backend, _none(server)) if chosen else (None, None)
    if names is not None and chosen:
        # the agent's names win; a server it does not know (a free slot) is named by nobody, never by its slot
        s, instance = names(backend, server)
        service = s or service
    span = (m.start("backend"), m.end("server"))
    if tcp:
        rec = AccessRecord(dates(m["date"]), m["client"], m["frontend"], service, instance, None, int(m["bytes"]),
                           -1, int(m["Tw"]), int(m["Tc"]), -1, int(m["Tt"]), m["term"], int(m["retries"]),
                           int(m["sq"]), int(m["bq"]))
        return rec, span
    method = path = version = None
    request = m["request"]
    if request:
        parts = request.split(" ")
        method = parts[0]
        if len(parts) >= 3:
            path, version = " ".join(parts[1:-1]), parts[-1]
        elif len(parts) == 2:
            path = parts[1]
    status = int(m["status"])
    rec = AccessRecord(dates(m["date"]), m["client"], m["frontend"], service, instance,
                       status if status >= 0 else None, int(m["bytes"]), int(m["TR"]), int(m["Tw"]), int(m["Tc"]),
                       int(m["Tr"]), int(m["Ta"]), m["term"], int(m["retries"]), int(m["sq"]), int(m["bq"]),
                       method, path, version)
    return rec, span


def format_record(rec: AccessRecord, line: str, span: tuple[int, int], fmt: Format) -> str:
    """The output line: JSON, or HAProxy's own line with ``backend/slot`` replaced by ``service/instance``."""
    if fmt == "json":
        return json.dumps(rec.to_dict(), separators=(",", ":"), ensure_ascii=False)
    if rec.service is None:
        return line
    return f"{line[:span[0]]}{rec.service}/{rec.instance or '<NOSRV>'}{line[span[1]:]}"


def parse_output_line(line: str) -> AccessRecord | None:
    """A line of haplane's access log (either format) → its record; None for anything else."""
    line = line.rstrip("\n")
    if line.startswith("{"):
        try:
            d = json.loads(line)
            d["time"] = datetime.fromisoformat(d["time"].replace("Z", "+00:00")).timestamp()
            return AccessRecord(**d)
        except (ValueError, TypeError, KeyError):
            return None
    parsed = parse_haproxy_line(line)
    return parsed[0] if parsed else None


def names_of(config: Config) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(backend, server) → (service, instance) for every server of ``config``: a service's backends (and its
    fallback) name the service, a Thalassa backend names itself; a slot names its instance, a static member
    its address; a spare of a pool names the service it holds, and a free one is left out."""
    out: dict[tuple[str, str], tuple[str, str | None]] = {}
    for be in config.backends:
        if be.free_spare:
            continue
        _kind, _, owner = be.owner.partition(":")
        service = owner or be.name
        for srv in be.servers:
            out[(be.name, srv.name)] = (service, srv.instance if srv.instance is not None else (
                None if be.slotted else srv.endpoint))
    return out


# --- where the lines go ----------------------------------------------------------------------------------


class Sink(Protocol):
    def write(self, lines: list[str]) -> None: ...
    def close(self) -> None: ...


class FileSink:
    """A file rotated by size (``path``, ``path.1`` .. ``path.N``), through the standard library's
    ``RotatingFileHandler``; one write per batch of lines."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=keep,
                                                            encoding="utf-8", delay=True)
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, lines: list[str]) -> None:
        if lines:
            self.handler.emit(logging.makeLogRecord({"msg": "\n".join(lines), "levelno": logging.INFO}))

    def close(self) -> None:
        self.handler.close()


class StreamSink:
    """A stream (haplane's stdout: its own logs go to stderr)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def write(self, lines: list[str]) -> None:
        if lines:
            with contextlib.suppress(ValueError, OSError):
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()

    def close(self) -> None:
        return None


# --- what the UI and /metrics learn from it --------------------------------------------------------------

_BOUNDS_MS = tuple(round(0.5 * 1.25 ** i, 3) for i in range(64))  # 0.5 ms .. ~800 s, 25 % apart


class LatencyWindow:
    """Response times of the last ``window`` seconds per service and per (service, instance), in buckets 25 %
    apart: ``p(service, 0.95)`` is within a bucket's width of the true 95th percentile. Fed by the collector
    (every logged request); cheap enough for thousands of requests a second."""

    def __init__(self, window: float = 60.0, slices: int = 6, clock: Callable[[], float] = time.time) -> None:
        self.width = window / slices
        self.slices = slices
        self.clock = clock
        # key -> {slice number -> counts per bucket}
        self._data: dict[tuple[str, str | None], dict[int, list[int]]] = {}

    def observe(self, rec: AccessRecord) -> None:
        if rec.service is None or rec.total_ms < 0 or rec.status is None:
            return
        now = int(self.clock() // self.width)
        b = min(bisect_left(_BOUNDS_MS, rec.total_ms), len(_BOUNDS_MS) - 1)
        for key in ((rec.service, None), (rec.service, rec.instance)):
            slices = self._data.get(key)
            if slices is None:
                slices = self._data[key] = {}
            counts = slices.get(now)
            if counts is None:
                counts = slices[now] = [0] * len(_BOUNDS_MS)
                for old in [s for s in slices if s <= now - self.slices]:
                    del slices[old]
            counts[b] += 1

    def quantile(self, service: str, q: float, instance: str | None = None) -> float | None:
        """The ``q`` quantile of total time (ms) over the window, or None without requests."""
        slices = self._data.get((service, instance))
        if not slices:
            return None
        now = int(self.clock() // self.width)
        merged = [0] * len(_BOUNDS_MS)
        for s, counts in slices.items():
            if s > now - self.slices:
                merged = [a + b for a, b in zip(merged, counts, strict=True)]
        total = sum(merged)
        if not total:
            return None
        rank, seen = q * total, 0
        for i, n in enumerate(merged):
            seen += n
            if seen >= rank:
                return _BOUNDS_MS[i]
        return _BOUNDS_MS[-1]

    def quantiles(self, q: float) -> dict[tuple[str, str | None], float]:
        out = {}
        for service, instance in list(self._data):
            v = self.quantile(service, q, instance)
            if v is not None:
                out[(service, instance)] = v
        return out


# --- the collector ---------------------------------------------------------------------------------------


class AccessLogCollector:
    """Receives HAProxy's log datagrams on ``socket_path``, names them and writes them to ``sink``.

    ``names`` resolves (backend, server) at the moment a line arrives (milliseconds after the request, well
    within a freed slot's rest). ``observers`` see every record (the latency window, metrics)."""

    def __init__(self, socket_path: Path, sink: Sink, names: Names | None = None, fmt: Format = "json",
                 observers: Iterable[Callable[[AccessRecord], None]] = ()) -> None:
        self.socket_path = socket_path
        self.sink = sink
        self.names = names
        self.fmt: Format = fmt
        self.observers = list(observers)
        self.received = 0
        self.unparsed = 0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dates = _Dates()

    async def start(self) -> None:
        """Bind the socket (replacing a stale one left by a crash) and start reading."""
        path = str(self.socket_path)
        if len(path.encode()) >= 104:
            raise ConfigurationError(f"access log socket path {path!r} is too long for a UNIX socket (keep the "
                                     "state directory path under ~90 characters)")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o600)
        except OSError as exc:
            sock.close()
            raise ConfigurationError(f"cannot open the access log socket {path}: {exc.strerror}") from None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.setblocking(False)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        log.info("access log: HAProxy logs to %s; writing %s", path, self.fmt)
        qlen = dgram_queue_length()
        if qlen is not None and qlen < 512:
            log.warning("access log: the kernel queues only %d datagrams on a UNIX socket (net.unix."
                        "max_dgram_qlen): HAProxy drops log lines whenever haplane is not scheduled within a few "
                        "milliseconds at thousands of requests a second; raise it (sysctl -w net.unix."
                        "max_dgram_qlen=1024) or log sampled", qlen)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        lines: list[str] = []
        for _ in range(4096):  # then give the loop back; the reader fires again at once if more are waiting
            try:
                data = sock.recv(LINE_MAX + 64)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("access log socket: %s", exc)
                break
            out = self.handle(data.decode("utf-8", "replace").rstrip("\n"))
            if out is not None:
                lines.append(out)
        if lines:
            try:
                self.sink.write(lines)
            except OSError as exc:
                log.warning("cannot write the access log: %s", exc)

    def handle(self, line: str) -> str | None:
        """One HAProxy line → the output line (None if it is not an access log line)."""
        self.received += 1
        parsed = parse_haproxy_line(line, self.names, self._dates)
        if parsed is None:
            self.unparsed += 1
            return None
        rec, span = parsed
        for observe in self.observers:
            observe(rec)
        return format_record(rec, line, span, self.fmt)

    async def stop(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._readable()  # what already arrived
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
        self.sink.close()


def dgram_queue_length() -> int | None:
    """``net.unix.max_dgram_qlen``: how many datagrams wait on a UNIX socket before senders are refused."""
    try:
        return int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    except (OSError, ValueError):
        return None


def log_target(socket_path: Path, mode: Mode, sample: int) -> str | None:
    """The ``log`` line's arguments (global section) for ``mode``: None when off."""
    if mode == "off":
        return None
    sampling = f" sample 1:{int(sample)}" if mode == "sampled" else ""
    return f"{socket_path} len {LINE_MAX} format raw{sampling} local0 info"


def open_sink(to: str, default_path: Path, max_bytes: int, keep: int) -> Sink:
    """``-``: stdout; empty: ``default_path``; otherwise that file."""
    if to == "-":
        return StreamSink()
    return FileSink(Path(to) if to else default_path, max_bytes, keep)


def resolver(names: Callable[[], Mapping[tuple[str, str], tuple[str, str | None]]]) -> Names:
    """A ``Names`` over a mapping that may be replaced (the agent's names after each reload)."""

    def resolve(backend: str, server: str) -> tuple[str | None, str | None]:
        hit = names().get((backend, server))
        return (hit[0], hit[1]) if hit is not None else (None, None)

    return resolve
