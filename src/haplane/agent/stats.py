"""Live traffic figures from HAProxy's ``show stat``: request rate, errors and response time per frontend,
backend and server, kept as short histories for the UI's charts, the overview and /metrics.

HAProxy's counters are totals since its worker started; the sampler turns two consecutive samples into
rates (a counter that went down means a new worker after a reload: that interval counts from zero).
Sampling is once a second while someone watches (a page, a stream) and once every ``idle_interval`` seconds
otherwise (``start()``; 0 stops sampling while nobody watches), so the charts can show the last hour; histories
are kept compactly (``Track``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from haplane.errors import HaplaneError

log = logging.getLogger("haplane.agent.stats")

Key = tuple[str, str]  # (proxy, "FRONTEND" | "BACKEND" | server name)
_TYPES = {"0": "frontend", "1": "backend", "2": "server", "3": "listener"}


class LiveRow(NamedTuple):
    """The columns of one ``show stat`` row that the live views use. ``haproxy.parse.parse_stat`` reads every
    column into a ``StatRow``; a once-a-second sampler of thousands of servers cannot afford that (a 2 MB answer
    for 8,000 servers: 340 ms against 45 ms here), so it picks these by index."""

    pxname: str
    svname: str
    type: str
    status: str
    weight: int | None
    uweight: int | None
    scur: int
    stot: int
    req_tot: int
    answers: int  # HTTP responses of every class
    errors: int  # 5xx answers + connection and response errors (+ bad requests, on frontends)
    rtime: int
    chkfail: int
    check_status: str | None
    # traffic counters and times for /metrics (HAProxy's, since its worker started; times in ms, averaged by
    # HAProxy over the last 1024 requests; *_max: the largest seen)
    hrsp: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)  # 1xx, 2xx, 3xx, 4xx, 5xx, other
    bin: int = 0
    bout: int = 0
    qcur: int = 0
    qtime: int = 0
    ctime: int = 0
    ttime: int = 0
    econ: int = 0
    eresp: int = 0
    wretr: int = 0
    wredis: int = 0
    rtime_max: int = 0
    ttime_max: int = 0

    @property
    def key(self) -> Key:
        return (self.pxname, self.svname)


_COLUMNS = ("pxname", "svname", "type", "status", "weight", "uweight", "scur", "stot", "req_tot", "hrsp_1xx",
            "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other", "econ", "eresp", "ereq", "rtime", "chkfail",
            "check_status", "bin", "bout", "qcur", "qtime", "ctime", "ttime", "wretr", "wredis", "rtime_max",
            "ttime_max")


def _n(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _weight(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else None


def parse_live(text: str) -> list[LiveRow]:
    """``show stat`` (CSV) → the rows the live views need; listeners are left out."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#"):
        return []
    header = [h.strip() for h in lines[0].lstrip("#").split(",")]
    index = {h: i for i, h in enumerate(header)}
    if "pxname" not in index or "svname" not in index:
        return []
    idx = [index.get(c, -1) for c in _COLUMNS]
    out: list[LiveRow] = []
    reader = csv.reader(ln for ln in lines[1:] if ln)
    while True:
        try:
            v = next(reader)
        except StopIteration:
            break
        except csv.Error:  # a field over csv's limit: that row is skipped (tests/unit/haproxy/test_parse_fuzz.py)
            continue
        if len(v) < len(header) - 1:
            continue
        f = [v[i] if 0 <= i < len(v) else "" for i in idx]
        kind = _TYPES.get(f[2], "server")
        if kind == "listener":
            continue
        hrsp = (_n(f[9]), _n(f[10]), _n(f[11]), _n(f[12]), _n(f[13]), _n(f[14]))
        econ, eresp = _n(f[15]), _n(f[16])
        errors = hrsp[4] + econ + eresp + (_n(f[17]) if kind == "frontend" else 0)
        out.append(LiveRow(f[0], f[1], kind, f[3], _weight(f[4]), _weight(f[5]), _n(f[6]), _n(f[7]), _n(f[8]),
                           sum(hrsp), errors,
                           _n(f[18]), _n(f[19]), f[20] or None, hrsp, _n(f[21]), _n(f[22]), _n(f[23]), _n(f[24]),
                           _n(f[25]), _n(f[26]), econ, eresp, _n(f[27]), _n(f[28]), _n(f[29]), _n(f[30])))
    return out


@dataclass(frozen=True, slots=True)
class Point:
    """One interval of one frontend, backend or server: rates per second over the interval."""

    t: float
    req: float  # requests (HTTP responses, or sessions in TCP mode) per second
    err: float  # 5xx answers + connection and response errors per second
    rtime: int  # average response time, ms (HAProxy's, over the last 1024 requests)
    scur: int  # current sessions

    def to_list(self) -> list[float]:
        return [round(self.t, 3), round(self.req, 3), round(self.err, 3), self.rtime, self.scur]


def _requests(row: LiveRow) -> int:
    """HTTP responses of all classes, which counts requests on every HAProxy version; TCP proxies count
    sessions."""
    return max(row.answers, row.req_tot) if (row.answers or row.req_tot) else row.stot


def key_name(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


FINE_KEEP = 300  # samples kept as they are (5 minutes at one a second)
COARSE_STEP = 10.0  # seconds of one coarse point
COARSE_KEEP = 360  # coarse points kept (an hour)


class Track:
    """One frontend's, backend's or server's history, compact: the last ``FINE_KEEP`` samples as they are, and
    ``COARSE_STEP``-second points (rates averaged over the step, the last response time, the most sessions) for
    an hour. 24 bytes a point (a float64 time, four float32 values) instead of a Python object each, so an hour
    of 10,000 tracks stays in tens of megabytes."""

    __slots__ = ("_acc", "coarse_t", "coarse_v", "fine_t", "fine_v")

    def __init__(self) -> None:
        self.fine_t: array[float] = array("d")
        self.fine_v: array[float] = array("f")
        self.coarse_t: array[float] = array("d")
        self.coarse_v: array[float] = array("f")
        self._acc: list[float] | None = None  # [step number, req*dt, err*dt, dt, rtime, scur max]

    def add(self, p: Point, dt: float) -> None:
        self.fine_t.append(p.t)
        self.fine_v.extend((p.req, p.err, p.rtime, p.scur))
        if len(self.fine_t) > 2 * FINE_KEEP:  # trimmed in chunks: amortised O(1)
            del self.fine_t[:-FINE_KEEP]
            del self.fine_v[:-4 * FINE_KEEP]
        step = float(p.t // COARSE_STEP)
        acc = self._acc
        if acc is not None and acc[0] != step:
            self._flush(acc)
            acc = None
        if acc is None:
            self._acc = [step, p.req * dt, p.err * dt, dt, float(p.rtime), float(p.scur)]
        else:
            acc[1] += p.req * dt
            acc[2] += p.err * dt
            acc[3] += dt
            acc[4] = float(p.rtime)
            acc[5] = max(acc[5], float(p.scur))

    def _flush(self, acc: list[float]) -> None:
        dt = acc[3] or 1.0
        self.coarse_t.append((acc[0] + 1) * COARSE_STEP)
        self.coarse_v.extend((acc[1] / dt, acc[2] / dt, acc[4], acc[5]))
        if len(self.coarse_t) > 2 * COARSE_KEEP:
            del self.coarse_t[:-COARSE_KEEP]
            del self.coarse_v[:-4 * COARSE_KEEP]

    def points(self, since: float) -> list[list[float]]:
        """``[t, req, err, rtime, scur]`` since ``since``: the coarse points older than the first fine sample,
        then the fine samples (the last 5 minutes as sampled)."""
        fine, v, cv = self.fine_t, self.fine_v, self.coarse_v
        first = fine[0] if fine else float("inf")
        out = [[t, round(cv[4 * i], 3), round(cv[4 * i + 1], 3), int(cv[4 * i + 2]), int(cv[4 * i + 3])]
               for i, t in enumerate(self.coarse_t) if since <= t < first]
        start = next((i for i, t in enumerate(fine) if t >= since), len(fine))
        out += [[round(fine[i], 3), round(v[4 * i], 3), round(v[4 * i + 1], 3), int(v[4 * i + 2]), int(v[4 * i + 3])]
                for i in range(start, len(fine))]
        return out

    def last(self) -> Point | None:
        if not self.fine_t:
            return None
        v = self.fine_v
        return Point(self.fine_t[-1], v[-4], v[-3], int(v[-2]), int(v[-1]))

    def recent(self, seconds: float) -> tuple[float, float]:
        """(requests/s, errors/s) averaged over the last ``seconds`` of fine samples."""
        t, v = self.fine_t, self.fine_v
        if not t:
            return 0.0, 0.0
        since = t[-1] - seconds
        n, req, err = 0, 0.0, 0.0
        for i in range(len(t) - 1, -1, -1):
            if t[i] <= since and n:
                break
            req += v[4 * i]
            err += v[4 * i + 1]
            n += 1
        return req / n, err / n


class StatsSampler:
    """Who calls what: the UI and /metrics call ``touch()`` / ``fresh()`` and read ``rows`` and ``series``;
    streams iterate ``ticks()``. ``read`` answers HAProxy's ``show stat`` text (``RuntimeClient.command``)."""

    def __init__(self, read: Callable[[], Awaitable[str]], interval: float = 1.0, idle_interval: float = 10.0,
                 idle_stop: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.read = read
        self.interval = interval
        self.idle_interval = idle_interval  # between samples while nobody watches (0: stop sampling then)
        self.idle_stop = idle_stop
        self.clock = clock
        self.rows: dict[Key, LiveRow] = {}
        # histories; a server appears only once it had traffic or sessions (free slots cost nothing)
        self.series: dict[Key, Track] = {}
        self.sampled_at: float | None = None
        self.error: str | None = None
        self._prev: dict[Key, tuple[float, int, int]] = {}  # key -> (time, requests, errors) of the last sample
        self._touched = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._waiters: set[asyncio.Queue[dict[str, Any]]] = set()
        self._stale = False  # HAProxy changed since the last sample began (a reload, a runtime command)

    def invalidate(self) -> None:
        """HAProxy changed (the agent applied something): the next ``fresh()`` samples again, whatever the
        age of the last sample (rows read before a reload lack the backends it added)."""
        self._stale = True

    # --- sampling ------------------------------------------------------------------------------------------

    async def sample(self) -> None:
        async with self._lock:
            self._stale = False  # a change from now on lands after this read began: it stays stale
            try:
                rows = parse_live(await self.read())
                self.error = None
            except HaplaneError as exc:
                self.error = str(exc)
                return
            now = self.clock()
            tick: dict[str, list[float]] = {}
            fresh: dict[Key, LiveRow] = {}
            for row in rows:
                key = row.key
                fresh[key] = row
                reqs, errs = _requests(row), row.errors
                prev = self._prev.get(key)
                self._prev[key] = (now, reqs, errs)
                if prev is None or now <= prev[0]:
                    continue
                dt = now - prev[0]
                # a counter that went down: a new worker (reload) started from zero
                d_req = reqs - prev[1] if reqs >= prev[1] else reqs
                d_err = errs - prev[2] if errs >= prev[2] else errs
                point = Point(now, d_req / dt, d_err / dt, row.rtime, row.scur)
                series = self.series.get(key)
                if series is None:
                    if row.type == "server" and not (d_req or d_err or row.scur):
                        continue
                    series = self.series[key] = Track()
                series.add(point, dt)
                tick[key_name(key)] = point.to_list()
            for gone in set(self._prev) - set(fresh):
                del self._prev[gone]
                self.series.pop(gone, None)
            self.rows = fresh
            self.sampled_at = now
        message = {"t": now, "points": tick}
        for q in list(self._waiters):
            if q.qsize() < 100:
                q.put_nowait(message)

    async def fresh(self, max_age: float = 1.0, keep_sampling: bool = True) -> dict[Key, LiveRow]:
        """The latest rows, sampled now if the last sample is older than ``max_age``. ``keep_sampling``: someone
        watches, keep the once-a-second sampling going (a Prometheus scrape does not need it)."""
        if keep_sampling:
            self.touch()
        if self._stale or self.sampled_at is None or self.clock() - self.sampled_at > max_age:
            await self.sample()
        return self.rows

    # --- lifecycle -----------------------------------------------------------------------------------------

    def touch(self) -> None:
        """Someone is looking: keep sampling (start if stopped). Needs a running event loop."""
        self._touched = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="haplane-stats")

    async def _run(self) -> None:
        while True:
            watched = time.monotonic() - self._touched < self.idle_stop or bool(self._waiters)
            if not watched and not self.idle_interval:
                return
            t0 = time.monotonic()
            try:
                await self.sample()
            except Exception:  # a sampler must never take the process down
                log.exception("stats sample failed")
            # a huge HAProxy (tens of thousands of servers) is sampled less often, never more than ~20 % busy;
            # while nobody watches, once every idle_interval (the hour of history the charts show)
            pause = max(self.interval if watched else self.idle_interval, 5 * (time.monotonic() - t0))
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline:  # a page opened meanwhile brings the fast pace back at once
                await asyncio.sleep(min(self.interval, max(0.0, deadline - time.monotonic())))
                if not watched and time.monotonic() - self._touched < self.idle_stop:
                    break

    def start(self) -> None:
        """Sample in the background from now on (slowly while nobody watches). Needs a running event loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="haplane-stats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def ticks(self) -> AsyncIterator[dict[str, Any]]:
        """Every sample's new points, as ``{"t": time, "points": {"proxy/server": [t, req, err, rtime, scur]}}``."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._waiters.add(q)
        try:
            self.touch()
            while True:
                yield await q.get()
                self.touch()
        finally:
            self._waiters.discard(q)

    def history(self, window: float = FINE_KEEP, proxies: set[str] | None = None) -> dict[str, list[list[float]]]:
        """Every track's points of the last ``window`` seconds (fine up to 5 minutes, coarse beyond); only those of
        ``proxies`` when given."""
        since = (self.sampled_at or self.clock()) - window
        return {key_name(k): pts for k, s in self.series.items()
                if (proxies is None or k[0] in proxies) and (pts := s.points(since))}

    def busiest(self, seconds: float = 60.0) -> list[tuple[str, str, float]]:
        """(proxy, "backend" | "frontend", requests + errors a second over the last ``seconds``) for every frontend
        and backend: backends first, busiest first, then by name."""
        out = []
        for (proxy, name), track in self.series.items():
            if name in ("BACKEND", "FRONTEND"):
                req, err = track.recent(seconds)
                out.append((proxy, "backend" if name == "BACKEND" else "frontend", req + err))
        out.sort(key=lambda x: (x[1] != "backend", -x[2], x[0]))
        return out

    def last(self, key: Key) -> Point | None:
        track = self.series.get(key)
        return track.last() if track is not None else None
