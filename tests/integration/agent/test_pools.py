"""Pools of ready backends on a real HAProxy 2.6: a new service that fits a profile takes a spare backend through
the Runtime API (map entry, slots) with HAProxy's reload counter unchanged; a pool running low is refilled by one
checked reload that drops no request under load; a service outside every profile still works, through a reload."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from haplane.agent.view import AgentView
from haplane.model.records import Instance, Service

from .conftest import Backend, Rig, agent_rig, new_backend

pytestmark = pytest.mark.integration


async def _service(rig: Rig, backends: list[Backend], name: str, host: str, **kw: object) -> Backend:
    b = new_backend(backends, name)
    await rig.reg.put_service(Service(name, "host", host, **kw))  # type: ignore[arg-type]
    await rig.reg.put_instance(Instance(f"{name}-1", name, b.address, b.port))
    return b


async def test_new_host_service_takes_a_spare_without_reload(tmp_path: Path, backends: list[Backend]) -> None:
    async with agent_rig(tmp_path) as rig:
        await rig.settled()
        before = await rig.reloads()
        await _service(rig, backends, "web", "web.test")
        r = await rig.until_status("web.test", 200)
        assert r.text == "backend=web"
        await rig.settled()
        assert await rig.reloads() == before  # HAProxy's own counter
        agent = rig.bundle.agent
        assert agent.applied is not None and agent.applied.backend("web") is None  # HAProxy has no "web"
        assert agent.desired is not None
        held = [b for b in agent.desired.backends if b.label == "web"]
        assert len(held) == 1 and held[0].name.startswith("_pool")
        # readers see the service's name, never the spare's
        doc = await AgentView(agent).overview(live=False)
        names = [b["name"] for b in doc["backends"]]
        assert "web" in names and not any(n.startswith("_pool") for n in names)
        rules = [r for fe in doc["frontends"] for r in fe["rules"] if r["value"] == "web.test"]
        assert [r["backend"] for r in rules] == ["web"]
        subjects = {rec.subject for rec in agent.activity.query()}
        assert "web/s1" in subjects and not any(s.startswith("_pool") for s in subjects)
        # deleted: unrouted, and the spare's slot freed through the runtime, still no reload
        spare = held[0].name
        await rig.reg.delete_service("web")
        await rig.until_status("web.test", 503)
        await rig.settled()
        assert (await rig.bundle.control.servers([spare]))[spare]["s1"].maint
        assert await rig.reloads() == before


async def test_new_path_service_takes_a_spare_without_reload(tmp_path: Path, backends: list[Backend]) -> None:
    async with agent_rig(tmp_path) as rig:
        await rig.settled()
        before = await rig.reloads()
        b = new_backend(backends, "api")
        await rig.reg.put_service(Service("api", "path", "/api"))
        await rig.reg.put_instance(Instance("api-1", "api", b.address, b.port))
        r = await rig.until_status("any.test", 200, path="/api/v1")
        assert r.text == "backend=api"
        assert (await rig.get("any.test", "/apix")).status_code == 503  # a prefix, not a substring
        await rig.settled()
        assert await rig.reloads() == before
        doc = await AgentView(rig.bundle.agent).overview(live=False)
        rules = [r for fe in doc["frontends"] for r in fe["rules"] if r["value"] == "/api/"]
        assert [r["backend"] for r in rules] == ["api"]


async def test_refill_is_one_reload_dropping_nothing(tmp_path: Path, backends: list[Backend]) -> None:
    async with agent_rig(tmp_path, pool_size=2, reload_interval=0.5) as rig:
        await rig.settled()
        before = await rig.reloads()
        await _service(rig, backends, "web", "web.test")  # takes 1 of 2: half the pool is left, it runs low
        await rig.until_status("web.test", 200)
        assert await rig.reloads() == before  # routed before the refill, which waits for reload_interval
        statuses: list[int | str] = []
        stop = asyncio.Event()

        async def load() -> None:
            async with httpx.AsyncClient(timeout=5) as client:
                while not stop.is_set():
                    try:
                        statuses.append((await client.get(rig.proxy + "/", headers={"Host": "web.test"}))
                                        .status_code)
                    except httpx.TransportError as exc:
                        statuses.append(type(exc).__name__)

        tasks = [asyncio.create_task(load()) for _ in range(4)]
        deadline = asyncio.get_running_loop().time() + 10
        while await rig.reloads() == before and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await rig.settled()
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)
        assert await rig.reloads() == before + 1  # one checked reload
        assert statuses and set(statuses) == {200}, {s for s in statuses if s != 200}
        agent = rig.bundle.agent
        assert agent.applied is not None and agent.applied.backend("web") is not None  # a backend of its own
        assert all(b.free_spare for b in agent.applied.backends if b.pool)  # the pool is full again
        causes = [c["kind"] for rec in agent.activity.query(kind="reload") for c in rec.detail.get("causes", [])]
        assert "pool-refill" in causes
        # the next new service takes a spare again, without a reload
        await _service(rig, backends, "api", "api.test")
        await rig.until_status("api.test", 200)
        assert await rig.reloads() == before + 1


async def test_service_outside_every_profile_takes_a_reload(tmp_path: Path, backends: list[Backend]) -> None:
    async with agent_rig(tmp_path) as rig:
        await rig.settled()
        before = await rig.reloads()
        await _service(rig, backends, "hashed", "hashed.test", balance="source")
        r = await rig.until_status("hashed.test", 200)
        assert r.text == "backend=hashed"
        await rig.settled()
        assert await rig.reloads() == before + 1
        assert rig.bundle.agent.applied is not None and rig.bundle.agent.applied.backend("hashed") is not None
