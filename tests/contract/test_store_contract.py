"""The Store contract (``haplane.store.base``), as every engine must honour it.

Each test runs once per engine in ``conftest.ENGINES``. Tests assert behaviour, never speed: waits have
generous timeouts that only stop a broken engine from hanging the suite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from haplane.errors import Compacted, Conflict, NotFound
from haplane.store import KV, Compare, Delete, Event, Put, Store

MakeStore = Callable[..., Store]  # the ``make_store`` fixture: options → a fresh store
WAIT = 10.0  # seconds: a safety net against hangs, not a performance bound


async def next_batch(watch: AsyncIterator[list[Event]], timeout: float = WAIT) -> list[Event]:
    return await asyncio.wait_for(anext(watch), timeout)


async def collect(watch: AsyncIterator[list[Event]], done: Callable[[list[Event]], bool],
                  timeout: float = WAIT) -> list[Event]:
    """Events from ``watch`` until ``done(all events so far)`` holds."""
    events: list[Event] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while not done(events):
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for events; got {events}")
        batch = await next_batch(watch, remaining)
        assert batch, "a watch never yields an empty batch"
        events.extend(batch)
    return events


def put(key: str, value: str = "v", lease: int = 0) -> Put:
    return Put(key, value, lease)


# --- get / range / txn ------------------------------------------------------------------------------------------

async def test_get_missing_key_is_none(store: Store) -> None:
    assert await store.get("/nope") is None


async def test_put_sets_create_and_mod_revision(store: Store) -> None:
    r1 = await store.txn([], [put("/a", "one")])
    assert await store.get("/a") == KV("/a", "one", r1, r1, 0)
    r2 = await store.txn([], [put("/a", "two")])
    assert r2 == r1 + 1
    assert await store.get("/a") == KV("/a", "two", r1, r2, 0)
    await store.txn([], [Delete("/a")])
    r4 = await store.txn([], [put("/a", "three")])
    assert await store.get("/a") == KV("/a", "three", r4, r4, 0), "a re-created key starts a new life"


async def test_range_is_key_ordered_prefix_match_at_a_revision(store: Store) -> None:
    for key in ["/s/b", "/s/a/2", "/s/c", "/s/a/1", "/s", "/t/x", "/s0", "/r"]:
        await store.txn([], [put(key, key.upper())])
    kvs, rev = await store.range("/s/")
    assert [kv.key for kv in kvs] == ["/s/a/1", "/s/a/2", "/s/b", "/s/c"]
    assert [kv.value for kv in kvs] == ["/S/A/1", "/S/A/2", "/S/B", "/S/C"]
    assert rev == await store.revision()
    assert all(kv.mod_revision <= rev for kv in kvs)
    everything, _ = await store.range("")
    assert [kv.key for kv in everything] == sorted(["/s/b", "/s/a/2", "/s/c", "/s/a/1", "/s", "/t/x", "/s0", "/r"])
    assert (await store.range("/nothing/"))[0] == []


async def test_range_orders_by_code_point(store: Store) -> None:
    keys = ["/k/é", "/k/z", "/k/Z", "/k/\u4e2d", "/k/\U0001f600", "/k/a b", "/k/a-b", "/k/a.b"]
    await store.txn([], [put(k) for k in keys])
    kvs, _ = await store.range("/k/")
    assert [kv.key for kv in kvs] == sorted(keys)


async def test_range_with_prefixes_at_the_edges_of_unicode(store: Store) -> None:
    keys = ["/e/\ud7ff", "/e/\ud7ffx", "/e/\ue000", "/e/\U0010ffff", "/e/\U0010ffffx", "/e/\U0010ffff\U0010ffff"]
    await store.txn([], [put(k) for k in keys])
    assert [kv.key for kv in (await store.range("/e/\ud7ff"))[0]] == ["/e/\ud7ff", "/e/\ud7ffx"]
    assert [kv.key for kv in (await store.range("/e/\U0010ffff"))[0]] == [
        "/e/\U0010ffff", "/e/\U0010ffffx", "/e/\U0010ffff\U0010ffff"]
    rev = await store.txn([], [Delete("/e/\U0010ffff", prefix=True)])
    assert [kv.key for kv in (await store.range("/e/"))[0]] == ["/e/\ud7ff", "/e/\ud7ffx", "/e/\ue000"]
    assert rev == await store.revision()


async def test_txn_applies_all_ops_at_one_revision(store: Store) -> None:
    await store.txn([], [put("/a"), put("/b")])
    before = await store.revision()
    watch = store.watch("/", before + 1)
    rev = await store.txn([], [put("/c", "1"), put("/a", "2"), Delete("/b")])
    assert rev == before + 1
    assert await store.revision() == rev
    events = await collect(watch, lambda evs: len(evs) >= 3)
    assert [(e.type, e.key, e.value, e.revision) for e in events] == [
        ("put", "/c", "1", rev), ("put", "/a", "2", rev), ("delete", "/b", None, rev)]
    assert events[0].create_revision == rev
    assert events[2].create_revision == 0


async def test_failed_compare_raises_conflict_and_writes_nothing(store: Store) -> None:
    r1 = await store.txn([], [put("/x", "1")])
    watch = store.watch("/", r1 + 1)
    with pytest.raises(Conflict) as err:
        await store.txn([Compare("/x", r1 + 5)], [put("/x", "2"), put("/y"), Delete("/x")])
    assert (err.value.key, err.value.expected, err.value.actual) == ("/x", r1 + 5, r1)
    assert await store.revision() == r1
    assert await store.get("/x") == KV("/x", "1", r1, r1, 0)
    assert await store.get("/y") is None
    marker = await store.txn([], [put("/marker")])
    events = await collect(watch, lambda evs: bool(evs))
    assert [(e.key, e.revision) for e in events] == [("/marker", marker)], "the failed txn left no event"


async def test_compare_zero_means_the_key_must_not_exist(store: Store) -> None:
    r1 = await store.txn([Compare("/new", 0)], [put("/new", "1")])
    with pytest.raises(Conflict) as err:
        await store.txn([Compare("/new", 0)], [put("/new", "2")])
    assert (err.value.key, err.value.expected, err.value.actual) == ("/new", 0, r1)
    with pytest.raises(Conflict) as err:
        await store.txn([Compare("/absent", r1)], [put("/absent")])
    assert (err.value.key, err.value.expected, err.value.actual) == ("/absent", r1, 0)
    r2 = await store.txn([Compare("/new", r1)], [put("/new", "3")])
    assert r2 == r1 + 1
    assert (await store.get("/new")) == KV("/new", "3", r1, r2, 0)


async def test_conflict_names_the_first_failing_compare(store: Store) -> None:
    r1 = await store.txn([], [put("/a"), put("/b")])
    with pytest.raises(Conflict) as err:
        await store.txn([Compare("/a", r1), Compare("/b", 0), Compare("/c", 99)], [put("/z")])
    assert err.value.key == "/b"


async def test_txn_without_ops_writes_nothing_and_returns_current_revision(store: Store) -> None:
    r1 = await store.txn([], [put("/a")])
    assert await store.txn([Compare("/a", r1), Compare("/b", 0)], []) == r1
    assert await store.txn([], []) == r1
    assert await store.revision() == r1
    with pytest.raises(Conflict):
        await store.txn([Compare("/a", 0)], [])


async def test_revisions_increase_by_exactly_one_per_txn(store: Store) -> None:
    start = await store.revision()
    revs = [await store.txn([], [put(f"/k{i}")]) for i in range(10)]
    assert revs == list(range(start + 1, start + 11))
    assert await store.revision() == start + 10


async def test_prefix_delete_removes_exactly_the_prefix_in_one_revision(store: Store) -> None:
    await store.txn([], [put(k) for k in ["/p/b", "/p/a", "/p/c/d", "/p", "/pq", "/o"]])
    before = await store.revision()
    watch = store.watch("/", before + 1)
    rev = await store.txn([], [Delete("/p/", prefix=True)])
    assert rev == before + 1
    assert [kv.key for kv in (await store.range(""))[0]] == ["/o", "/p", "/pq"]
    events = await collect(watch, lambda evs: len(evs) >= 3)
    assert [(e.type, e.key, e.revision) for e in events] == [
        ("delete", "/p/a", rev), ("delete", "/p/b", rev), ("delete", "/p/c/d", rev)]


async def test_delete_then_put_in_one_txn_replaces_a_subtree(store: Store) -> None:
    await store.txn([], [put("/t/a", "old"), put("/t/b", "old")])
    rev = await store.txn([], [Delete("/t/", prefix=True), put("/t/b", "new"), put("/t/c", "new")])
    kvs, _ = await store.range("/t/")
    assert [(kv.key, kv.value, kv.mod_revision) for kv in kvs] == [("/t/b", "new", rev), ("/t/c", "new", rev)]
    if not store.url.startswith("etcd://"):
        # etcd cannot delete and put one key in one txn: the put alone keeps the key's create_revision there
        assert [kv.create_revision for kv in kvs] == [rev, rev], "a key deleted and put again starts a new life"


async def test_deleting_a_missing_key_is_a_no_op_without_events(store: Store) -> None:
    before = await store.txn([], [put("/a")])
    watch = store.watch("/", before + 1)
    rev = await store.txn([], [Delete("/missing"), Delete("/missing/", prefix=True)])
    # SQLite and memory bump the revision for a txn with ops even when it changes nothing; etcd does not
    assert rev in (before, before + 1)
    assert await store.get("/missing") is None
    marker = await store.txn([], [put("/marker")])
    events = await collect(watch, lambda evs: bool(evs))
    assert [(e.key, e.revision) for e in events] == [("/marker", marker)]


# --- watch ------------------------------------------------------------------------------------------------------

async def test_watch_from_a_past_revision_replays_then_follows(store: Store) -> None:
    r1 = await store.txn([], [put("/w/a", "1")])
    r2 = await store.txn([], [put("/w/b", "2")])
    r3 = await store.txn([], [Delete("/w/a")])
    watch = store.watch("/w/", r2)
    events = await collect(watch, lambda evs: len(evs) >= 2)
    assert [(e.type, e.key, e.revision) for e in events] == [("put", "/w/b", r2), ("delete", "/w/a", r3)]
    assert r1 < r2
    r4 = await store.txn([], [put("/w/c", "4")])
    events = await collect(watch, lambda evs: bool(evs))
    assert [(e.type, e.key, e.value, e.revision, e.create_revision) for e in events] == [
        ("put", "/w/c", "4", r4, r4)]


async def test_watch_sees_later_writes_only_under_its_prefix(store: Store) -> None:
    start = await store.revision() + 1
    watch = store.watch("/mine/", start)
    pending = asyncio.ensure_future(next_batch(watch))
    await asyncio.sleep(0.05)
    assert not pending.done()
    await store.txn([], [put("/other/x")])
    await store.txn([], [put("/mine0")])
    rev = await store.txn([], [put("/mine/x", "hello")])
    batch = await pending
    assert [(e.key, e.value, e.revision) for e in batch] == [("/mine/x", "hello", rev)]


async def test_watch_from_the_future_waits_for_that_revision(store: Store) -> None:
    now = await store.revision()
    watch = store.watch("/", now + 3)
    await store.txn([], [put("/1")])
    await store.txn([], [put("/2")])
    r3 = await store.txn([], [put("/3")])
    events = await collect(watch, lambda evs: bool(evs))
    assert [(e.key, e.revision) for e in events] == [("/3", r3)]


async def test_watch_delivers_every_txn_once_in_order_under_concurrent_writers(store: Store) -> None:
    start = await store.revision() + 1
    watch = store.watch("/c/", start)
    first = asyncio.ensure_future(next_batch(watch))

    writers, txns = 6, 10  # 60 transactions of two keys from 6 writers at once (more only cost time on moto)
    want = writers * txns * 2

    async def writer(n: int) -> list[int]:
        return [await store.txn([], [put(f"/c/{n}/{i}"), put(f"/c/{n}/{i}/twin")]) for i in range(txns)]

    revs = sorted(r for rs in await asyncio.gather(*(writer(n) for n in range(writers))) for r in rs)
    events = await first
    events += await collect(watch, lambda evs: len(evs) >= want - len(events))
    assert len(events) == want
    assert [e.revision for e in events] == sorted(e.revision for e in events), "in revision order"
    assert len({(e.key, e.revision) for e in events}) == want, "no duplicates"
    assert sorted({e.revision for e in events}) == revs, "every txn, none missing"
    by_rev: dict[int, list[str]] = {}
    for e in events:
        by_rev.setdefault(e.revision, []).append(e.key)
    assert all(len(keys) == 2 and keys[1] == keys[0] + "/twin" for keys in by_rev.values())


async def test_watch_start_older_than_history_raises_compacted(make_store: MakeStore) -> None:
    store = make_store(history=5)
    revs = [await store.txn([], [put(f"/h/{i}")]) for i in range(20)]
    with pytest.raises(Compacted) as err:
        await next_batch(store.watch("/h/", revs[0]))
    assert err.value.requested == revs[0]
    assert revs[0] < err.value.compact_revision <= revs[-5]
    events = await collect(store.watch("/h/", revs[-5]), lambda evs: len(evs) >= 5)
    assert [e.key for e in events] == [f"/h/{i}" for i in range(15, 20)], "the last `history` events are kept"


async def test_a_watcher_that_falls_behind_the_history_gets_compacted(make_store: MakeStore) -> None:
    store = make_store(history=5)
    r1 = await store.txn([], [put("/h/first")])
    watch = store.watch("/h/", r1)
    assert [e.key for e in await next_batch(watch)] == ["/h/first"]
    for i in range(20):
        await store.txn([], [put(f"/h/{i}")])
    with pytest.raises(Compacted):
        await collect(watch, lambda evs: False)


# --- leases -----------------------------------------------------------------------------------------------------

async def test_lease_expiry_deletes_its_keys_with_delete_events(store: Store) -> None:
    lease = await store.grant_lease(0.3)
    assert lease > 0
    granted_at = time.monotonic()
    r1 = await store.txn([], [put("/l/a", "1", lease), put("/l/b", "2", lease), put("/l/keep", "3")])
    assert (await store.get("/l/a")) == KV("/l/a", "1", r1, r1, lease)
    events = await collect(store.watch("/l/", r1 + 1), lambda evs: len(evs) >= 2)
    assert time.monotonic() - granted_at >= 0.25, "not before the deadline"
    assert [(e.type, e.key) for e in events] == [("delete", "/l/a"), ("delete", "/l/b")]
    assert events[0].revision == events[1].revision, "one txn per expiry sweep"
    assert [kv.key for kv in (await store.range("/l/"))[0]] == ["/l/keep"]
    with pytest.raises(NotFound) as err:
        await store.keepalive(lease)
    assert (err.value.kind, err.value.name) == ("lease", str(lease))
    with pytest.raises(NotFound):
        await store.txn([], [put("/l/late", "x", lease)])


async def test_keepalive_extends_a_lease(store: Store) -> None:
    lease = await store.grant_lease(1.0)
    r1 = await store.txn([], [put("/l/a", "1", lease)])
    until = time.monotonic() + 1.6
    while time.monotonic() < until:
        await asyncio.sleep(0.2)
        await store.keepalive(lease)
    assert await store.get("/l/a") is not None, "kept alive past its first deadline"
    events = await collect(store.watch("/l/", r1 + 1), lambda evs: bool(evs))
    assert [(e.type, e.key) for e in events] == [("delete", "/l/a")]


async def test_keepalive_many_renews_every_live_lease_and_names_the_gone_ones(store: Store) -> None:
    leases = [await store.grant_lease(2.0) for _ in range(3)]
    r1 = await store.txn([], [put(f"/l/{i}", "1", lease) for i, lease in enumerate(leases)])
    revoked = await store.grant_lease(60)
    await store.revoke_lease(revoked)
    assert await store.keepalive_many([]) == set()
    until = time.monotonic() + 3.0  # past the TTL; renewed every 0.25 s (a margin for a loaded machine)
    while time.monotonic() < until:
        await asyncio.sleep(0.25)
        assert await store.keepalive_many([*leases[:2], revoked, 987654321]) == {revoked, 987654321}
    assert [kv.key for kv in (await store.range("/l/"))[0]] == ["/l/0", "/l/1"], "only the renewed ones live"
    assert await store.revision() == r1 + 1, "renewals write no revision: only the expiry of /l/2 did"
    assert await store.keepalive_many([leases[2]]) == {leases[2]}


async def test_get_many_reads_keys_in_order_at_one_revision(store: Store) -> None:
    assert await store.get_many([]) == []
    keys = [f"/m/{i:03d}" for i in range(250)]  # past any engine's per-request chunk
    rev = 0
    for i in range(0, 250, 10):  # small txns: DynamoDB and etcd cap the operations of one
        rev = await store.txn([], [put(k, k) for k in keys[i:i + 10]])
    wanted = [keys[249], "/m/missing", keys[0], keys[120], keys[0]]
    got = await store.get_many(wanted)
    assert [kv.value if kv else None for kv in got] == [keys[249], None, keys[0], keys[120], keys[0]]
    assert got[0] == await store.get(keys[249]) and got[0] is not None and got[0].mod_revision == rev
    everything = await store.get_many(keys)
    assert [kv.key for kv in everything if kv] == keys


async def test_revoke_deletes_the_keys_now(store: Store) -> None:
    lease = await store.grant_lease(60)
    other = await store.grant_lease(60)
    r1 = await store.txn([], [put("/l/a", "1", lease), put("/l/b", "2", other)])
    await store.revoke_lease(lease)
    assert await store.get("/l/a") is None
    assert await store.get("/l/b") is not None
    events = await next_batch(store.watch("/l/", r1 + 1))
    assert [(e.type, e.key) for e in events] == [("delete", "/l/a")]
    assert await store.revision() == r1 + 1
    with pytest.raises(NotFound):
        await store.keepalive(lease)
    await store.revoke_lease(lease)  # revoking again, or an unknown lease, is not an error
    await store.revoke_lease(987654321)
    await store.keepalive(other)


async def test_put_with_an_unknown_lease_raises_not_found_and_writes_nothing(store: Store) -> None:
    before = await store.revision()
    with pytest.raises(NotFound) as err:
        await store.txn([], [put("/ok"), put("/bad", "x", 987654321)])
    assert (err.value.kind, err.value.name) == ("lease", "987654321")
    assert await store.get("/ok") is None
    assert await store.revision() == before
    with pytest.raises(NotFound):
        await store.keepalive(987654321)


async def test_a_key_put_again_without_the_lease_outlives_it(store: Store) -> None:
    lease = await store.grant_lease(60)
    await store.txn([], [put("/l/a", "1", lease), put("/l/b", "1", lease)])
    await store.txn([], [put("/l/a", "2")])
    await store.revoke_lease(lease)
    kvs, _ = await store.range("/l/")
    assert [(kv.key, kv.value, kv.lease) for kv in kvs] == [("/l/a", "2", 0)]


async def test_a_deleted_key_is_not_deleted_again_when_its_lease_ends(store: Store) -> None:
    lease = await store.grant_lease(60)
    await store.txn([], [put("/l/a", "1", lease)])
    r2 = await store.txn([], [Delete("/l/a")])
    await store.revoke_lease(lease)
    assert await store.revision() == r2, "no keys left on the lease: no txn"


# --- concurrency ------------------------------------------------------------------------------------------------

async def test_concurrent_compare_and_swap_loses_no_update(store: Store) -> None:
    await store.txn([], [put("/counter", "0")])
    conflicts = 0

    async def increment() -> None:
        nonlocal conflicts
        while True:
            kv = await store.get("/counter")
            assert kv is not None
            try:
                await store.txn([Compare("/counter", kv.mod_revision)], [put("/counter", str(int(kv.value) + 1))])
                return
            except Conflict:
                conflicts += 1

    # 16 at once: every round of reads but one loses, so the work grows with the square of the count
    await asyncio.gather(*(increment() for _ in range(16)))
    kv = await store.get("/counter")
    assert kv is not None and kv.value == "16"
    # they did race (memory:// does not yield between a read and a write: nothing interleaves there)
    assert conflicts > 0 or store.url.startswith("memory:"), "the writers never raced: the test proves nothing"
