"""Store throughput and watch latency, each printed next to its floor.

    python bench/bench_store.py            # ~30 s: 3 s per throughput case, 500 latency samples
    python bench/bench_store.py --quick    # a smoke run of a second or two
    python bench/bench_store.py --dir /var/lib/haplane   # measure on the disk the store will live on

Figures:
- floor: raw ``sqlite3`` on the same directory, WAL, ``synchronous=FULL``, one connection: commits/s with one
  row per commit (what any one-at-a-time writer is bounded by: one fsync each), and rows/s with 100 rows
  per commit (what batching can reach).
- ``txn(Put)`` throughput of the sqlite store (and of the memory store, for the cost of the Python around
  it) with 1, 10 and 100 concurrent writers. With one writer every txn waits for its own fsync, so the
  floor is the one-row rate; with many, group commit shares fsyncs, so the floor is the batched rate.
- put-to-watch latency (p50/p99): from calling ``txn`` to a watcher in the same process receiving the
  event, one put at a time; and from a put in another process to a watcher here (the path ``haplane serve``
  → ``haplane agent`` takes when they are two processes: bounded below by the 50 ms data_version poll).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from haplane.store import Put, Store, open_store


def floor_commits(path: Path, seconds: float, rows_per_commit: int) -> tuple[float, float]:
    """(commits/s, rows/s) of raw sqlite3: WAL, synchronous=FULL, one connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    commits = rows = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO t VALUES (?, ?)",
                         [(f"/k/{(rows + i) % 10000}", "x" * 100) for i in range(rows_per_commit)])
        conn.execute("COMMIT")
        commits += 1
        rows += rows_per_commit
    elapsed = time.perf_counter() - start
    conn.close()
    return commits / elapsed, rows / elapsed


async def throughput(store: Store, writers: int, seconds: float) -> float:
    """txn/s of single-Put txns from ``writers`` concurrent tasks."""
    value = "x" * 100
    await store.txn([], [Put("/warm", value)])
    start = time.perf_counter()
    end = start + seconds

    async def writer(n: int) -> int:
        i = 0
        while time.perf_counter() < end:
            await store.txn([], [Put(f"/bench/{n}/{i % 1000}", value)])
            i += 1
            if i % 64 == 0:
                await asyncio.sleep(0)  # the memory engine never suspends: let the other writers in
        return i

    done = sum(await asyncio.gather(*(writer(n) for n in range(writers))))
    return done / (time.perf_counter() - start)


async def watch_latency(store: Store, samples: int) -> list[float]:
    """Seconds from calling txn to the watcher receiving the event, one put at a time."""
    received: dict[str, float] = {}
    arrived = asyncio.Event()
    start = await store.revision() + 1

    async def watcher() -> None:
        async for batch in store.watch("/lat/", start):
            now = time.perf_counter()
            for ev in batch:
                received[ev.key] = now
            arrived.set()

    task = asyncio.create_task(watcher())
    out = []
    for i in range(samples):
        key = f"/lat/{i}"
        arrived.clear()
        t0 = time.perf_counter()
        await store.txn([], [Put(key, "x")])
        while key not in received:
            await arrived.wait()
            arrived.clear()
        out.append(received[key] - t0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return out


REMOTE_WRITER = """
import asyncio, random, sys, time
from haplane.store import Put, open_store

async def main():
    store = open_store(sys.argv[1])
    for i in range(int(sys.argv[2])):
        await asyncio.sleep(random.uniform(0.005, 0.02))  # sample every phase of the reader's poll
        await store.txn([], [Put(f"/remote/{i}", repr(time.time()))])
    await store.close()

asyncio.run(main())
"""


async def cross_process_latency(url: str, samples: int) -> list[float]:
    """Seconds from a put in another process (before its txn call) to a watcher here receiving it."""
    store = open_store(url)
    out: list[float] = []
    start = await store.revision() + 1
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", REMOTE_WRITER, url, str(samples))
    try:
        async for batch in store.watch("/remote/", start):
            now = time.time()
            out.extend(now - float(ev.value or "nan") for ev in batch)
            if len(out) >= samples:
                break
    finally:
        await proc.wait()
        await store.close()
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a second or two")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database files (the disk to "
                        "measure); default: the system temp directory")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput case (default 3)")
    args = parser.parse_args()
    seconds = 0.15 if args.quick else args.seconds
    samples = 30 if args.quick else 500
    remote_samples = 10 if args.quick else 200

    root = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    counter = iter(range(1_000_000))

    def fresh_url() -> str:
        return f"sqlite:///{(root / f'store-{next(counter)}.db').resolve()}"

    try:
        print(f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, "
              f"files in {root}")
        one_commits, _ = floor_commits(root / "floor1.db", seconds, 1)
        batch_commits, batch_rows = floor_commits(root / "floor100.db", seconds, 100)
        print(f"floor   raw sqlite3 WAL synchronous=FULL, 1 row/commit      {one_commits:>10,.0f} commits/s")
        print(f"floor   raw sqlite3 WAL synchronous=FULL, 100 rows/commit   {batch_rows:>10,.0f} rows/s "
              f"({batch_commits:,.0f} commits/s)")

        cases: list[tuple[str, Callable[[], str], dict[int, str]]] = [
            ("sqlite", fresh_url, {1: f"floor {one_commits:,.0f}/s", 10: f"floor {batch_rows:,.0f}/s",
                                   100: f"floor {batch_rows:,.0f}/s"}),
            ("memory", lambda: "memory://", {}),
        ]
        for name, url_of, floors in cases:
            for writers in (1, 10, 100):
                store = open_store(url_of())
                try:
                    rate = await throughput(store, writers, seconds)
                finally:
                    await store.close()
                note = floors.get(writers, "")
                print(f"{name:<7} txn(Put), {writers:>3} concurrent writer(s)           {rate:>10,.0f} txn/s"
                      + (f"   ({note})" if note else ""))

        for name, url in (("sqlite", fresh_url()), ("memory", "memory://")):
            store = open_store(url)
            try:
                lat = await watch_latency(store, samples)
            finally:
                await store.close()
            floor = f"   (floor: one commit {ms(1 / one_commits)})" if name == "sqlite" else ""
            print(f"{name:<7} put-to-watch latency, same process        p50 {ms(statistics.median(lat))}, "
                  f"p99 {ms(pct(lat, 0.99))}  [n={len(lat)}]{floor}")

        lat = await cross_process_latency(fresh_url(), remote_samples)
        print(f"sqlite  put-to-watch latency, other process       p50 {ms(statistics.median(lat))}, "
              f"p99 {ms(pct(lat, 0.99))}  [n={len(lat)}]   (floor: commit {ms(1 / one_commits)} "
              f"+ half the 50 ms poll)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
