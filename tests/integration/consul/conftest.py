"""What the Consul tests share: the stand-in of Consul's HTTP API (``consul``; test_consul_secure.py makes its own
with TLS and an ACL token), a watcher running against the registry while a block runs (``running``), polling an
async check (``until``), and the agent tests' HTTP backends (``backends``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Protocol

import pytest
from tests.integration.agent.conftest import backends as backends  # the agent tests' fixture, here too

from haplane.registry import RegistryStore
from haplane.sources.base import Sink, StoreSink
from haplane.testing_consul import ConsulStandIn


class Watcher(Protocol):
    async def run(self, sink: Sink) -> None: ...


@pytest.fixture
def consul() -> Iterator[ConsulStandIn]:
    with ConsulStandIn() as c:
        yield c


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(watcher: Watcher, reg: RegistryStore) -> AsyncIterator[None]:
    """``watcher`` (a ConsulSource or a ConsulFollower) writing into ``reg`` for as long as the block runs."""
    task = asyncio.create_task(watcher.run(StoreSink(reg)))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
