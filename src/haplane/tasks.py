"""Stopping asyncio tasks without hanging on one that holds out against its cancel.

Who calls it: ``haplane up``, ``agent`` and ``serve`` when they stop (their sources, API, agent and metrics tasks),
and tests that run sources. A task that swallows its cancel (a library's shielded close waiting on a peer, say)
would otherwise keep the whole process from stopping; here it is named with where it sits, and the stop goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)


def where(task: asyncio.Future[Any]) -> str:
    """``file:line in function`` of each frame the task sits in, innermost first, each called from the next
    (empty once it is done)."""
    if not isinstance(task, asyncio.Task):
        return ""
    return " <- ".join(f"{f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}"
                       for f in reversed(task.get_stack(limit=8)))


async def stop_tasks(tasks: Iterable[asyncio.Future[Any]], grace: float = 10.0) -> list[asyncio.Future[Any]]:
    """Cancel every task, wait for them together at most ``grace`` seconds, and return those still running
    (each logged at ERROR with where it sits). What the stopped ones raised is read (and dropped): a stop is
    not the place to raise it."""
    tasks = list(tasks)
    pending = [t for t in tasks if not t.done()]
    for t in pending:
        t.cancel()
    stuck: set[asyncio.Future[Any]] = set()
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=grace)
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: no "exception was never retrieved" at exit
    for t in stuck:
        log.error("task %s did not stop within %.0f s of its cancel; left behind (at %s)", name(t), grace,
                  where(t) or "?")
    return sorted(stuck, key=name)
