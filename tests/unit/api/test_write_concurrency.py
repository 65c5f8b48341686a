"""Writes at fleet scale, over a real SQLite store: 50 concurrent clients on one service lose nothing and get no
5xx; their registrations share store transactions (the registry's group commit); slots stay distinct; If-Match
still means 412 for a stale write, and a write without it never fails because another writer won a race."""

from __future__ import annotations

import asyncio

from tests.unit.api.conftest import WRITE, MakeClient, auth

from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.store import open_store

W = auth(WRITE)


async def test_50_concurrent_registrations_on_one_service_share_transactions(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    store = client.deps.registry.store  # type: ignore[attr-defined]
    await client.put("/services/web", json={"port": 8080}, headers=W)
    before = await store.revision()
    answers = await asyncio.gather(*(client.put(f"/services/web/instances/i{n}", headers=W,
                                                json={"address": f"127.0.1.{n + 1}", "version": "1", "zone": "a"})
                                     for n in range(50)))
    assert [a.status_code for a in answers] == [201] * 50
    revisions = await store.revision() - before
    assert revisions < 50, f"50 registrations took {revisions} store transactions: they were not batched"
    stored = {i["id"]: i for i in (await client.get("/services/web/instances", headers=W)).json()}
    assert set(stored) == {f"i{n}" for n in range(50)}, "no registration lost"
    assert sorted(i["slot"] for i in stored.values()) == list(range(1, 51)), "distinct slots, lowest first"
    for a in answers:  # each answer says what was stored, at the revision its ETag names
        body = a.json()
        assert stored[body["id"]]["slot"] == body["slot"]
        assert a.headers["etag"] == f'"{stored[body["id"]]["revision"]}"'
    slots = {k: v["slot"] for k, v in stored.items()}
    # updates keep their slots, and a batch of updates and deletes together loses nothing either
    answers = await asyncio.gather(
        *(client.put(f"/services/web/instances/i{n}", json={"address": f"127.0.1.{n + 1}", "weight": 5},
                     headers=W) for n in range(25)),
        *(client.delete(f"/services/web/instances/i{n}", headers=W) for n in range(25, 50)))
    assert [a.status_code for a in answers] == [200] * 50
    stored = {i["id"]: i for i in (await client.get("/services/web/instances", headers=W)).json()}
    assert {k: (v["slot"], v["weight"]) for k, v in stored.items()} == {f"i{n}": (slots[f"i{n}"], 5)
                                                                          for n in range(25)}


async def test_50_unconditional_puts_of_one_service_all_succeed(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    answers = await asyncio.gather(*(client.put("/services/web", json={"port": 8000 + n}, headers=W)
                                     for n in range(50)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 49 + [201], codes  # no 409: a write without If-Match asked for no condition
    revisions = sorted(int(a.headers["etag"].strip('"')) for a in answers)
    assert len(set(revisions)) == 50, "each write landed as a revision of its own: none was lost"
    last = next(a for a in answers if a.headers["etag"] == f'"{revisions[-1]}"')
    final = await client.get("/services/web", headers=W)
    assert final.headers["etag"] == last.headers["etag"] and final.json()["port"] == last.json()["port"]


async def test_if_match_on_a_stale_revision_is_412_even_in_a_batch(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    await client.put("/services/web", json={"port": 8080}, headers=W)
    r = await client.put("/services/web/instances/a", json={"address": "127.0.0.2"}, headers=W)
    etag = r.headers["etag"]
    answers = await asyncio.gather(*(client.put("/services/web/instances/a", headers={**W, "If-Match": etag},
                                                json={"address": "127.0.0.2", "weight": n + 1}) for n in range(20)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [412] * 19, codes  # exactly one write was based on the current revision
    assert {a.json()["error"] for a in answers if a.status_code == 412} == {"PreconditionFailed"}
    r = await client.put("/services/web/instances/a", json={"address": "127.0.0.2"},
                         headers={**W, "If-Match": etag})
    assert r.status_code == 412
    r = await client.delete("/services/web/instances/a", headers={**W, "If-Match": etag})
    assert r.status_code == 412
    # a service's If-Match likewise
    old = (await client.get("/services/web", headers=W)).headers["etag"]
    await client.put("/services/web", json={"port": 2}, headers=W)
    r = await client.put("/services/web", json={"port": 1}, headers={**W, "If-Match": old})
    assert r.status_code == 412


async def test_two_registries_on_one_store_race_without_losing_or_sharing_a_slot() -> None:
    """Two API processes over one store: their batches race for the same allocation record; the loser reads
    again and retries, so every write lands and no two instances share a slot."""
    store = open_store("memory://")
    a, b = RegistryStore(store, slot_cooldown=0), RegistryStore(store, slot_cooldown=0)
    await a.put_service(Service("web", port=80))
    results = await asyncio.gather(*(reg.put_instance(Instance(f"{name}{n}", "web", f"127.0.{k}.{n + 1}", 80))
                                     for k, (name, reg) in enumerate((("a", a), ("b", b))) for n in range(30)))
    assert len(results) == 60
    stored = await a.list_instances("web")
    assert len(stored) == 60
    assert sorted(i.slot for i, _ in stored) == list(range(1, 61))
    await store.close()


async def test_a_registration_answer_is_a_5xx_never(make_client: MakeClient) -> None:
    """Bad and good registrations mixed in one burst: the bad ones are 4xx naming the field, the good ones land."""
    client = await make_client(store="sqlite")
    await client.put("/services/web", json={"port": 8080}, headers=W)
    bodies = [{"address": f"127.0.2.{n + 1}"} if n % 3 else {"address": "not an address\n"} for n in range(30)]
    answers = await asyncio.gather(*(client.put(f"/services/web/instances/m{n}", json=body, headers=W)
                                     for n, body in enumerate(bodies)))
    assert all(a.status_code < 500 for a in answers)
    assert sorted({a.status_code for a in answers}) == [201, 422]
    assert len((await client.get("/services/web/instances", headers=W)).json()) == 20



async def test_a_batch_fills_the_holes_first_then_grows() -> None:
    """One batch of takes walks the service's slots once: holes left by deletes (rested: cooldown 0) are taken
    lowest first, then the batch grows past the top; distinct, nothing lost."""
    store = open_store("memory://")
    reg = RegistryStore(store, slot_cooldown=0)
    await reg.put_service(Service("web", port=80))
    for n in range(1, 11):
        await reg.put_instance(Instance(f"old{n}", "web", f"127.0.0.{n}", 80))
    for n in (3, 7, 8):
        await reg.delete_instance("web", f"old{n}")
    results = await asyncio.gather(*(reg.put_instance(Instance(f"new{n}", "web", f"127.0.1.{n + 1}", 80))
                                     for n in range(6)))
    assert [inst.slot for inst, _, _ in results] == [3, 7, 8, 11, 12, 13]
    assert reg._writes.batches == 10 + 3 + 1, "the six were one batch"
    stored = sorted(i.slot for i, _ in await reg.list_instances("web"))
    assert stored == list(range(1, 14))
    await store.close()
