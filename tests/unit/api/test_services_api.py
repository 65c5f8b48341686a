"""Services, instances and source sets through the API, over a real store."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from tests.unit.api.conftest import ADMIN, READ, WRITE, MakeClient, auth

W = auth(WRITE)


async def rev(client: httpx.AsyncClient) -> int:
    value: int = await client.deps.registry.store.revision()  # type: ignore[attr-defined]
    return value


async def test_service_lifecycle_with_revisions(client: httpx.AsyncClient) -> None:
    r = await client.put("/services/web", json={"predicate": "web.example.com", "port": 8080}, headers=W)
    assert r.status_code == 201
    etag = r.headers["etag"]
    assert r.json()["predicate"] == "web.example.com"

    r = await client.put("/services/web", json={"predicate": "www.example.com", "port": 8080}, headers=W)
    assert r.status_code == 200 and r.headers["etag"] != etag

    # a write based on the stale revision is refused, and changes nothing
    before = await rev(client)
    r = await client.put("/services/web", json={"predicate": "old.example.com"}, headers={**W, "If-Match": etag})
    assert r.status_code == 412
    assert r.json()["error"] == "PreconditionFailed"
    assert await rev(client) == before
    r = await client.get("/services/web", headers=auth(READ))
    assert r.json()["predicate"] == "www.example.com"
    # the current one passes
    r = await client.put("/services/web", json={"predicate": "new.example.com"},
                         headers={**W, "If-Match": r.headers["etag"]})
    assert r.status_code == 200

    assert [s["name"] for s in (await client.get("/services", headers=auth(READ))).json()] == ["web"]
    r = await client.delete("/services/web", headers=W)
    assert r.status_code == 200
    assert (await client.get("/services/web", headers=auth(READ))).status_code == 404


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"predicate": "a.com\n  stats enable"}, "predicate", "is not a valid host name"),
    ({"mode": "tcp"}, "mode", "must be one of"),
    ({"port": 70000}, "port", ""),
    ({"cookie": "a b"}, "cookie", ""),
    ({"balance": "roundrobin\n  stats enable"}, "balance", ""),
    ({"name": "other"}, "name", "differs from the name in the URL"),
    ({"bogus": 1}, "bogus", ""),
])
async def test_bad_service_is_refused_naming_the_field_and_changes_nothing(
        client: httpx.AsyncClient, body: dict[str, Any], field: str, words: str) -> None:
    before = await rev(client)
    r = await client.put("/services/web", json=body, headers=W)
    assert r.status_code == 422, r.text
    err = r.json()
    assert set(err) == {"error", "field", "detail"}
    assert err["field"] == field
    assert words in err["detail"]
    assert await rev(client) == before


async def test_unreadable_bodies_are_400(client: httpx.AsyncClient) -> None:
    for content in (b"{not json", b"", b"[1, 2]"):
        r = await client.put("/services/web", content=content, headers=W)
        assert r.status_code == 400, (content, r.text)
        assert r.json()["error"] == "PayloadError"


async def test_bad_service_name_in_url(client: httpx.AsyncClient) -> None:
    r = await client.put("/services/we%20b", json={}, headers=W)
    assert r.status_code == 422
    assert r.json()["field"] == "name"


async def test_instances_get_slots_filters_and_server_owned_fields(client: httpx.AsyncClient) -> None:
    r = await client.put("/services/web/instances/a", json={"address": "127.0.0.2"}, headers=W)
    assert r.status_code == 404 and r.json()["field"] == "service"
    await client.put("/services/web", json={"port": 8080}, headers=W)
    r = await client.put("/services/web/instances/a", json={"address": "127.0.0.2", "version": "1.0",
                                                             "zone": "z1"}, headers=W)
    assert r.status_code == 201
    a = r.json()
    assert (a["port"], a["slot"]) == (8080, 1)  # the service's port by default; the lowest free slot
    r = await client.put("/services/web/instances/b", json={"address": "127.0.0.3:9000", "version": "2.0",
                                                             "zone": "z1"}, headers=W)
    assert (r.json()["port"], r.json()["slot"]) == (9000, 2)
    # an update keeps the slot; a move (another address) takes a new one, the old one drains
    r = await client.put("/services/web/instances/a", json={"address": "127.0.0.2", "weight": 50}, headers=W)
    assert r.status_code == 200 and r.json()["slot"] == 1 and r.json()["weight"] == 50
    r = await client.put("/services/web/instances/a", json={"address": "127.0.0.4", "weight": 50}, headers=W)
    assert r.status_code == 200 and r.json()["slot"] == 3 and r.json()["weight"] == 50

    ids = lambda r: sorted(i["id"] for i in r.json())  # noqa: E731
    assert ids(await client.get("/services/web/instances", headers=auth(READ))) == ["a", "b"]
    assert ids(await client.get("/services/web/instances?version=2.0", headers=auth(READ))) == ["b"]
    assert ids(await client.get("/services/web/instances?zone=z1&version=1.0", headers=auth(READ))) == []

    for field, value in (("slot", 3), ("lease", 1), ("source", "x")):
        r = await client.put("/services/web/instances/c", json={"address": "127.0.0.5", field: value}, headers=W)
        assert r.status_code == 422 and r.json()["field"] == field
    r = await client.put("/services/web/instances/c", json={"address": "10.0.0.1;stats"}, headers=W)
    assert r.status_code == 422 and r.json()["field"] == "address"

    assert (await client.delete("/services/web/instances/a", headers=W)).status_code == 200
    assert (await client.delete("/services/web/instances/a", headers=W)).status_code == 404
    assert ids(await client.get("/services/web/instances", headers=auth(READ))) == ["b"]


async def test_ttl_instances_expire_unless_heartbeats_renew_them(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    await client.put("/services/web", json={"port": 8080}, headers=W)
    await client.put("/services/web/instances/kept", json={"address": "127.0.0.2", "ttl": 1}, headers=W)
    await client.put("/services/web/instances/lost", json={"address": "127.0.0.3", "ttl": 1}, headers=W)
    r = await client.post("/services/web/instances/none/heartbeat", headers=W)
    assert r.status_code == 404
    for _ in range(6):  # 1.8 s: past the TTL for the one without heartbeats
        await asyncio.sleep(0.3)
        assert (await client.post("/services/web/instances/kept/heartbeat", headers=W)).status_code == 200
    ids = sorted(i["id"] for i in (await client.get("/services/web/instances", headers=auth(READ))).json())
    assert ids == ["kept"]


async def test_source_sets_replace_in_one_transaction_and_expire(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    await client.put("/services/web", json={"port": 8080}, headers=W)
    await client.put("/services/web/instances/manual", json={"address": "127.0.0.9"}, headers=W)

    def body(*ids: str, ttl: float | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"instances": [{"service": "web", "id": i, "address": f"127.0.1.{10 + int(i[1:])}"}
                                           for i in ids]}
        if ttl is not None:
            d["ttl"] = ttl
        return d

    r = await client.put("/sources/dock1/instances", json=body("c1", "c2"), headers=W)
    assert r.status_code == 200 and r.json()["instances"] == 2
    before = await rev(client)
    r = await client.put("/sources/dock1/instances", json=body("c2", "c3"), headers=W)
    assert await rev(client) == before + 1  # one transaction
    kinds = sorted((c["kind"], c["subject"]) for c in r.json()["changes"])
    assert kinds == [("instance-add", "web/c3"), ("instance-remove", "web/c1")]
    moved = body("c2", "c3")
    moved["instances"][1]["weight"] = 3
    r = await client.put("/sources/dock1/instances", json=moved, headers=W)
    assert [(c["kind"], c["subject"]) for c in r.json()["changes"]] == [("instance-update", "web/c3")]
    listed = {i["id"]: i for i in (await client.get("/services/web/instances", headers=auth(READ))).json()}
    assert sorted(listed) == ["c2", "c3", "manual"]  # another source's (and the API's) instances stay
    assert listed["c2"]["source"] == "dock1"

    # a bad item refuses the whole set
    before = await rev(client)
    bad = body("c4")
    bad["instances"].append({"service": "web", "id": "c5", "address": "not an address"})
    r = await client.put("/sources/dock1/instances", json=bad, headers=W)
    assert r.status_code == 422 and r.json()["field"] == "instances[1].address"
    assert await rev(client) == before

    # with a ttl the set lives only while the source keeps sending it
    await client.put("/sources/dock2/instances", json=body("d1", ttl=1), headers=W)
    assert "d1" in {i["id"] for i in (await client.get("/services/web/instances", headers=auth(READ))).json()}
    for _ in range(30):
        await asyncio.sleep(0.1)
        ids = {i["id"] for i in (await client.get("/services/web/instances", headers=auth(READ))).json()}
        if "d1" not in ids:
            break
    assert ids == {"c2", "c3", "manual"}


async def test_generate_answers_the_config_as_text(client: httpx.AsyncClient) -> None:
    payload = {"table": "astro", "running": [{"serviceName": "app1", "id": "c1", "ip": "192.168.1.9:80"}],
               "candidates": [{"serviceName": "app1", "configMode": "host", "predicate": "first.example.com",
                               "cookie": "JSESSIONID", "containers": [{"id": "c1", "ip": "192.168.1.9:80"}]}]}
    r = await client.post("/generate", json=payload, headers=W)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "hdr(host) -i first.example.com" in r.text.replace("req.hdr", "hdr") or "first.example.com" in r.text
    assert "server " in r.text and "192.168.1.9:80" in r.text
    # the table persists: running only keeps the routing
    r = await client.post("/generate", json={"table": "astro", "running": payload["running"]}, headers=W)
    assert "first.example.com" in r.text
    r = await client.post("/generate", json={"table": "astro", "candidates": [
        {"serviceName": "x", "predicate": "a.com\n stats enable", "containers": []}]}, headers=W)
    assert r.status_code == 422 and r.json()["field"] == "candidates[0].predicate"


async def test_rendered_config_and_health(client: httpx.AsyncClient) -> None:
    await client.put("/services/web", json={"predicate": "web.example.com", "port": 8080}, headers=W)
    await client.put("/services/web/instances/a", json={"address": "127.0.0.2"}, headers=W)
    r = await client.get("/haproxy/config", headers=auth(READ))
    assert r.status_code == 200 and "backend web" in r.text and "127.0.0.2:8080" in r.text
    again = await client.get("/haproxy/config", headers=auth(READ))
    assert again.text == r.text  # same data, same bytes
    r = await client.get("/haproxy/config?applied=1", headers=auth(READ))
    assert r.status_code == 422  # no agent in this process
    h = await client.get("/health", headers=auth(READ))
    assert h.status_code == 200 and h.json()["store"]["revision"] == 2


async def test_openapi_document_lists_the_routes(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in ("/services/{name}", "/services/{name}/instances/{iid}", "/sources/{source}/instances",
                 "/frontends/{name}", "/backends/{name}", "/backends/{name}/members", "/generate",
                 "/haproxy/config", "/health", "/auth/login"):
        assert path in doc["paths"], path
    body = doc["paths"]["/services/{name}"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert "predicate" in body["properties"]
    assert (await client.get("/docs")).status_code == 200


async def test_admin_may_do_what_write_may(client: httpx.AsyncClient) -> None:
    r = await client.put("/services/web", json={}, headers=auth(ADMIN))
    assert r.status_code == 201
