"""The etcd engine's own behaviour on real clusters: compaction means Compacted (resync, never a gap),
members failing (the leader too) leave reads, writes and watches working, all of them failing is
StoreUnavailable naming what it tried."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from tests.support.procs import EtcdCluster, MakeEtcdCluster

from haplane.errors import Compacted, StoreUnavailable
from haplane.store import Put, open_store

pytestmark = pytest.mark.integration


def url(cluster: EtcdCluster) -> str:
    return f"etcd://{','.join(cluster.hostports)}/t{uuid.uuid4().hex[:10]}"


async def test_a_compacted_revision_raises_compacted(etcd_single: EtcdCluster) -> None:
    store = open_store(url(etcd_single))
    try:
        revs = [await store.txn([], [Put(f"/c/{i}", "v")]) for i in range(5)]
        httpx.post(etcd_single.endpoint + "/v3/kv/compaction", json={"revision": str(revs[3])}).raise_for_status()
        with pytest.raises(Compacted) as err:
            async for _ in store.watch("/c/", revs[0]):
                pass
        assert err.value.requested == revs[0] and err.value.compact_revision >= revs[3]
        # from the compaction point on, the history is there
        batch = await anext(aiter(store.watch("/c/", revs[4])))
        assert [e.key for e in batch] == ["/c/4"]
    finally:
        await store.close()


async def test_member_failures_leave_the_store_working(make_etcd_cluster: MakeEtcdCluster) -> None:
    cluster = make_etcd_cluster(3)
    store = open_store(url(cluster))
    try:
        first = await store.txn([], [Put("/k/a", "1")])
        events: list[str] = []

        async def follow() -> None:
            start = first + 1
            while True:
                try:
                    async for batch in store.watch("/k/", start):
                        for e in batch:
                            events.append(e.key)
                            start = e.revision + 1
                except StoreUnavailable:
                    await asyncio.sleep(0.1)

        watcher = asyncio.create_task(follow())
        # the leader dies (made the member haplane talks to first, if it is not already): writes go on
        leader = cluster.wait_leader()
        store.endpoints.insert(0, store.endpoints.pop(leader))  # type: ignore[attr-defined]
        await store.txn([], [Put("/k/b", "2")])
        cluster.kill(leader)
        await store.txn([], [Put("/k/c", "3")])  # during or right after the election
        assert [kv.key for kv in (await store.range("/k/"))[0]] == ["/k/a", "/k/b", "/k/c"]
        for _ in range(100):
            if events[-2:] == ["/k/b", "/k/c"] or set(events) >= {"/k/b", "/k/c"}:
                break
            await asyncio.sleep(0.1)
        assert set(events) >= {"/k/b", "/k/c"}, events
        watcher.cancel()

        # everything down: a clear StoreUnavailable naming what was tried
        for i in range(cluster.n):
            if i != leader:
                cluster.kill(i)
        with pytest.raises(StoreUnavailable, match="no etcd member answered"):
            await store.get("/k/a")
    finally:
        await store.close()
