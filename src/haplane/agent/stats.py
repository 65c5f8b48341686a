"""Live traffic figures from HAProxy's ``show stat``: request rate, errors and response time per frontend,
backend and server, kept as short histories for the UI's charts, the overview and /metrics.

HAProxy's counters are totals since its worker started; the sampler turns two consecutive samples into
rates (a counter that went down means a new worker after a reload: that interval counts from zero).
Sampling is lazy: it starts when someone asks (a page, a stream, a scrape) and stops after ``idle_stop``
seconds without anyone asking, so an agent nobody watches sends HAProxy nothing extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from haplane.errors import HaplaneError
from haplane.model.observed import StatRow

log = logging.getLogger("haplane.agent.stats")

Key = tuple[str, str]  # (proxy, "FRONTEND" | "BACKEND" | server name)


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


def _requests(row: StatRow) -> int:
    """HTTP responses of all classes, which counts requests on every HAProxy version; TCP proxies count
    sessions."""
    answers = row.hrsp_1xx + row.hrsp_2xx + row.hrsp_3xx + row.hrsp_4xx + row.hrsp_5xx + row.hrsp_other
    return max(answers, row.req_tot) if (answers or row.req_tot) else row.stot


def _errors(row: StatRow) -> int:
    return row.hrsp_5xx + row.econ + row.eresp + (row.ereq if row.type == "frontend" else 0)


def key_name(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


class StatsSampler:
    """Who calls what: the UI and /metrics call ``touch()`` / ``fresh()`` and read ``rows`` and ``series``;
    streams iterate ``ticks()``. ``read`` is HAProxy's ``show stat`` (``RuntimeClient.stat``)."""

    def __init__(self, read: Callable[[], Awaitable[list[StatRow]]], interval: float = 1.0, keep: int = 180,
                 idle_stop: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.read = read
        self.interval = interval
        self.keep = keep
        self.idle_stop = idle_stop
        self.clock = clock
        self.rows: dict[Key, StatRow] = {}
        self.series: dict[Key, deque[Point]] = {}
        self.sampled_at: float | None = None
        self.error: str | None = None
        self._prev: dict[Key, tuple[float, int, int]] = {}  # key -> (time, requests, errors) of the last sample
        self._touched = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._waiters: set[asyncio.Queue[dict[str, Any]]] = set()

    # --- sampling ------------------------------------------------------------------------------------------

    async def sample(self) -> None:
        async with self._lock:
            try:
                rows = await self.read()
                self.error = None
            except HaplaneError as exc:
                self.error = str(exc)
                return
            now = self.clock()
            tick: dict[str, list[float]] = {}
            fresh: dict[Key, StatRow] = {}
            for row in rows:
                if row.type == "listener":
                    continue
                key = row.key
                fresh[key] = row
                reqs, errs = _requests(row), _errors(row)
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
                    series = self.series[key] = deque(maxlen=self.keep)
                series.append(point)
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

    async def fresh(self, max_age: float = 1.0, keep_sampling: bool = True) -> dict[Key, StatRow]:
        """The latest rows, sampled now if the last sample is older than ``max_age``. ``keep_sampling``: someone
        watches, keep the once-a-second sampling going (a Prometheus scrape does not need it)."""
        if keep_sampling:
            self.touch()
        if self.sampled_at is None or self.clock() - self.sampled_at > max_age:
            await self.sample()
        return self.rows

    # --- lifecycle -----------------------------------------------------------------------------------------

    def touch(self) -> None:
        """Someone is looking: keep sampling (start if stopped). Needs a running event loop."""
        self._touched = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="haplane-stats")

    async def _run(self) -> None:
        while time.monotonic() - self._touched < self.idle_stop or self._waiters:
            try:
                await self.sample()
            except Exception:  # a sampler must never take the process down
                log.exception("stats sample failed")
            await asyncio.sleep(self.interval)

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

    def history(self) -> dict[str, list[list[float]]]:
        return {key_name(k): [p.to_list() for p in s] for k, s in self.series.items()}
