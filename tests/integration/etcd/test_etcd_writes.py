"""The batched write path on a real etcd, whose transactions are bounded (``--max-txn-ops``, 128 operations by
default): concurrent registrations into one service beyond that bound all land (the registry splits a batch etcd
refuses and keeps later batches under it), unconditional writes of one service never answer 409, and a source's
set that cannot be one etcd transaction is refused whole with 413 naming etcd's limit, nothing written."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.support.procs import EtcdCluster

from haplane.api import ApiDeps, create_app
from haplane.errors import TxnTooLarge
from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.settings import Settings
from haplane.store import Put, open_store
from haplane.store.base import Store

pytestmark = pytest.mark.integration
TOKEN = "etcd-writes-token-1234"
H = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def store(etcd_single: EtcdCluster) -> AsyncIterator[Store]:
    st = open_store(f"etcd://{etcd_single.hostports[0]}/w{uuid.uuid4().hex[:10]}")
    yield st
    await st.close()


@pytest.fixture
async def client(store: Store, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    deps = ApiDeps(registry=RegistryStore(store, slot_cooldown=0),
                   settings=Settings(state_dir=tmp_path / "state", tokens={TOKEN: "admin"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://api",
                                 headers=H) as c:
        c.deps = deps  # type: ignore[attr-defined]
        yield c


async def test_etcd_refuses_a_txn_past_its_limit_as_too_large_writing_nothing(store: Store) -> None:
    before = await store.revision()
    with pytest.raises(TxnTooLarge) as err:
        await store.txn([], [Put(f"/big/{i}", "v") for i in range(200)])
    assert err.value.count == 200 and "--max-txn-ops" in str(err.value)
    assert await store.revision() == before and (await store.range("/big/"))[0] == []


async def test_keepalive_many_never_reports_a_live_lease_gone(store: Store) -> None:
    """etcd's gateway often ends a streamed keepalive answer before answering every request in it (17 of 200):
    the leases it left unanswered are asked again, never taken for expired."""
    leases = [lease for _ in range(5) for lease in await asyncio.gather(*(store.grant_lease(30) for _ in range(100)))]
    dead = await store.grant_lease(30)
    await store.revoke_lease(dead)
    for _ in range(5):
        assert await store.keepalive_many([*leases, dead, 424242]) == {dead, 424242}


async def test_300_concurrent_registrations_into_one_service_all_land(store: Store) -> None:
    """300 writes queue before the first batch runs: one batch of 300 is more than etcd takes in a txn, so the
    registry splits it (and remembers the bound); every registration lands, slots distinct, few revisions."""
    reg = RegistryStore(store, slot_cooldown=0)
    await reg.put_service(Service("web", port=80))
    before = await store.revision()
    results = await asyncio.gather(*(reg.put_instance(Instance(f"i{n}", "web", f"127.0.{n // 250}.{n % 250 + 1}",
                                                                80)) for n in range(300)))
    assert all(created for _, _, created in results)
    assert reg._writes.max_items < 128, "the refused batch taught the registry etcd's bound"
    stored = await reg.list_instances("web")
    assert sorted(i.slot for i, _ in stored) == list(range(1, 301)), "every one landed, distinct slots"
    assert {i.id: rev for i, rev in stored} == {inst.id: rev for inst, rev, _ in results}, "answers are the truth"
    assert await store.revision() - before <= 8, "a few transactions, not 300"


async def test_200_concurrent_registrations_through_the_api_no_5xx(client: httpx.AsyncClient) -> None:
    assert (await client.put("/services/web", json={"port": 8080})).status_code == 201
    answers = await asyncio.gather(*(client.put(f"/services/web/instances/a{n}",
                                                json={"address": f"127.1.{n // 250}.{n % 250 + 1}", "ttl": 30})
                                     for n in range(200)))
    assert [a.status_code for a in answers] == [201] * 200, {a.text for a in answers if a.status_code != 201}
    stored = (await client.get("/services/web/instances")).json()
    assert sorted(i["slot"] for i in stored) == list(range(1, 201))
    r = await client.post("/heartbeats", json={"instances": [{"service": "web", "id": f"a{n}"} for n in range(200)]})
    assert r.status_code == 200 and r.json()["renewed"] == 200


async def test_50_unconditional_puts_of_one_service_over_etcd_never_409(client: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(*(client.put("/services/web", json={"port": 8000 + n}) for n in range(50)))
    assert sorted(a.status_code for a in answers) == [200] * 49 + [201], [a.text for a in answers]
    revisions = sorted(int(a.headers["etag"].strip('"')) for a in answers)
    assert len(set(revisions)) == 50, "each write landed as a revision of its own: none was lost"
    last = next(a for a in answers if int(a.headers["etag"].strip('"')) == revisions[-1])
    final = await client.get("/services/web")
    assert final.headers["etag"] == last.headers["etag"] and final.json()["port"] == last.json()["port"]


async def test_a_source_set_past_etcds_txn_limit_is_413_naming_it(client: httpx.AsyncClient, store: Store) -> None:
    assert (await client.put("/services/web", json={"port": 8080})).status_code == 201
    before = await store.revision()
    items = [{"service": "web", "id": f"s{n}", "address": f"127.2.0.{n + 1}"} for n in range(200)]
    r = await client.put("/sources/big/instances", json={"instances": items})
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["error"] == "TooLarge" and body["field"] == "instances" and "--max-txn-ops" in body["setting"]
    assert "200 instances" in body["detail"] and "nothing was written" in body["detail"]
    assert await store.revision() == before
    # a set etcd takes in one transaction goes through whole
    r = await client.put("/sources/big/instances", json={"instances": items[:100]})
    assert r.status_code == 200, r.text
    assert len((await client.get("/services/web/instances")).json()) == 100
