"""PUT replaces, PATCH merges, and the OpenAPI document says which. Draining an instance is a PATCH that keeps
its version and zone (a partial PUT used to drop them silently)."""

from __future__ import annotations

import asyncio

import httpx
from tests.unit.api.conftest import WRITE, auth

W = auth(WRITE)


async def setup(client: httpx.AsyncClient) -> str:
    await client.put("/services/web", json={"predicate": "web.example.com", "port": 8080, "cookie": "SRV"},
                     headers=W)
    r = await client.put("/services/web/instances/a", headers=W, json={
        "address": "127.0.0.2", "version": "1.4", "zone": "eu-1a", "weight": 7, "ttl": 30})
    assert r.status_code == 201
    return r.headers["etag"]


async def test_a_drain_is_a_patch_that_keeps_every_other_field(client: httpx.AsyncClient) -> None:
    await setup(client)
    before = (await client.get("/services/web/instances/a", headers=W)).json()
    r = await client.patch("/services/web/instances/a", json={"state": "drain"}, headers=W)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["state"] == "drain"
    for field in ("version", "zone", "weight", "ttl", "lease", "slot", "address", "port"):
        assert after[field] == before[field], field
    assert r.headers["etag"] == f'"{after["revision"]}"'
    # null clears an optional field; the rest stays
    r = await client.patch("/services/web/instances/a", json={"zone": None}, headers=W)
    assert (r.json()["zone"], r.json()["version"], r.json()["state"]) == (None, "1.4", "drain")


async def test_put_replaces_but_keeps_what_the_registry_owns(client: httpx.AsyncClient) -> None:
    await setup(client)
    before = (await client.get("/services/web/instances/a", headers=W)).json()
    r = await client.put("/services/web/instances/a", json={"address": "127.0.0.2", "ttl": 30}, headers=W)
    assert r.status_code == 200
    after = r.json()
    assert (after["version"], after["zone"], after["weight"]) == (None, None, 10), "PUT replaces: defaults"
    assert (after["slot"], after["lease"]) == (before["slot"], before["lease"]), "the registry's own are kept"
    # a source's instance keeps its source through a PUT by hand
    await client.put("/sources/docker-h1/instances", json={"instances": [
        {"service": "web", "id": "s1", "address": "127.0.0.3"}]}, headers=W)
    r = await client.put("/services/web/instances/s1", json={"address": "127.0.0.3", "weight": 3}, headers=W)
    assert r.json()["source"] == "docker-h1"


async def test_patch_checks_the_merged_record_and_refuses_what_it_cannot_change(client: httpx.AsyncClient) -> None:
    etag = await setup(client)
    for body, field in (({"state": "sleeping"}, "state"), ({"slot": 3}, "slot"), ({"source": "x"}, "source"),
                        ({"bogus": 1}, "bogus"), ({"id": "b"}, "id"), ({"weight": 1000}, "weight")):
        r = await client.patch("/services/web/instances/a", json=body, headers=W)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"] == field, (body, r.json())
    assert (await client.patch("/services/web/instances/nobody", json={"state": "drain"}, headers=W)
            ).status_code == 404
    r = await client.patch("/services/web/instances/a", json={"weight": 3}, headers={**W, "If-Match": etag})
    assert r.status_code == 200  # nothing changed since etag
    r = await client.patch("/services/web/instances/a", json={"weight": 4}, headers={**W, "If-Match": etag})
    assert r.status_code == 412
    assert (await client.get("/services/web/instances/a", headers=W)).json()["weight"] == 3


async def test_concurrent_patches_of_different_fields_all_land(client: httpx.AsyncClient) -> None:
    await setup(client)
    answers = await asyncio.gather(
        client.patch("/services/web/instances/a", json={"state": "drain"}, headers=W),
        client.patch("/services/web/instances/a", json={"version": "2.0"}, headers=W),
        client.patch("/services/web/instances/a", json={"zone": "eu-1b"}, headers=W),
        client.patch("/services/web/instances/a", json={"weight": 2}, headers=W))
    assert [a.status_code for a in answers] == [200] * 4
    final = (await client.get("/services/web/instances/a", headers=W)).json()
    assert (final["state"], final["version"], final["zone"], final["weight"]) == ("drain", "2.0", "eu-1b", 2)


async def test_patch_a_service(client: httpx.AsyncClient) -> None:
    await setup(client)
    r = await client.patch("/services/web", json={"port": 9090}, headers=W)
    assert r.status_code == 200
    assert (r.json()["port"], r.json()["predicate"], r.json()["cookie"]) == (9090, "web.example.com", "SRV")
    r = await client.patch("/services/web", json={"mode": "tcp"}, headers=W)
    assert r.status_code == 422 and r.json()["field"] == "mode"
    assert (await client.patch("/services/nope", json={"port": 1}, headers=W)).status_code == 404


async def test_the_openapi_document_says_put_replaces_and_patch_merges(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/services/{name}", "/services/{name}/instances/{iid}"):
        assert "PUT replaces" in paths[path]["put"]["description"]
        assert "PATCH merges" in paths[path]["patch"]["description"]
