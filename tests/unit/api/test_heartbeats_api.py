"""Heartbeats that cost almost nothing: a lease renewed, no record rewritten, no revision, no watch event; and the
batch form (``POST /heartbeats``) renewing 1,000 instances in one request, item by item, over a real SQLite store."""

from __future__ import annotations

import asyncio

import httpx
from tests.unit.api.conftest import WRITE, MakeClient, auth

W = auth(WRITE)


async def register(client: httpx.AsyncClient, n: int, ttl: float, prefix: str = "i") -> None:
    await client.put("/services/web", json={"port": 8080}, headers=W)
    for i in range(n):
        r = await client.put(f"/services/web/instances/{prefix}{i}",
                             json={"address": f"127.1.{i // 250}.{i % 250 + 1}", "ttl": ttl}, headers=W)
        assert r.status_code == 201, r.text


async def test_a_heartbeat_renews_the_lease_and_writes_nothing(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    store = client.deps.registry.store  # type: ignore[attr-defined]
    await register(client, 1, ttl=1.0)
    before = await store.revision()
    watch = store.watch("/haplane/", before + 1)
    pending = asyncio.ensure_future(anext(watch))
    for _ in range(8):  # 2 s: past the TTL twice over
        r = await client.post("/services/web/instances/i0/heartbeat", headers=W)
        assert r.status_code == 200 and r.json() == {"id": "i0", "service": "web", "ttl": 1.0}
        await asyncio.sleep(0.25)
    assert await store.revision() == before, "a heartbeat writes no revision"
    assert not pending.done(), "and no watcher (no agent) wakes"
    pending.cancel()
    assert (await client.get("/services/web/instances/i0", headers=W)).status_code == 200


async def test_a_batch_renews_1000_instances_in_one_request(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    store = client.deps.registry.store  # type: ignore[attr-defined]
    body = {"instances": [{"service": "web", "id": f"i{i}"} for i in range(1000)]}
    await client.put("/services/web", json={"port": 8080}, headers=W)
    for chunk in range(40):  # registered 25 at a time, those before kept alive meanwhile (the machine may be slow)
        done = chunk * 25 + 25
        await asyncio.gather(*(client.put(f"/services/web/instances/i{i}", headers=W, json={
            "address": f"127.1.{i // 250}.{i % 250 + 1}", "ttl": 3}) for i in range(chunk * 25, done)))
        r = await client.post("/heartbeats", json={"instances": body["instances"][:done]}, headers=W)
        assert r.json()["renewed"] == done
    await register(client, 1, ttl=3, prefix="unrenewed-")
    before = await store.revision()
    loop = asyncio.get_running_loop()
    end = loop.time() + 6.5  # twice the TTL and more
    while loop.time() < end:
        r = await client.post("/heartbeats", json=body, headers=W)
        assert r.status_code == 200, r.text
        assert r.json()["renewed"] == 1000
        assert {x["status"] for x in r.json()["results"]} == {"renewed"}
        await asyncio.sleep(0.3)
    ids = {i["id"] for i in (await client.get("/services/web/instances", headers=W)).json()}
    assert len(ids) == 1000 and "unrenewed-0" not in ids, "every renewed one lives; the other expired"
    assert await store.revision() == before + 1, "the only write was the expiry of the one not renewed"


async def test_each_item_gets_its_own_outcome(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    await register(client, 1, ttl=30)
    await client.put("/services/web/instances/forever", json={"address": "127.0.0.9"}, headers=W)
    await client.put("/services/web/instances/short", json={"address": "127.0.0.8", "ttl": 1}, headers=W)
    await asyncio.sleep(1.3)  # "short" expires
    r = await client.post("/heartbeats", json={"instances": [
        {"service": "web", "id": "i0"}, {"service": "web", "id": "nobody"}, {"service": "web", "id": "forever"},
        {"service": "web", "id": "short"}]}, headers=W)
    assert r.status_code == 200
    assert [(x["id"], x["status"]) for x in r.json()["results"]] == [
        ("i0", "renewed"), ("nobody", "not-found"), ("forever", "no-ttl"), ("short", "not-found")]
    assert r.json()["renewed"] == 1
    # one at a time: the same outcomes as errors
    assert (await client.post("/services/web/instances/nobody/heartbeat", headers=W)).status_code == 404
    r = await client.post("/services/web/instances/forever/heartbeat", headers=W)
    assert r.status_code == 422 and "no TTL" in r.json()["detail"]


async def test_a_malformed_batch_is_refused_whole_naming_every_bad_item(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    await register(client, 2, ttl=30)
    r = await client.post("/heartbeats", json={"instances": [
        {"service": "web", "id": "i0"}, "i1", {"service": "web", "id": "bad id\n"}, {"service": "web"},
        {"service": "web", "id": "i1", "ttl": 5}]}, headers=W)
    assert r.status_code == 422
    body = r.json()
    assert [e["field"] for e in body["errors"]] == ["instances[1]", "instances[2].id", "instances[3].id",
                                                   "instances[4].ttl"]
    assert "4 heartbeats are invalid; nothing was applied" in body["detail"]


async def test_an_oversized_batch_is_413_naming_the_limit(make_client: MakeClient) -> None:
    client = await make_client(max_heartbeat_batch=5)
    r = await client.post("/heartbeats", json={"instances": [{"service": "web", "id": f"i{i}"} for i in range(6)]},
                          headers=W)
    assert r.status_code == 413
    body = r.json()
    assert (body["error"], body["limit"], body["setting"]) == ("TooLarge", 5, "max_heartbeat_batch")
    assert "HAPLANE_MAX_HEARTBEAT_BATCH" in body["detail"] and "6 items" in body["detail"]


async def test_concurrent_heartbeats_share_reads_and_renewals(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    await register(client, 50, ttl=30)
    reg = client.deps.registry  # type: ignore[attr-defined]
    batches = reg._heartbeats.batches
    answers = await asyncio.gather(*(client.post(f"/services/web/instances/i{i}/heartbeat", headers=W)
                                     for i in range(50)))
    assert all(a.status_code == 200 for a in answers)
    assert reg._heartbeats.items >= 50
    assert reg._heartbeats.batches - batches < 50, "some heartbeats shared one read and one renewal"
