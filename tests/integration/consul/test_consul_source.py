"""The Consul source against the stand-in of Consul's HTTP API (haplane.testing_consul; no real Consul is run):
registrations, deregistrations, failing checks and versions are followed through blocking queries, an index
going backwards resets, Consul going away keeps the last view; and a Thalassa-style dynamic backend (name +
version) follows them through a real HAProxy."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
from tests.integration.agent.conftest import Backend, agent_rig, free_port, new_backend
from tests.integration.consul.conftest import running, until

from haplane.model.records import BackendSpec, FrontendSpec, Instance
from haplane.registry import RegistryStore
from haplane.sources.consul import ConsulSource
from haplane.store.memory import MemoryStore
from haplane.testing_consul import ConsulStandIn

pytestmark = pytest.mark.integration


async def view(reg: RegistryStore) -> dict[str, tuple[str, int, str | None]]:
    return {i.id: (i.address, i.port, i.version) for i, _ in await reg.list_instances("api")}


async def test_follows_registrations_health_and_versions(consul: ConsulStandIn) -> None:
    reg = RegistryStore(MemoryStore())
    source = ConsulSource("api", address=consul.address, wait=30)
    async with running(source, reg):
        consul.register("api", "127.0.0.51", 8080, service_id="a1", tags=["version=1.0"])
        consul.register("api", "127.0.0.52", 8080, service_id="a2", tags=["version=1.0"], node="node2")

        async def two() -> bool:
            return await view(reg) == {"node1-a1": ("127.0.0.51", 8080, "1.0"), "node2-a2": ("127.0.0.52", 8080, "1.0")}
        await until(two, what="two instances")

        async def blocking() -> bool:  # the first answer may already hold both: the blocking query comes next
            return any("index=" in p and "wait=" in p for p in consul.requests)
        await until(blocking, what="a blocking query")
        queries = source.queries
        await asyncio.sleep(0.5)
        assert source.queries == queries, "nothing changed: the blocking query is still held by Consul"

        consul.register("api", "127.0.0.51", 8080, service_id="a1", tags=["version=1.1"])  # a new version
        consul.set_check("a2", "critical", node="node2")

        async def changed() -> bool:
            return await view(reg) == {"node1-a1": ("127.0.0.51", 8080, "1.1")}
        await until(changed, what="version change and failing check")
        consul.set_check("a2", "passing", node="node2")
        await until(lambda: _has(reg, "node2-a2"), what="a2 back")
        consul.deregister("a1")

        async def only_a2() -> bool:
            return set(await view(reg)) == {"node2-a2"}
        await until(only_a2, what="deregistration")
        assert all(i.source == "consul-api" for i, _ in await reg.list_instances())


async def _has(reg: RegistryStore, iid: str) -> bool:
    return iid in await view(reg)


async def test_index_going_backwards_resets(consul: ConsulStandIn) -> None:
    reg = RegistryStore(MemoryStore())
    source = ConsulSource("api", address=consul.address, wait=30)
    async with running(source, reg):
        consul.register("api", "127.0.0.51", 8080, service_id="a1")
        for n in range(5):  # push the index up
            consul.register("other", "127.0.0.60", 80 + n, service_id=f"o{n}")
        await until(lambda: _has(reg, "node1-a1"))
        consul.reset_index(1)  # e.g. a snapshot restore: every index is lower than what the source holds

        async def reset() -> bool:
            return source.resets >= 1 and source.index == 1
        await until(reset, what="the source to see the index go backwards and start over")
        consul.register("api", "127.0.0.53", 8080, service_id="a3")  # index 2: lower than before the reset
        await until(lambda: _has(reg, "node1-a3"), what="the change after the reset")


async def test_consul_going_away_keeps_the_last_view_then_resyncs() -> None:
    port = free_port()
    reg = RegistryStore(MemoryStore())
    first = ConsulStandIn(port=port).start()
    first.register("api", "127.0.0.51", 8080, service_id="a1")
    source = ConsulSource("api", address=first.address, wait=30, max_backoff=0.5)
    async with running(source, reg):
        await until(lambda: _has(reg, "node1-a1"))
        first.stop()

        async def failing() -> bool:
            return source.errors >= 3
        await until(failing, what="errors while Consul is away")
        assert set(await view(reg)) == {"node1-a1"}, "errors never empty the set"
        with ConsulStandIn(port=port) as second:  # back, with a different catalog and lower indexes
            second.register("api", "127.0.0.52", 8080, service_id="a2")

            async def resynced() -> bool:
                return set(await view(reg)) == {"node1-a2"}
            await until(resynced, what="resync after Consul is back")


async def test_dynamic_backend_follows_name_and_version_through_haproxy(
        tmp_path: Path, consul: ConsulStandIn) -> None:
    made: list[Backend] = []
    try:
        async with agent_rig(tmp_path, min_slots=8) as rig:
            blue = [new_backend(made, "blue1"), new_backend(made, "blue2")]
            green = new_backend(made, "green1")
            for n, b in enumerate(blue, 1):
                consul.register("api", b.address, b.port, service_id=f"blue{n}", tags=["version=1.0"])
            consul.register("api", green.address, green.port, service_id="green1", tags=["version=2.0"])
            fe_port = free_port()
            await rig.reg.put_backend(BackendSpec.from_dict({"type": "dynamic", "name": "api", "version": "1.0"},
                                                            name="live"))
            await rig.reg.put_frontend(FrontendSpec.from_dict({"bind": f"127.0.0.1:{fe_port}", "backend": "live"},
                                                              name="myapp"))
            source = ConsulSource("api", address=consul.address, wait=30)
            url = f"http://127.0.0.1:{fe_port}/"

            async def answers(client: httpx.AsyncClient, n: int = 12) -> set[str]:
                out = set()
                for _ in range(n):
                    with contextlib.suppress(httpx.TransportError):
                        out.add((await client.get(url)).text)
                return out

            async with running(source, rig.reg), httpx.AsyncClient(timeout=5) as client:
                async def blue_only() -> bool:
                    return await answers(client) == {"backend=blue1", "backend=blue2"}
                await until(blue_only, timeout=20, what="version 1.0 members")
                await rig.settled()
                reloads = await rig.reloads()
                consul.deregister("blue2")

                async def blue1_only() -> bool:
                    return await answers(client) == {"backend=blue1"}
                await until(blue1_only, what="deregistration")
                consul.register("api", blue[1].address, blue[1].port, service_id="blue2", tags=["version=1.0"])
                await until(blue_only, what="registration")
                assert await rig.reloads() == reloads, "membership through the Runtime API"
                # blue/green: the backend follows version 2.0 now
                await rig.reg.put_backend(BackendSpec.from_dict({"type": "dynamic", "name": "api",
                                                                 "version": "2.0"}, name="live"))

                async def green_only() -> bool:
                    got = await answers(client)
                    return got == {"backend=green1"}
                await until(green_only, timeout=20, what="the switch to 2.0")
                consul.set_check("green1", "critical")

                async def unavailable() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        return (await client.get(url)).status_code == 503
                    return False
                await until(unavailable, what="no healthy 2.0 member")
                assert {i.id for i, _ in await rig.reg.list_instances("api")} == {"node1-blue1", "node1-blue2"}
                assert all(isinstance(i, Instance) and i.version == "1.0"
                           for i, _ in await rig.reg.list_instances("api"))
    finally:
        for b in made:
            b.stop()
