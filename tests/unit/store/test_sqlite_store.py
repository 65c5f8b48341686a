"""What only the sqlite engine promises: its URL, its file settings, durability across a SIGKILL, several
processes on one file, and leases that outlive the process that granted them.

The shared semantics are in ``tests/contract``. Child processes run small scripts with this interpreter.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from haplane.errors import Compacted, ConfigurationError, Conflict, StoreUnavailable, ValidationError
from haplane.store import Compare, Delete, Put, open_store
from haplane.store.sqlite import SqliteStore, open_sqlite, sqlite_path

WAIT = 15.0  # a safety net against hangs, not a performance bound


def url_for(path: Path, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"sqlite:///{path}" + (f"?{query}" if query else "")


async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-c", script, *args,
                                                stdout=asyncio.subprocess.PIPE)


async def read_line(proc: asyncio.subprocess.Process) -> list[str]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
    assert line, f"the child exited early (rc={proc.returncode})"
    return line.decode().split()


# --- URL and file -----------------------------------------------------------------------------------------------

def test_url_forms() -> None:
    assert sqlite_path("sqlite:///state/haplane.db") == Path("state/haplane.db")
    assert sqlite_path("sqlite:////var/lib/haplane/haplane.db") == Path("/var/lib/haplane/haplane.db")
    assert sqlite_path("sqlite:////abs/x.db?history=5") == Path("/abs/x.db")
    for bad in ["sqlite://x.db", "sqlite:///", "sqlite:x.db"]:
        with pytest.raises(ConfigurationError):
            sqlite_path(bad)
    for bad_option in ["?history=0", "?history=lots", "?busy_timeout=-1", "?nope=1", "?history=1&history=2"]:
        with pytest.raises(ConfigurationError):
            open_sqlite("sqlite:////tmp/never-created.db" + bad_option)


async def test_relative_path_creates_parent_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///a/b/store.db?history=10&busy_timeout=2")
    assert isinstance(store, SqliteStore)
    assert (store.history, store.busy_timeout) == (10, 2.0)
    try:
        await store.txn([], [Put("/k", "v")])
    finally:
        await store.close()
    assert (tmp_path / "a" / "b" / "store.db").is_file()


async def test_file_is_wal_and_the_writer_syncs_fully(tmp_path: Path) -> None:
    store = open_sqlite(url_for(tmp_path / "s.db"))
    try:
        await store.txn([], [Put("/k", "v")])
        synchronous = await store._write(lambda w: w.conn.execute("PRAGMA synchronous").fetchone()[0]
                                         if w.conn else None)
    finally:
        await store.close()
    assert synchronous == 2  # FULL
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT revision FROM meta").fetchone()[0] == 1


async def test_an_unusable_path_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = open_store(url_for(tmp_path / "file" / "s.db"))
    try:
        with pytest.raises(StoreUnavailable):
            await store.txn([], [Put("/k", "v")])
        with pytest.raises(StoreUnavailable):
            await store.get("/k")
    finally:
        await store.close()


async def test_a_closed_store_is_unavailable_and_ends_its_watches(tmp_path: Path) -> None:
    store = open_store(url_for(tmp_path / "s.db"))
    watch = store.watch("/", 1)
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.05)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(pending, WAIT)
    with pytest.raises(StoreUnavailable):
        await store.get("/k")
    with pytest.raises(StoreUnavailable):
        await store.txn([], [Put("/k", "v")])


async def test_lease_ttl_must_be_positive(tmp_path: Path) -> None:
    store = open_store(url_for(tmp_path / "s.db"))
    try:
        for ttl in (0, -1.0, float("nan")):
            with pytest.raises(ValidationError):
                await store.grant_lease(ttl)
    finally:
        await store.close()


# --- the writer -------------------------------------------------------------------------------------------------

async def test_group_commit_fails_only_the_txns_whose_compares_fail(tmp_path: Path) -> None:
    store = open_store(url_for(tmp_path / "s.db"))
    try:
        base = await store.txn([], [Put("/seed", "x")])

        async def attempt(i: int) -> int | str:
            compare = Compare("/seed", base) if i % 2 == 0 else Compare("/seed", base + 1000)
            try:
                return await store.txn([compare], [Put(f"/k/{i}", str(i))])
            except Conflict:
                return "conflict"

        results = await asyncio.gather(*(attempt(i) for i in range(60)))
        revs = sorted(r for r in results if isinstance(r, int))
        assert revs == list(range(base + 1, base + 31)), "successes get consecutive revisions"
        assert results[1::2] == ["conflict"] * 30
        kvs, rev = await store.range("/k/")
        assert sorted(int(kv.key.rsplit("/", 1)[1]) for kv in kvs) == list(range(0, 60, 2))
        assert rev == base + 30
    finally:
        await store.close()


async def test_a_cancelled_caller_does_not_disturb_the_others(tmp_path: Path) -> None:
    store = open_store(url_for(tmp_path / "s.db"))
    try:
        tasks = [asyncio.ensure_future(store.txn([], [Put(f"/k/{i}", "v")])) for i in range(20)]
        tasks[3].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(d, int) for d in done) >= 19
        assert await store.txn([], [Put("/after", "v")]) > 0
    finally:
        await store.close()


async def test_history_is_trimmed_in_the_file_and_stays_compacted_after_reopen(tmp_path: Path) -> None:
    url = url_for(tmp_path / "s.db", history=5)
    store = open_store(url)
    try:
        revs = [await store.txn([], [Put(f"/h/{i}", "v"), Put(f"/h/{i}/2", "v")]) for i in range(10)]
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        count, = conn.execute("SELECT count(*) FROM events").fetchone()
        compact, event_count = conn.execute("SELECT compact_rev, event_count FROM meta").fetchone()
    assert count == event_count <= 5
    assert compact == revs[-3], "whole txns are dropped: two events each, at most five kept"
    store = open_store(url)
    try:
        with pytest.raises(Compacted):
            await anext(store.watch("/h/", revs[-3]))
        batch = await asyncio.wait_for(anext(store.watch("/h/", revs[-2])), WAIT)
        assert [e.key for e in batch] == ["/h/8", "/h/8/2", "/h/9", "/h/9/2"]
    finally:
        await store.close()


async def test_reopen_keeps_values_revisions_and_history(tmp_path: Path) -> None:
    url = url_for(tmp_path / "s.db")
    store = open_store(url)
    try:
        r1 = await store.txn([], [Put("/a", "1"), Put("/b", "2")])
        r2 = await store.txn([], [Delete("/b")])
    finally:
        await store.close()
    store = open_store(url)
    try:
        assert await store.revision() == r2
        kvs, rev = await store.range("/")
        assert rev == r2
        assert [(kv.key, kv.value, kv.create_revision) for kv in kvs] == [("/a", "1", r1)]
        batch = await asyncio.wait_for(anext(store.watch("/", r1)), WAIT)
        assert [(e.type, e.key, e.revision) for e in batch] == [
            ("put", "/a", r1), ("put", "/b", r1), ("delete", "/b", r2)]
        assert await store.txn([], [Put("/c", "3")]) == r2 + 1
    finally:
        await store.close()


# --- durability and several processes ---------------------------------------------------------------------------

WRITER = """
import asyncio, sys
from haplane.store import Put, open_store

async def main():
    store = open_store(sys.argv[1])
    async def writer(n):
        i = 0
        while True:
            rev = await store.txn([], [Put(f"/d/{n}/{i}", str(i))])
            print(n, i, rev, flush=True)
            i += 1
    await asyncio.gather(*(writer(n) for n in range(8)))

asyncio.run(main())
"""


async def test_every_acknowledged_txn_survives_sigkill(tmp_path: Path) -> None:
    url = url_for(tmp_path / "s.db")
    proc = await spawn(WRITER, url)
    acked: list[list[str]] = []
    try:
        while len(acked) < 400:
            acked.append(await read_line(proc))
    finally:
        proc.kill()  # SIGKILL: no cleanup, no final commit
        assert proc.stdout is not None
        rest = await asyncio.wait_for(proc.stdout.read(), WAIT)
        await proc.wait()
    # an ack is a whole line: the kill may cut the child's last one short (it was never acknowledged)
    acked += [line.split() for line in rest.decode().split("\n")[:-1] if line.strip()]
    assert proc.returncode == -9
    store = open_store(url)
    try:
        for n, i, rev in acked:
            kv = await store.get(f"/d/{n}/{i}")
            assert kv is not None, f"acknowledged write /d/{n}/{i} at revision {rev} was lost"
            assert (kv.value, kv.mod_revision) == (i, int(rev))
        revs = [int(rev) for _, _, rev in acked]
        assert len(set(revs)) == len(revs)
        assert await store.revision() >= max(revs)
    finally:
        await store.close()


ONE_WRITE = """
import asyncio, os, sys
from haplane.store import Put, open_store

async def main():
    store = open_store(sys.argv[1])
    print(await store.txn([], [Put("/x/from-child", str(os.getpid()))]), flush=True)
    await store.close()

asyncio.run(main())
"""


async def test_a_watcher_sees_another_process_write(tmp_path: Path) -> None:
    url = url_for(tmp_path / "s.db")
    store = open_store(url)
    try:
        start = await store.txn([], [Put("/x/parent", "1")]) + 1
        watch = store.watch("/x/", start)
        pending = asyncio.ensure_future(asyncio.wait_for(anext(watch), WAIT))
        proc = await spawn(ONE_WRITE, url)
        rev = int((await read_line(proc))[0])
        assert await proc.wait() == 0
        batch = await pending
        assert [(e.type, e.key, e.value, e.revision) for e in batch] == [
            ("put", "/x/from-child", str(proc.pid), rev)]
        assert rev == start
    finally:
        await store.close()


INCREMENTER = """
import asyncio, sys
from haplane.errors import Conflict
from haplane.store import Compare, Put, open_store

async def main():
    store = open_store(sys.argv[1])
    async def increment():
        while True:
            kv = await store.get("/counter")
            try:
                await store.txn([Compare("/counter", kv.mod_revision)], [Put("/counter", str(int(kv.value) + 1))])
                return
            except Conflict:
                pass
    await asyncio.gather(*(increment() for _ in range(int(sys.argv[2]))))
    await store.close()

asyncio.run(main())
"""


async def test_processes_writing_one_file_share_one_revision_sequence(tmp_path: Path) -> None:
    url = url_for(tmp_path / "s.db")
    store = open_store(url)
    try:
        start = await store.txn([], [Put("/counter", "0")])
        children = [await spawn(INCREMENTER, url, "40") for _ in range(2)]

        async def increment() -> None:
            while True:
                kv = await store.get("/counter")
                assert kv is not None
                try:
                    await store.txn([Compare("/counter", kv.mod_revision)], [Put("/counter", str(int(kv.value) + 1))])
                    return
                except Conflict:
                    pass

        await asyncio.gather(*(increment() for _ in range(40)))
        for child in children:
            assert await asyncio.wait_for(child.wait(), WAIT) == 0
        kv = await store.get("/counter")
        assert kv is not None and kv.value == "120"
        assert await store.revision() == start + 120, "one revision per successful txn, across processes"
        batch = await asyncio.wait_for(anext(store.watch("/counter", start + 1)), WAIT)
        assert [e.revision for e in batch] == list(range(start + 1, start + 121))
    finally:
        await store.close()


LEASE_HOLDER = """
import asyncio, sys
from haplane.store import Put, open_store

async def main():
    store = open_store(sys.argv[1])
    lease = await store.grant_lease(float(sys.argv[2]))
    rev = await store.txn([], [Put("/l/ttl", "x", lease), Put("/l/plain", "y")])
    print(lease, rev, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_crashed_writers_lease_still_expires_after_reopen(tmp_path: Path) -> None:
    url = url_for(tmp_path / "s.db")
    proc = await spawn(LEASE_HOLDER, url, "0.5")
    try:
        _lease, rev = (int(x) for x in await read_line(proc))
    finally:
        proc.kill()
        await proc.wait()
    store = open_store(url)
    try:
        batch = await asyncio.wait_for(anext(store.watch("/l/", int(rev) + 1)), WAIT)
        assert [(e.type, e.key) for e in batch] == [("delete", "/l/ttl")]
        assert [kv.key for kv in (await store.range("/l/"))[0]] == ["/l/plain"]
    finally:
        await store.close()


async def test_a_lease_outlives_a_restart_and_can_be_kept_alive(tmp_path: Path) -> None:
    url = url_for(tmp_path / "s.db")
    store = open_store(url)
    try:
        lease = await store.grant_lease(30)
        await store.txn([], [Put("/l/a", "1", lease)])
    finally:
        await store.close()
    store = open_store(url)
    try:
        await store.keepalive(lease)
        kv = await store.get("/l/a")
        assert kv is not None and kv.lease == lease
        other = await store.grant_lease(30)
        assert other != lease, "lease ids are never reused"
        await store.revoke_lease(lease)
        assert await store.get("/l/a") is None
    finally:
        await store.close()
