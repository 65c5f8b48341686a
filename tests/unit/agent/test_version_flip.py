"""A record change that leaves the structure alone (a dynamic backend flipped to another version) converges
through the Runtime API at once: no reload follows that would bring it along."""

from __future__ import annotations

import asyncio
import contextlib

from haplane.agent.activity import Activity
from haplane.agent.reconcile import Agent
from haplane.agent.state import AgentOptions
from haplane.compose import ComposeOptions
from haplane.model.records import BackendSpec, Instance, Service
from haplane.plan import Policy
from haplane.registry import RegistryStore
from haplane.store import open_store
from haplane.testing import FakeHAProxy


async def test_version_flip_moves_the_dynamic_backend_without_reload() -> None:
    store = open_store("memory://")
    reg = RegistryStore(store)
    fake = FakeHAProxy()
    agent = Agent(store, fake, AgentOptions(compose=ComposeOptions(min_slots=4), policy=Policy(ramp_interval=0,
                  drain_timeout=0), reload_interval=0.01, coalesce=0.001, resync_interval=3600), Activity())
    task = asyncio.create_task(agent.run())

    async def settled() -> None:
        rev = await store.revision()
        for _ in range(600):
            if agent.status.revision >= rev and agent.idle:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("agent did not settle")

    try:
        await asyncio.wait_for(agent.ready.wait(), 3)
        await reg.put_service(Service("app", "host", "app.test"))
        await reg.put_instance(Instance("v1", "app", "127.0.0.2", 80, version="1.0"))
        await reg.put_instance(Instance("v2", "app", "127.0.0.3", 80, version="2.0"))
        await reg.put_backend(BackendSpec("live", "dynamic", service="app", version="1.0"))
        await settled()
        routable = {s: (x.address, x.maint) for s, x in fake.backends["live"].items() if not x.maint}
        assert list(routable.values()) == [("127.0.0.2", False)]
        reloads = agent.status.reloads

        await reg.put_backend(BackendSpec("live", "dynamic", service="app", version="2.0"))
        await settled()
        routable = {s: (x.address, x.maint) for s, x in fake.backends["live"].items() if not x.maint}
        assert list(routable.values()) == [("127.0.0.3", False)]
        assert agent.status.reloads == reloads  # the runtime did it
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
