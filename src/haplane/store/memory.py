"""``memory://`` — a complete Store engine living in one process's memory.

It is the fake shipped beside the real thing: unit tests, ``haplane generate`` and single-process trials use
it, and it passes the same contract suite as the durable engines (revisions, compare-and-swap, prefix
deletes, watches with a bounded history and ``Compacted``, leases that expire with delete events). What it
does not do is survive the process, or share state with another process.

URL: ``memory://`` (anything between ``//`` and ``?`` is ignored; every open is a new, empty store), with the
option ``?history=N``: how many events are kept for watches (default 100,000).

All state is touched from the event loop only, and a txn runs to completion without awaiting, so every
txn is atomic and every read is a consistent snapshot without any lock. Use one store from one loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from bisect import bisect_left, insort
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from haplane.errors import Conflict, NotFound, StoreUnavailable, ValidationError
from haplane.store._events import (
    DEFAULT_HISTORY,
    EventLog,
    check_options,
    check_txn,
    int_option,
    prefix_bounds,
    split_url,
)
from haplane.store.base import KV, Compare, Event, Op, Put

__all__ = ["MemoryStore", "open_memory"]


def open_memory(url: str = "memory://") -> MemoryStore:
    """The ``ENGINES`` factory for ``memory://[?history=N]``."""
    _, options = split_url(url, "memory")
    check_options(url, options, ["history"])
    return MemoryStore(url, history=int_option(url, options, "history", DEFAULT_HISTORY, 1))


@dataclass
class _Lease:
    ttl: float
    deadline: float  # on ``clock``
    keys: set[str] = field(default_factory=set)


class MemoryStore:
    """An in-process Store. ``clock`` (monotonic seconds) drives lease expiry; tests may pass their own,
    then call ``expire_leases()`` to sweep without waiting for the timer."""

    def __init__(self, url: str = "memory://", *, history: int = DEFAULT_HISTORY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._clock = clock
        self._data: dict[str, KV] = {}
        self._keys: list[str] = []  # sorted, for range and prefix deletes
        self._revision = 0
        self._log = EventLog(history)
        self._leases: dict[int, _Lease] = {}
        self._deadlines: list[tuple[float, int]] = []  # heap; stale entries are skipped on pop
        self._lease_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._waiters: set[asyncio.Event] = set()
        self._closed = False

    # --- reads --------------------------------------------------------------------------------------------------

    async def get(self, key: str) -> KV | None:
        self._check_open()
        self.expire_leases()
        return self._data.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[KV | None]:
        self._check_open()
        self.expire_leases()
        return [self._data.get(key) for key in keys]

    async def range(self, prefix: str) -> tuple[list[KV], int]:
        self._check_open()
        self.expire_leases()
        lo, hi = prefix_bounds(prefix)
        i, j = self._span(lo, hi, prefix)
        return [self._data[k] for k in self._keys[i:j]], self._revision

    async def revision(self) -> int:
        self._check_open()
        self.expire_leases()
        return self._revision

    # --- writes -------------------------------------------------------------------------------------------------

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        self._check_open()
        check_txn(compares, ops)
        self.expire_leases()
        for cmp in compares:
            kv = self._data.get(cmp.key)
            actual = kv.mod_revision if kv is not None else 0
            if actual != cmp.mod_revision:
                raise Conflict(cmp.key, cmp.mod_revision, actual)
        if not ops:
            return self._revision
        for op in ops:  # validate everything before the first change: a txn is all or nothing
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise NotFound("lease", str(op.lease))
        rev = self._revision + 1
        events: list[Event] = []
        for op in ops:
            if isinstance(op, Put):
                self._put(op, rev, events)
            else:
                if op.prefix:
                    lo, hi = prefix_bounds(op.key)
                    i, j = self._span(lo, hi, op.key)
                    doomed = self._keys[i:j]
                    del self._keys[i:j]
                    for key in doomed:
                        self._drop(key, rev, events)
                elif op.key in self._data:
                    del self._keys[bisect_left(self._keys, op.key)]
                    self._drop(op.key, rev, events)
        self._commit(rev, events)
        return rev

    def _put(self, op: Put, rev: int, events: list[Event]) -> None:
        old = self._data.get(op.key)
        if old is None:
            insort(self._keys, op.key)
            create = rev
        else:
            create = old.create_revision
            if old.lease and old.lease != op.lease and old.lease in self._leases:
                self._leases[old.lease].keys.discard(op.key)
        if op.lease:
            self._leases[op.lease].keys.add(op.key)
        self._data[op.key] = KV(op.key, op.value, create, rev, op.lease)
        events.append(Event("put", op.key, op.value, rev, create))

    def _drop(self, key: str, rev: int, events: list[Event]) -> None:
        """Forget ``key`` (already removed from ``_keys``) and record its delete event."""
        kv = self._data.pop(key)
        if kv.lease and kv.lease in self._leases:
            self._leases[kv.lease].keys.discard(key)
        events.append(Event("delete", key, None, rev, 0))

    def _commit(self, rev: int, events: list[Event]) -> None:
        self._revision = rev
        self._log.append(rev, events)
        for waiter in self._waiters:
            waiter.set()

    # --- watch --------------------------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        """Events come straight from the in-memory log; a watcher that falls more than ``history`` events
        behind gets ``Compacted`` on its next step."""
        self._check_open()
        wake = asyncio.Event()
        self._waiters.add(wake)
        try:
            cursor = start_revision
            while True:
                self._check_open()
                batch = self._log.since(cursor, prefix)
                cursor = max(cursor, self._revision + 1)
                if batch:
                    yield batch
                else:
                    wake.clear()  # no await between reading the log and this: no wake-up can be lost
                    await wake.wait()
        finally:
            self._waiters.discard(wake)

    # --- leases -------------------------------------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        self._check_open()
        if not ttl > 0:
            raise ValidationError("ttl", ttl, "must be a positive number of seconds")
        lease = next(self._lease_ids)
        deadline = self._clock() + ttl
        self._leases[lease] = _Lease(ttl, deadline)
        heapq.heappush(self._deadlines, (deadline, lease))
        self._arm_timer()
        return lease

    async def keepalive(self, lease: int) -> None:
        self._check_open()
        self.expire_leases()
        state = self._leases.get(lease)
        if state is None:
            raise NotFound("lease", str(lease))
        state.deadline = self._clock() + state.ttl
        heapq.heappush(self._deadlines, (state.deadline, lease))
        self._arm_timer()

    async def keepalive_many(self, leases: Sequence[int]) -> set[int]:
        gone: set[int] = set()
        for lease in leases:
            try:
                await self.keepalive(lease)
            except NotFound:
                gone.add(lease)
        return gone

    async def revoke_lease(self, lease: int) -> None:
        self._check_open()
        self.expire_leases()
        self._expire([lease])

    def expire_leases(self) -> None:
        """Delete the keys of every lease whose deadline has passed, in one txn. Runs from the timer and at
        the start of every operation, so an expired lease is never seen alive however late the timer is."""
        now = self._clock()
        due: list[int] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, lease = heapq.heappop(self._deadlines)
            state = self._leases.get(lease)
            if state is not None and state.deadline == deadline:
                due.append(lease)
        if due:
            self._expire(due)

    def _expire(self, leases: Sequence[int]) -> None:
        keys: set[str] = set()
        for lease in leases:
            state = self._leases.pop(lease, None)
            if state is not None:
                keys |= state.keys
        if not keys:
            return
        rev = self._revision + 1
        events: list[Event] = []
        for key in sorted(keys):
            del self._keys[bisect_left(self._keys, key)]
            self._drop(key, rev, events)
        self._commit(rev, events)

    def _arm_timer(self) -> None:
        while self._deadlines and self._deadlines[0][1] not in self._leases:
            heapq.heappop(self._deadlines)
        if not self._deadlines or self._closed:
            return
        at = self._deadlines[0][0]
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_later(max(0.0, at - self._clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        if self._closed:
            return
        self.expire_leases()
        self._arm_timer()

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the lease timer and end every watch (they raise ``StoreUnavailable``)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiter in self._waiters:
            waiter.set()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"{self.url}: the store is closed")

    def _span(self, lo: str, hi: str | None, prefix: str) -> tuple[int, int]:
        """Index range of ``_keys`` holding the keys that start with ``prefix``."""
        i = bisect_left(self._keys, lo)
        if hi is not None:
            return i, bisect_left(self._keys, hi, i)
        j = i
        while j < len(self._keys) and self._keys[j].startswith(prefix):
            j += 1
        return i, j
