"""The Batcher: concurrent callers share one call of the batch function, each gets its own result."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from haplane.batching import Batcher


class Recorder:
    def __init__(self, delay: float = 0.01) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.delay = delay

    async def run(self, group: str, items: Sequence[str]) -> list[str | BaseException]:
        self.calls.append((group, list(items)))
        await asyncio.sleep(self.delay)
        return [ValueError(f"bad {i}") if i.startswith("bad") else f"{group}:{i}" for i in items]


async def test_a_lone_caller_runs_at_once_and_newcomers_share_the_next_call() -> None:
    rec = Recorder()
    b: Batcher[str, str, str] = Batcher(rec.run)
    assert await b.submit("g", "a") == "g:a"
    results = await asyncio.gather(*(b.submit("g", f"x{i}") for i in range(20)))
    assert results == [f"g:x{i}" for i in range(20)]
    assert len(rec.calls) <= 3, rec.calls  # the first one alone, then the rest together
    assert b.items == 21 and b.batches == len(rec.calls)


async def test_groups_run_apart_and_each_item_gets_its_own_error() -> None:
    rec = Recorder()
    b: Batcher[str, str, str] = Batcher(rec.run)
    ok, bad, other = await asyncio.gather(b.submit("g", "a"), b.submit("g", "bad-1"), b.submit("h", "a"),
                                          return_exceptions=True)
    assert ok == "g:a" and other == "h:a"
    assert isinstance(bad, ValueError) and str(bad) == "bad bad-1"
    assert {g for g, _ in rec.calls} == {"g", "h"}


async def test_distinct_keeps_two_writes_of_one_key_apart() -> None:
    rec = Recorder()
    b: Batcher[str, str, str] = Batcher(rec.run, distinct=lambda item: item.split("#")[0])
    await asyncio.gather(*(b.submit("g", f"k{i % 2}#{i}") for i in range(6)))
    for _, items in rec.calls:
        keys = [i.split("#")[0] for i in items]
        assert len(keys) == len(set(keys)), rec.calls


async def test_max_items_bounds_a_call() -> None:
    rec = Recorder()
    b: Batcher[str, str, str] = Batcher(rec.run, max_items=4)
    await asyncio.gather(*(b.submit("g", str(i)) for i in range(10)))
    assert max(len(items) for _, items in rec.calls) <= 4


async def test_a_call_that_fails_whole_fails_every_caller_of_it_and_the_next_one_runs() -> None:
    calls = 0

    async def run(group: str, items: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("store down")
        return list(items)

    b: Batcher[str, str, str] = Batcher(run)
    with pytest.raises(RuntimeError, match="store down"):
        await b.submit("g", "a")
    assert await b.submit("g", "b") == "b"


async def test_a_cancelled_caller_leaves_the_others_alone() -> None:
    rec = Recorder(delay=0.05)
    b: Batcher[str, str, str] = Batcher(rec.run)
    first = asyncio.ensure_future(b.submit("g", "first"))
    await asyncio.sleep(0.01)  # first is in flight
    waiting = [asyncio.ensure_future(b.submit("g", f"w{i}")) for i in range(3)]
    await asyncio.sleep(0)
    waiting[0].cancel()
    assert await first == "g:first"
    assert await asyncio.gather(*waiting[1:]) == ["g:w1", "g:w2"]
    assert all("w0" not in items for _, items in rec.calls), "a caller gone before its call is not run"
