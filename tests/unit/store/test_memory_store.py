"""What only the memory engine promises (the shared semantics are in ``tests/contract``): its URL, a fresh
store per open, an injectable clock for deterministic lease expiry, and its end at ``close``."""

from __future__ import annotations

import asyncio

import pytest

from haplane.errors import ConfigurationError, NotFound, StoreUnavailable, ValidationError
from haplane.store import Put, open_store
from haplane.store.memory import MemoryStore, open_memory


def test_url_options() -> None:
    assert open_memory("memory://")._log.limit == 100_000
    assert open_memory("memory://?history=3")._log.limit == 3
    for bad in ["memory://?history=0", "memory://?history=x", "memory://?colour=blue", "sqlite:///x.db"]:
        with pytest.raises(ConfigurationError):
            open_memory(bad)


async def test_every_open_is_a_new_store() -> None:
    a, b = open_store("memory://"), open_store("memory://")
    await a.txn([], [Put("/k", "v")])
    assert await b.get("/k") is None


async def test_leases_follow_the_injected_clock() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    lease = await store.grant_lease(10)
    await store.txn([], [Put("/a", "1", lease), Put("/b", "2", lease)])
    now[0] += 9.9
    await store.keepalive(lease)
    now[0] += 9.9
    store.expire_leases()
    assert await store.get("/a") is not None
    now[0] += 0.2
    assert await store.revision() == 2, "reads sweep due leases first: one txn for both keys"
    assert await store.get("/a") is None and await store.get("/b") is None
    with pytest.raises(NotFound):
        await store.keepalive(lease)
    await store.close()


async def test_lease_ttl_must_be_positive() -> None:
    store = MemoryStore()
    for ttl in (0, -1.0, float("nan")):
        with pytest.raises(ValidationError):
            await store.grant_lease(ttl)


async def test_txn_rejects_malformed_ops_before_writing() -> None:
    store = MemoryStore()
    with pytest.raises(TypeError):
        await store.txn([], [Put("/ok", "v"), Put("/bad", 42)])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await store.txn([], ["not an op"])  # type: ignore[list-item]
    assert await store.revision() == 0


async def test_close_ends_watches_and_refuses_work() -> None:
    store = MemoryStore()
    watch = store.watch("/", 1)
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(StoreUnavailable):
        await store.get("/k")
