"""The bulk endpoint ``PUT /sources/{source}/instances``: 10,000 instances in one transaction over SQLite, a set
with bad items refused whole naming every one, an oversized set refused with 413 naming the limit."""

from __future__ import annotations

from tests.unit.api.conftest import WRITE, MakeClient, auth

W = auth(WRITE)


def items(n: int, service: str = "web") -> list[dict[str, object]]:
    return [{"service": service, "id": f"b{i}", "address": f"127.2.{i // 250 % 250}.{i % 250 + 1}"}
            for i in range(n)]


async def test_10000_instances_in_one_set(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    store = client.deps.registry.store  # type: ignore[attr-defined]
    await client.put("/services/web", json={"port": 8080}, headers=W)
    before = await store.revision()
    r = await client.put("/sources/bulk/instances", json={"instances": items(10_000), "ttl": 600}, headers=W)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["instances"] == 10_000 and len(r.json()["changes"]) == 10_000
    assert await store.revision() == before + 1, "one transaction"
    listed = (await client.get("/services/web/instances", headers=W)).json()
    assert len(listed) == 10_000
    assert sorted(i["slot"] for i in listed) == list(range(1, 10_001))
    # the same set again changes nothing; 100 moved change 100, in one transaction
    r = await client.put("/sources/bulk/instances", json={"instances": items(10_000), "ttl": 600}, headers=W)
    assert r.json()["changes"] == []
    moved = [dict(x, address="127.3.0.1", port=9000 + k) if k < 100 else x for k, x in enumerate(items(10_000))]
    rev = await store.revision()
    r = await client.put("/sources/bulk/instances", json={"instances": moved, "ttl": 600}, headers=W)
    assert len(r.json()["changes"]) == 100 and await store.revision() == rev + 1


async def test_a_set_with_bad_items_is_refused_whole_naming_every_one(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    await client.put("/services/web", json={"port": 8080}, headers=W)
    body = items(10)
    body[2]["address"] = "300.1.1.1"
    body[5]["slot"] = 4
    body[7] = "not an instance"
    body[8]["weight"] = -1
    before = await client.deps.registry.store.revision()  # type: ignore[attr-defined]
    r = await client.put("/sources/bulk/instances", json={"instances": body}, headers=W)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["instances[2].address", "instances[5].slot",
                                                       "instances[7]", "instances[8].weight"]
    assert "4 instances are invalid; nothing was applied" in r.json()["detail"]
    assert await client.deps.registry.store.revision() == before  # type: ignore[attr-defined]
    twice = [*items(5), items(5)[1], items(5)[3]]
    r = await client.put("/sources/bulk/instances", json={"instances": twice}, headers=W)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["instances[5]", "instances[6]"]
    assert all("appears twice" in e["detail"] for e in r.json()["errors"])


async def test_an_oversized_set_is_413_naming_the_limit(make_client: MakeClient) -> None:
    client = await make_client(max_source_instances=100)
    r = await client.put("/sources/bulk/instances", json={"instances": items(101)}, headers=W)
    assert r.status_code == 413
    assert (r.json()["limit"], r.json()["setting"]) == (100, "max_source_instances")
    assert "HAPLANE_MAX_SOURCE_INSTANCES" in r.json()["detail"]
