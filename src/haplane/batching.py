"""Group commit for coroutines: concurrent callers share one call of a batch function.

``Batcher(run)``: a caller's ``await batcher.submit(group, item)`` queues ``item``; one task per group runs
``run(group, items)`` on everything queued, and while that call is in flight newcomers queue for the next one.
So under load each call carries as many items as arrived during the previous one (no timer, no added wait: a
lone caller runs at once). ``run`` returns one result per item, in order: a value, or an exception that only
that item's caller gets. ``distinct(item)`` keeps two items with the same key out of one call (the second waits
for the next: a batch never holds two writes of one record).

Used by the registry for registrations (one store transaction per batch of one service's writes) and heartbeats
(one read and one lease renewal per batch). Imports nothing of haplane's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

__all__ = ["Batcher"]


class Batcher(Generic[K, T, R]):
    def __init__(self, run: Callable[[K, Sequence[T]], Awaitable[Sequence[R | BaseException]]], *,
                 max_items: int = 1000, distinct: Callable[[T], Hashable] | None = None) -> None:
        self._run = run
        self.max_items = max_items
        self._distinct = distinct
        self._queues: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        self._tasks: dict[K, asyncio.Task[None]] = {}
        self.batches = 0  # calls of run (for tests and benchmarks: items / batches is the batch size)
        self.items = 0

    async def submit(self, group: K, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queues.setdefault(group, []).append((item, future))
        if group not in self._tasks:
            self._tasks[group] = loop.create_task(self._drain(group), name=f"batch:{group}")
        return await future  # a cancelled caller cancels only its future; its item may still be written

    def _take(self, group: K) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        rest: list[tuple[T, asyncio.Future[R]]] = []
        seen: set[Hashable] = set()
        for item, future in self._queues.get(group, []):
            if future.done():  # its caller gave up before it ran: nothing was acknowledged, nothing to do
                continue
            key = self._distinct(item) if self._distinct is not None else None
            if len(batch) >= self.max_items or (key is not None and key in seen):
                rest.append((item, future))
                continue
            if key is not None:
                seen.add(key)
            batch.append((item, future))
        self._queues[group] = rest
        return batch

    async def _drain(self, group: K) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queues.get(group):
                batch = self._take(group)
                if not batch:
                    continue
                self.batches += 1
                self.items += len(batch)
                try:
                    results: Sequence[R | BaseException] = await self._run(group, [item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"a batch of {len(batch)} got {len(results)} results")
                except Exception as exc:  # the whole call failed: every caller of it hears why
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        finally:
            for _, future in batch:  # cancelled mid-call (shutdown): nobody may wait forever
                future.cancel()
            del self._tasks[group]
            if not self._queues.get(group):
                self._queues.pop(group, None)
            else:  # cancelled with callers still queued
                for _, future in self._queues.pop(group):
                    future.cancel()
