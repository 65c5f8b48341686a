"""Names that collide (issue 17): every name a record takes in haproxy.cfg is held by one owner, and a write that
claims a name another owner holds is 409 naming that owner, checked in the write's own transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
import pytest
from tests.unit.api.conftest import ADMIN, WRITE, MakeClient, auth

from haplane.errors import NameTaken
from haplane.model.records import Service
from haplane.registry import RegistryStore
from haplane.sources.base import ApiSink, StoreSink
from haplane.store import open_store
from haplane.store.base import Compare, Op, Store

W, A = auth(WRITE), auth(ADMIN)


def taken(r: httpx.Response, holder: str) -> None:
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"] == "NameTaken" and body["holder"] == holder, body


async def test_a_service_never_shadows_a_thalassa_backend_of_its_name(client: httpx.AsyncClient) -> None:
    r = await client.put("/backends/b1", json={"members": [{"host": "127.0.0.2", "port": 8080}]}, headers=W)
    assert r.status_code == 200, r.text
    r = await client.put("/services/b1", json={"port": 8080}, headers=W)
    taken(r, "backend:b1")
    assert r.json()["field"] == "name" and "Thalassa backend 'b1'" in r.json()["detail"]
    assert (await client.get("/services/b1", headers=W)).status_code == 404
    cfg = (await client.get("/haproxy/config", headers=W)).text
    assert "127.0.0.2:8080" in cfg, "the backend's members are still in the config"
    # and the other way round: a backend named like a service
    assert (await client.put("/services/web", json={"port": 8080}, headers=W)).status_code == 201
    taken(await client.put("/backends/web", json={"members": []}, headers=W), "service:web")


async def test_haplanes_own_frontends_are_reserved(client: httpx.AsyncClient) -> None:
    for name in ("http", "haplane_stats"):
        r = await client.put(f"/frontends/{name}", json={"bind": "127.0.0.1:8081"}, headers=A)
        taken(r, f"haplane:frontend {name!r}")
        assert "haplane's own frontend" in r.json()["detail"]
        assert (await client.get(f"/frontends/{name}", headers=W)).status_code == 404


async def test_hosts_equal_after_normalisation_collide(client: httpx.AsyncClient) -> None:
    assert (await client.put("/services/dup1", json={"predicate": "Dup.Example.COM"}, headers=W)).status_code == 201
    r = await client.put("/services/dup2", json={"predicate": "dup.example.com."}, headers=W)
    taken(r, "service:dup1")
    assert r.json()["field"] == "predicate" and "'dup.example.com'" in r.json()["detail"]
    # PATCH onto a taken host too; the holder itself may rewrite its own record
    assert (await client.put("/services/other", json={"predicate": "other.example.com"}, headers=W)).status_code == 201
    taken(await client.patch("/services/other", json={"predicate": "DUP.example.com"}, headers=W), "service:dup1")
    assert (await client.put("/services/dup1", json={"predicate": "dup.example.com", "port": 81},
                             headers=W)).status_code == 200
    # freed by a delete, or by the holder moving away
    assert (await client.delete("/services/dup1", headers=W)).status_code == 200
    assert (await client.put("/services/dup2", json={"predicate": "dup.example.com."}, headers=W)).status_code == 201


async def test_path_prefixes_as_the_router_compares_them(client: httpx.AsyncClient) -> None:
    assert (await client.put("/services/api1", json={"mode": "path", "predicate": "api"}, headers=W)
            ).status_code == 201
    for prefix in ("/api", "/api/"):
        taken(await client.put("/services/api2", json={"mode": "path", "predicate": prefix}, headers=W),
              "service:api1")
    # path_beg is case-sensitive, and a longer prefix is its own route
    for name, prefix in (("api3", "/API"), ("api4", "/api/v2")):
        assert (await client.put(f"/services/{name}", json={"mode": "path", "predicate": prefix}, headers=W)
                ).status_code == 201
    # a host and a path of the same text are different things
    assert (await client.put("/services/h", json={"predicate": "api.example.com"}, headers=W)).status_code == 201


async def test_a_services_fallback_backend_name_is_its_own(client: httpx.AsyncClient) -> None:
    assert (await client.put("/services/a", json={}, headers=W)).status_code == 201
    taken(await client.put("/services/a_fallback", json={}, headers=W), "service:a")
    taken(await client.put("/backends/a_fallback", json={"members": []}, headers=W), "service:a")
    assert (await client.put("/services/b_fallback", json={}, headers=W)).status_code == 201
    taken(await client.put("/services/b", json={}, headers=W), "service:b_fallback")


async def test_hsdo_fallback_names_from_the_settings_are_taken() -> None:
    store = open_store("memory://")
    reg = RegistryStore(store, fallback_names={"web": "web-spare"})
    await reg.put_service(Service("web"))
    with pytest.raises(NameTaken) as err:
        await reg.put_service(Service("web-spare"))
    assert err.value.holder == "service:web"
    await store.close()


class RaceFirstTxn:
    """A store whose first transaction lets another writer commit just before it (between the check and the
    write), as a second process would."""

    def __init__(self, store: Store, before: object) -> None:
        self._store = store
        self._before = before
        self.fired = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        if not self.fired:
            self.fired = True
            await self._before()  # type: ignore[operator]
        return await self._store.txn(compares, ops)


async def test_two_writers_that_both_found_a_host_free_cannot_both_win() -> None:
    store = open_store("memory://")
    other = RegistryStore(store)

    async def other_writes() -> None:
        await other.put_service(Service("first", "host", "race.example.com"))

    racing = RaceFirstTxn(store, other_writes)
    mine = RegistryStore(racing)  # type: ignore[arg-type]
    with pytest.raises(NameTaken) as err:
        await mine.put_service(Service("second", "host", "race.example.com"))
    assert racing.fired and err.value.holder == "service:first"
    assert [s.name for s, _ in await mine.list_services()] == ["first"]
    await store.close()


async def test_concurrent_writers_of_one_host_one_wins(make_client: MakeClient) -> None:
    c = await make_client(store="sqlite")
    rs = await asyncio.gather(*(c.put(f"/services/s{i}", json={"predicate": "same.example.com"}, headers=W)
                                for i in range(6)))
    assert sorted(r.status_code for r in rs) == [201] + [409] * 5
    assert len((await c.get("/services", headers=W)).json()) == 1


async def test_a_source_defining_a_taken_name_is_told_and_writes_nothing(caplog: pytest.LogCaptureFixture
                                                                        ) -> None:
    store = open_store("memory://")
    reg = RegistryStore(store)
    await reg.put_service(Service("web", "host", "web.example.com"))
    sink = StoreSink(reg)
    with caplog.at_level(logging.WARNING):
        await sink.define([{"name": "web2", "predicate": "WEB.example.com"}])
    assert "web2" in caplog.text and "service 'web'" in caplog.text
    assert [s.name for s, _ in await reg.list_services()] == ["web"]
    await store.close()


async def test_an_import_with_a_collision_is_refused_whole(make_client: MakeClient) -> None:
    a = await make_client()
    assert (await a.put("/services/x", json={"port": 8080}, headers=W)).status_code == 201
    assert (await a.put("/backends/y", json={"members": []}, headers=W)).status_code == 200
    doc = (await a.get("/export", headers=A)).json()
    for backend in doc["backends"]:
        backend.update({"key": "x", "id": "backend/x"})
    b = await make_client()
    r = await b.post("/import", json=doc, headers=A)
    taken(r, "service:x")
    assert (await b.get("/services", headers=A)).json() == []


async def test_a_source_through_the_api_defining_a_taken_name_is_told(make_client: MakeClient,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    c = await make_client()
    assert (await c.put("/services/web", json={"predicate": "web.example.com"}, headers=W)).status_code == 201
    sink = ApiSink("http://api", WRITE)
    await sink.client.aclose()
    sink.client = httpx.AsyncClient(transport=c._transport, base_url="http://api", headers=W)  # the app in-process
    with caplog.at_level(logging.WARNING):
        await sink.define([{"name": "web2", "predicate": "WEB.example.com."}])
    assert "web2" in caplog.text and "service 'web'" in caplog.text
    assert [s["name"] for s in (await c.get("/services", headers=W)).json()] == ["web"]
    await sink.close()


async def test_a_write_that_keeps_its_names_does_not_read_them() -> None:
    """Another process's update of a service's port, health or TLS takes no name: it costs no read of every
    record (10,000 services), only its own key's compare-and-swap."""
    store = open_store("memory://")
    await RegistryStore(store).put_service(Service("web", "host", "web.example.com"))
    other = RegistryStore(store)
    await other.put_service(Service("web", "host", "WEB.example.com.", port=81))
    assert other._names is None, "the names were read"
    await other.put_service(Service("web", "host", "www.example.com"))  # a new host: checked
    assert other._names is not None
    with pytest.raises(NameTaken):
        await other.put_service(Service("web2", "host", "www.example.com"))
    await store.close()
