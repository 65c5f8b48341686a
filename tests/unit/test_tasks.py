"""stop_tasks: a stop never hangs on a task that holds out against its cancel; the others stop as before."""

from __future__ import annotations

import asyncio
import logging

import pytest

from haplane.tasks import stop_tasks


async def test_a_task_that_swallows_its_cancel_is_named_and_left_behind(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # a shielded close waiting on a peer that never answers

    async def polite() -> None:
        await asyncio.sleep(3600)

    async def failed() -> None:
        raise RuntimeError("ended on its own")

    s = asyncio.create_task(stubborn(), name="stubborn")
    p = asyncio.create_task(polite(), name="polite")
    f = asyncio.create_task(failed(), name="failed")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.ERROR, logger="haplane.tasks"):
        stuck = await stop_tasks([s, p, f], grace=0.3)
    assert loop.time() - started < 2
    assert stuck == [s]
    assert p.cancelled() and f.done()
    assert "task stubborn did not stop" in caplog.text and "in stubborn" in caplog.text
    release.set()
    await s


async def test_tasks_that_stop_are_waited_for_together() -> None:
    async def slow_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)  # cleans up before it stops

    tasks = [asyncio.create_task(slow_stop()) for _ in range(5)]
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await stop_tasks(tasks, grace=5) == []
    assert all(t.cancelled() for t in tasks)
    assert loop.time() - started < 0.9  # together, not one after the other (5 x 0.2 s)
