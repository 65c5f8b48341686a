"""One watcher for every Consul service Thalassa's dynamic backends name (or every service with a tag), against
the Consul stand-in: backends naming api and web get both followed, a new backend naming a third service gets it
followed too, a deleted backend's service is let go (its instances leave), and the whole thing routes through a
real HAProxy by name and version."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.agent.conftest import Backend, agent_rig, free_port, new_backend
from tests.integration.consul.conftest import running, until

from haplane.model.records import BackendSpec, FrontendSpec
from haplane.registry import RegistryStore
from haplane.sources.consul import ConsulSource
from haplane.sources.consul_follow import ConsulFollower
from haplane.testing_consul import ConsulStandIn

pytestmark = pytest.mark.integration


async def test_one_watcher_follows_every_service_dynamic_backends_name(tmp_path: Path, consul: ConsulStandIn,
                                                                       backends: list[Backend]) -> None:
    api1, api2, web1, jobs1 = (new_backend(backends, n) for n in ("api1", "api2", "web1", "jobs1"))
    consul.register("api", api1.address, api1.port, service_id="api-1", tags=["version=1"])
    consul.register("api", api2.address, api2.port, service_id="api-2", tags=["version=2"])
    consul.register("web", web1.address, web1.port, service_id="web-1", tags=["version=7"])
    consul.register("jobs", jobs1.address, jobs1.port, service_id="jobs-1", tags=["version=1"])
    consul.register("unnamed", web1.address, web1.port, service_id="x-1", tags=["version=1"])
    port = free_port()
    async with agent_rig(tmp_path) as rig:
        reg = rig.reg
        for name, svc, version in (("api-live", "api", "1"), ("api-next", "api", "2"), ("web", "web", "7")):
            await reg.put_backend(BackendSpec(name, "dynamic", svc, version))
        await reg.put_frontend(FrontendSpec.from_dict({"bind": f"127.0.0.1:{port}", "backend": "web", "rules": [
            {"type": "header", "header": "host", "operation": "hdr_dom", "value": "next.test",
             "backend": "api-next"},
            {"type": "header", "header": "host", "operation": "hdr_dom", "value": "live.test",
             "backend": "api-live"},
            {"type": "header", "header": "host", "operation": "hdr_dom", "value": "jobs.test",
             "backend": "jobs"}]}, name="edge"))
        follower = ConsulFollower(lambda s: ConsulSource(s, address=consul.address, wait=2), interval=0.1)
        proxy = f"http://127.0.0.1:{port}"

        async def answer(host: str) -> str:
            try:
                r = await rig.client.get(proxy + "/", headers={"Host": host})
            except Exception:
                return "no answer"
            return r.text

        async with running(follower, reg):
            async def routed() -> bool:
                return [await answer(h) for h in ("live.test", "next.test", "www.test")] == [
                    "backend=api1", "backend=api2", "backend=web1"]
            await until(routed, what="api v1, api v2 and web through one watcher")
            assert set(follower.following) == {"api", "web"}, "only the services the backends name"
            assert {i.service for i, _ in await reg.list_instances()} == {"api", "web"}

            await reg.put_backend(BackendSpec("jobs", "dynamic", "jobs", "1"))
            async def jobs() -> bool:
                return await answer("jobs.test") == "backend=jobs1"
            await until(jobs, what="a new backend's service followed without a restart")

            await reg.delete_backend("jobs")
            async def let_go() -> bool:
                return "jobs" not in follower.following and not [
                    i for i, _ in await reg.list_instances() if i.service == "jobs"]
            await until(let_go, what="the deleted backend's service let go, its instances gone")


async def test_a_tag_follows_every_service_carrying_it(tmp_path: Path, consul: ConsulStandIn) -> None:
    from haplane.store.memory import MemoryStore

    consul.register("api", "127.0.0.2", 80, service_id="api-1", tags=["haplane", "version=1"])
    consul.register("db", "127.0.0.3", 5432, service_id="db-1", tags=["internal"])
    store = MemoryStore()
    reg = RegistryStore(store)
    follower = ConsulFollower(lambda s: ConsulSource(s, address=consul.address, wait=2), tag="haplane",
                              address=consul.address, wait=2)
    async with running(follower, reg):
        async def api_only() -> bool:
            return {i.service for i, _ in await reg.list_instances()} == {"api"}
        await until(api_only, what="the tagged service")
        consul.register("web", "127.0.0.4", 80, service_id="web-1", tags=["haplane"])
        async def web_too() -> bool:
            return {i.service for i, _ in await reg.list_instances()} == {"api", "web"}
        await until(web_too, what="a newly tagged service followed (blocking query on the catalog)")
        assert set(follower.following) == {"api", "web"}
    await store.close()
