"""``sqlite:///PATH`` — the durable single-node Store: one SQLite file in WAL mode.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (the path is everything after the
third slash, as in SQLAlchemy); parent directories are created. Options: ``?history=N`` events kept for
watches (default 100,000), ``?busy_timeout=SECONDS`` how long to wait for another process's lock
(default 5).

How it is built, and why:

- **One writer thread** owns the only write connection and takes work from a queue. It does *group
  commit*: it drains everything queued, applies each request inside its own SAVEPOINT (so one failed
  compare rolls back only its own txn), commits once with ``synchronous=FULL`` and only then resolves the
  callers' futures. One fsync thus acknowledges a whole batch, which is what lets many concurrent writers go
  far beyond the disk's fsyncs per second, and a returned ``txn`` is durable: it survives a SIGKILL (and, with
  FULL, a power cut).
- **Reads** run on a few reader threads, each with its own connection; a multi-statement read is one SQLite
  read transaction, so ``range`` and a watch step see one consistent snapshot (WAL readers never block the
  writer, nor it them).
- **Watches** read the ``events`` table from their cursor. They are woken at once by this process's commits,
  and by a poller that checks ``PRAGMA data_version`` every 50 ms, which changes when *another* process (say
  ``haplane serve`` beside ``haplane agent``) commits to the same file.
- **Leases** live in the file with wall-clock expiry times, so the TTL'd keys of a writer that crashed still
  expire after a restart, swept by whichever process is running. The writer thread sweeps: every expired
  lease's keys are deleted in one txn with delete events.
- **History**: ``events`` keeps the last ``history`` events, dropped whole txns at a time; ``meta.compact_rev``
  records the newest dropped revision and a watch from it or below raises ``Compacted``.

The event loop never blocks on SQLite: it only enqueues work and awaits futures. Every ``sqlite3`` error
becomes ``StoreUnavailable``. Several processes may open the same file; the writers serialise on SQLite's
write lock (``BEGIN IMMEDIATE`` with a busy timeout) and each re-reads the revision when it takes the lock.

Schema (``PRAGMA user_version = 1``)::

    kv(key TEXT PK, value TEXT, create_rev INT, mod_rev INT, lease INT)       -- the current state
    events(rev INT, seq INT, type TEXT, key TEXT, value TEXT, create_rev INT)  -- PK (rev, seq), history
    leases(id INTEGER PK AUTOINCREMENT, ttl REAL, expires_at REAL)            -- expires_at: Unix time
    meta(id = 1, revision INT, compact_rev INT, event_count INT)              -- one row
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future as ThreadFuture
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from haplane.errors import ConfigurationError, Conflict, NotFound, StoreUnavailable, ValidationError
from haplane.store._events import (
    DEFAULT_HISTORY,
    check_not_compacted,
    check_options,
    check_txn,
    float_option,
    int_option,
    prefix_bounds,
    split_url,
)
from haplane.store.base import KV, Compare, Event, Op, Put

__all__ = ["SqliteStore", "open_sqlite", "sqlite_path"]

T = TypeVar("T")

SCHEMA_VERSION = 1
POLL_INTERVAL = 0.05  # seconds between PRAGMA data_version checks while someone watches
LEASE_CHECK_INTERVAL = 0.25  # the writer re-reads the earliest lease expiry at least this often
MAX_BATCH = 1000  # requests per group commit; bounds the latency one commit adds to the first of them
READERS = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS events (
    rev INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    create_rev INTEGER NOT NULL,
    PRIMARY KEY (rev, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases(expires_at);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compact_rev INTEGER NOT NULL,
    event_count INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compact_rev, event_count) VALUES (1, 0, 0, 0);
"""


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///PATH`` URL names (relative paths are relative to the working directory)."""
    rest, _ = split_url(url, "sqlite")
    if not rest.startswith("/") or len(rest) < 2:
        raise ConfigurationError(f"store URL {url!r}: expected sqlite:///relative/path.db or "
                                 "sqlite:////absolute/path.db")
    return Path(rest[1:])


def open_sqlite(url: str) -> SqliteStore:
    """The ``ENGINES`` factory. Validates the URL now; the file is opened by the writer thread, so this does
    not wait on the disk or on another process's lock."""
    _, options = split_url(url, "sqlite")
    check_options(url, options, ["history", "busy_timeout"])
    return SqliteStore(sqlite_path(url), url=url,
                       history=int_option(url, options, "history", DEFAULT_HISTORY, 1),
                       busy_timeout=float_option(url, options, "busy_timeout", 5.0, 0.0))


def _where_prefix(prefix: str) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause (on column ``key``) matching keys that start with ``prefix``, using the index."""
    lo, hi = prefix_bounds(prefix)
    if hi is not None:
        return "key >= ? AND key < ?", (lo, hi)
    if lo:
        return "key >= ? AND substr(key, 1, ?) = ?", (lo, len(lo), lo)
    return "1", ()


def _unavailable(path: Path, exc: BaseException) -> StoreUnavailable:
    err = StoreUnavailable(f"sqlite store {str(path)!r}: {exc}")
    err.__cause__ = exc
    return err


class _Job:
    """One request for the writer: ``fn`` runs on the writer thread inside its own SAVEPOINT."""

    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: Callable[[_Writer], Any], future: asyncio.Future[Any] | None,
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop


_STOP = _Job(lambda w: None, None, None)


def _settle(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():  # the caller was cancelled; its txn may still have committed
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class _Writer(threading.Thread):
    """The writer thread: owns the write connection, group-commits queued jobs, sweeps expired leases."""

    def __init__(self, store: SqliteStore) -> None:
        super().__init__(name=f"haplane-sqlite-writer:{store.path.name}", daemon=True)
        self.store = store
        self.queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.conn: sqlite3.Connection | None = None
        # meta, as of the current write transaction
        self.revision = 0
        self.compact_rev = 0
        self.event_count = 0
        self.pending: list[tuple[int, int, str, str, str | None, int]] = []  # events of the current job
        self._next_expiry = float("inf")  # Unix time of the earliest lease expiry we know of
        self._next_check = 0.0  # when to re-read it from the file (other processes grant leases too)

    # --- the loop -----------------------------------------------------------------------------------------------

    def run(self) -> None:
        try:  # open at once, so a restarted process sweeps leases left by a crashed one without being asked
            self.conn = self._open()
            self.store.ready = True
        except Exception:
            self.conn = None  # the first request retries, and reports the error to its caller
        while True:
            jobs: list[_Job] = []
            try:
                jobs.append(self.queue.get(timeout=self._idle_timeout()))
                while len(jobs) < MAX_BATCH:
                    jobs.append(self.queue.get_nowait())
            except queue.Empty:
                pass
            stop = any(job is _STOP for job in jobs)
            jobs = [job for job in jobs if job is not _STOP]
            try:
                sweep = self._lease_due()
                if jobs or sweep:
                    self._batch(jobs, sweep)
            except BaseException as exc:  # a bug must not leave callers waiting forever
                self._fail(jobs, exc)
                self.sweep_later()
            if stop:
                break
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None

    def _idle_timeout(self) -> float:
        if self.conn is None:
            return LEASE_CHECK_INTERVAL
        return max(0.0, min(self._next_expiry, self._next_check) - time.time())

    def _lease_due(self) -> bool:
        if self.conn is None:
            return False
        now = time.time()
        if now >= self._next_check or self._next_expiry <= now:
            try:
                row = self.conn.execute("SELECT min(expires_at) FROM leases").fetchone()
            except sqlite3.Error:
                return False  # a busy or broken file: the next write batch reports it
            self._next_expiry = float("inf") if row[0] is None else float(row[0])
            self._next_check = now + LEASE_CHECK_INTERVAL
        return self._next_expiry <= now

    def saw_expiry(self, expires_at: float) -> None:
        self._next_expiry = min(self._next_expiry, expires_at)

    def recheck_expiry(self) -> None:
        """Re-read the earliest expiry from the file before the next wait (after a sweep)."""
        self._next_check = 0.0

    def sweep_later(self) -> None:
        """A sweep failed: retry after a pause rather than at once, again and again."""
        self._next_expiry = self._next_check = time.time() + LEASE_CHECK_INTERVAL

    # --- one group commit ---------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        path = self.store.path
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self.store.connect()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(f"schema version {version} is newer than this haplane "
                                                f"({SCHEMA_VERSION})")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _batch(self, jobs: list[_Job], sweep: bool) -> None:
        results: list[tuple[_Job, bool, Any]] = []
        before = -1
        try:
            if self.conn is None:
                self.conn = self._open()
                self.store.ready = True
                self._next_check = 0.0
                sweep = self._lease_due()
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                self.revision, self.compact_rev, self.event_count = conn.execute(
                    "SELECT revision, compact_rev, event_count FROM meta").fetchone()
                before = self.revision
                if sweep and not self._run_job(_sweep)[0]:  # first: no txn may see a lease past its deadline
                    self.sweep_later()
                for job in jobs:
                    results.append((job, *self._run_job(job.fn)))
                if self.revision != before:
                    self._trim()
                    conn.execute("UPDATE meta SET revision = ?, compact_rev = ?, event_count = ?",
                                 (self.revision, self.compact_rev, self.event_count))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._fail(jobs, exc)
            if sweep:
                self.sweep_later()
            return
        self._resolve(results)
        if self.revision != before:
            self.store.notify()

    def _run_job(self, fn: Callable[[_Writer], Any]) -> tuple[bool, Any]:
        """Run ``fn`` in a SAVEPOINT: its own failure rolls back only its own writes. A sqlite3 error
        propagates and aborts the whole batch (the file, not the request, is at fault)."""
        conn = self.conn
        assert conn is not None
        saved = (self.revision, self.compact_rev, self.event_count)
        conn.execute("SAVEPOINT job")
        try:
            self.pending = []
            value = fn(self)
            if self.pending:
                conn.executemany("INSERT INTO events (rev, seq, type, key, value, create_rev) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", self.pending)
                self.event_count += len(self.pending)
        except sqlite3.Error:
            raise
        except BaseException as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            self.revision, self.compact_rev, self.event_count = saved
            return False, exc
        finally:
            self.pending = []
        conn.execute("RELEASE job")
        return True, value

    def _trim(self) -> None:
        """Drop the oldest whole txns of events until at most ``history`` remain (the newest txn stays)."""
        excess = self.event_count - self.store.history
        if excess <= 0:
            return
        conn = self.conn
        assert conn is not None
        row = conn.execute("SELECT rev FROM events ORDER BY rev, seq LIMIT 1 OFFSET ?", (excess - 1,)).fetchone()
        newest = conn.execute("SELECT max(rev) FROM events").fetchone()[0]
        if row is None or newest is None:
            return
        cut = min(int(row[0]), int(newest) - 1)
        if cut <= self.compact_rev:
            return
        dropped = conn.execute("DELETE FROM events WHERE rev <= ?", (cut,)).rowcount
        self.event_count -= dropped
        self.compact_rev = cut

    def _resolve(self, results: list[tuple[_Job, bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, ok, value in results:
            if job.future is not None and job.loop is not None:
                by_loop.setdefault(job.loop, []).append((job.future, ok, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, items)

    def _fail(self, jobs: list[_Job], exc: BaseException) -> None:
        self._resolve([(job, False, _unavailable(self.store.path, exc)) for job in jobs])

    # --- helpers for jobs ---------------------------------------------------------------------------------------

    def new_revision(self) -> int:
        self.revision += 1
        return self.revision

    def event(self, rev: int, type_: str, key: str, value: str | None, create_rev: int) -> None:
        self.pending.append((rev, len(self.pending), type_, key, value, create_rev))


# --- jobs: each runs on the writer thread, inside a SAVEPOINT of an open write transaction --------------------

def _txn(compares: Sequence[Compare], ops: Sequence[Op], w: _Writer) -> int:
    conn = w.conn
    assert conn is not None
    for cmp in compares:
        row = conn.execute("SELECT mod_rev FROM kv WHERE key = ?", (cmp.key,)).fetchone()
        actual = row[0] if row is not None else 0
        if actual != cmp.mod_revision:
            raise Conflict(cmp.key, cmp.mod_revision, actual)
    if not ops:
        return w.revision
    rev = w.new_revision()
    now = time.time()
    for op in ops:
        if isinstance(op, Put):
            if op.lease:
                row = conn.execute("SELECT expires_at FROM leases WHERE id = ?", (op.lease,)).fetchone()
                if row is None or row[0] <= now:
                    raise NotFound("lease", str(op.lease))
            create = conn.execute(
                "INSERT INTO kv (key, value, create_rev, mod_rev, lease) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev, "
                "lease = excluded.lease RETURNING create_rev",
                (op.key, op.value, rev, rev, op.lease)).fetchone()[0]
            w.event(rev, "put", op.key, op.value, create)
        else:
            if op.prefix:
                where, params = _where_prefix(op.key)
                keys = [r[0] for r in conn.execute(f"DELETE FROM kv WHERE {where} RETURNING key", params)]
                for key in sorted(keys):
                    w.event(rev, "delete", key, None, 0)
            elif conn.execute("DELETE FROM kv WHERE key = ?", (op.key,)).rowcount:
                w.event(rev, "delete", op.key, None, 0)
    return rev


def _grant(ttl: float, w: _Writer) -> int:
    assert w.conn is not None
    expires_at = time.time() + ttl
    lease = w.conn.execute("INSERT INTO leases (ttl, expires_at) VALUES (?, ?)", (ttl, expires_at)).lastrowid
    assert lease is not None
    w.saw_expiry(expires_at)
    return lease


def _keepalive(lease: int, w: _Writer) -> None:
    assert w.conn is not None
    now = time.time()
    cur = w.conn.execute("UPDATE leases SET expires_at = ? + ttl WHERE id = ? AND expires_at > ?", (now, lease, now))
    if not cur.rowcount:
        raise NotFound("lease", str(lease))


def _keepalive_many(leases: Sequence[int], w: _Writer) -> set[int]:
    assert w.conn is not None
    now = time.time()
    gone: set[int] = set()
    for lease in leases:
        cur = w.conn.execute("UPDATE leases SET expires_at = ? + ttl WHERE id = ? AND expires_at > ?",
                             (now, lease, now))
        if not cur.rowcount:
            gone.add(lease)
    return gone


def _delete_keys(w: _Writer, keys: list[str]) -> None:
    if keys:
        rev = w.new_revision()
        for key in sorted(keys):
            w.event(rev, "delete", key, None, 0)


def _revoke(lease: int, w: _Writer) -> None:
    assert w.conn is not None
    keys = [r[0] for r in w.conn.execute("DELETE FROM kv WHERE lease = ? AND lease != 0 RETURNING key", (lease,))]
    w.conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
    _delete_keys(w, keys)


def _sweep(w: _Writer) -> None:
    """Expire every lease past its deadline: delete their keys in one txn, one revision."""
    assert w.conn is not None
    now = time.time()
    keys = [r[0] for r in w.conn.execute(
        "DELETE FROM kv WHERE lease != 0 AND lease IN (SELECT id FROM leases WHERE expires_at <= ?) RETURNING key",
        (now,))]
    w.conn.execute("DELETE FROM leases WHERE expires_at <= ?", (now,))
    w.recheck_expiry()
    _delete_keys(w, keys)


# --- reads: each runs on a reader thread, on that thread's connection -------------------------------------------

def _read_get(conn: sqlite3.Connection, key: str) -> KV | None:
    row = conn.execute("SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key = ?", (key,)).fetchone()
    return None if row is None else KV(*row)


def _read_many(conn: sqlite3.Connection, keys: Sequence[str]) -> list[KV | None]:
    conn.execute("BEGIN")
    try:
        found: dict[str, KV] = {}
        for i in range(0, len(keys), 500):  # SQLite's limit on host parameters is 999 in older builds
            chunk = list(keys[i:i + 500])
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key IN ({marks})",
                                    chunk):
                found[row[0]] = KV(*row)
    finally:
        conn.execute("COMMIT")
    return [found.get(key) for key in keys]


def _read_range(conn: sqlite3.Connection, prefix: str) -> tuple[list[KV], int]:
    where, params = _where_prefix(prefix)
    conn.execute("BEGIN")
    try:
        rev = conn.execute("SELECT revision FROM meta").fetchone()[0]
        kvs = [KV(*row) for row in conn.execute(
            f"SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE {where} ORDER BY key", params)]
    finally:
        conn.execute("COMMIT")
    return kvs, rev


def _read_revision(conn: sqlite3.Connection) -> int:
    rev: int = conn.execute("SELECT revision FROM meta").fetchone()[0]
    return rev


def _read_compares(conn: sqlite3.Connection, compares: Sequence[Compare]) -> int:
    conn.execute("BEGIN")
    try:
        rev: int = conn.execute("SELECT revision FROM meta").fetchone()[0]
        for cmp in compares:
            row = conn.execute("SELECT mod_rev FROM kv WHERE key = ?", (cmp.key,)).fetchone()
            actual = row[0] if row is not None else 0
            if actual != cmp.mod_revision:
                raise Conflict(cmp.key, cmp.mod_revision, actual)
    finally:
        conn.execute("COMMIT")
    return rev


def _read_events(conn: sqlite3.Connection, prefix: str, cursor: int) -> tuple[list[Event], int]:
    """Events under ``prefix`` from ``cursor`` up to the revision of this snapshot, and that revision."""
    where, params = _where_prefix(prefix)
    conn.execute("BEGIN")
    try:
        rev, compact = conn.execute("SELECT revision, compact_rev FROM meta").fetchone()
        check_not_compacted(cursor, compact)
        if cursor > rev:
            return [], rev
        rows = conn.execute(f"SELECT rev, type, key, value, create_rev FROM events WHERE rev >= ? AND rev <= ? "
                            f"AND {where} ORDER BY rev, seq", (cursor, rev, *params)).fetchall()
    finally:
        conn.execute("COMMIT")
    return [Event(type_, key, value, r, create) for r, type_, key, value, create in rows], rev


# --- the store ------------------------------------------------------------------------------------------------

class SqliteStore:
    """A Store on one SQLite file; see the module docstring. Construct with ``open_sqlite(url)``."""

    def __init__(self, path: Path | str, *, url: str | None = None, history: int = DEFAULT_HISTORY,
                 busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.url = url if url is not None else f"sqlite:///{self.path}"
        self.history = history
        self.busy_timeout = busy_timeout
        self.ready = False  # set by the writer once the file is open and its schema in place
        self._closed = False
        self._writer = _Writer(self)
        self._writer.start()
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="haplane-sqlite-reader")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._waiters_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._poll_wake = threading.Event()  # set when the first watcher arrives or at close
        self._stopping = threading.Event()

    # --- plumbing -----------------------------------------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        """A new connection to the file (autocommit; transactions are explicit)."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
        return conn

    def _run_read(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(self._reader_conn(), *args)
        except sqlite3.Error as exc:
            conn = getattr(self._local, "conn", None)
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise _unavailable(self.path, exc) from exc

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()
        if not self.ready:
            await self._write(lambda w: None)  # the writer creates the file and its schema first
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, functools.partial(self._run_read, fn, *args))
        except RuntimeError as exc:  # the executor was shut down under us
            if self._closed:
                raise StoreUnavailable(f"{self.url}: the store is closed") from exc
            raise

    async def _write(self, fn: Callable[[_Writer], T]) -> T:
        self._check_open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writer.queue.put(_Job(fn, future, loop))
        return await future

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"{self.url}: the store is closed")

    def notify(self) -> None:
        """Wake every watcher of this store (called from the writer and poller threads)."""
        with self._waiters_lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # --- reads --------------------------------------------------------------------------------------------------

    async def get(self, key: str) -> KV | None:
        return await self._read(_read_get, key)

    async def get_many(self, keys: Sequence[str]) -> list[KV | None]:
        if not keys:
            return []
        return await self._read(_read_many, tuple(keys))

    async def range(self, prefix: str) -> tuple[list[KV], int]:
        return await self._read(_read_range, prefix)

    async def revision(self) -> int:
        return await self._read(_read_revision)

    # --- writes -------------------------------------------------------------------------------------------------

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        check_txn(compares, ops)
        if not ops:  # nothing to write: check the compares on a snapshot, no fsync needed
            return await self._read(_read_compares, tuple(compares))
        return await self._write(functools.partial(_txn, tuple(compares), tuple(ops)))

    async def grant_lease(self, ttl: float) -> int:
        if not ttl > 0:
            raise ValidationError("ttl", ttl, "must be a positive number of seconds")
        return await self._write(functools.partial(_grant, float(ttl)))

    async def keepalive(self, lease: int) -> None:
        await self._write(functools.partial(_keepalive, lease))

    async def keepalive_many(self, leases: Sequence[int]) -> set[int]:
        if not leases:
            return set()
        return await self._write(functools.partial(_keepalive_many, tuple(leases)))

    async def revoke_lease(self, lease: int) -> None:
        await self._write(functools.partial(_revoke, lease))

    # --- watch --------------------------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        """Read events from the cursor; sleep until this process commits or the poller sees another's."""
        self._check_open()
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        entry = (loop, wake)
        with self._waiters_lock:
            self._waiters.add(entry)
        self._ensure_poller()
        try:
            cursor = start_revision
            while True:
                wake.clear()  # before reading: a commit after this point sets it again
                events, rev = await self._read(_read_events, prefix, cursor)
                cursor = max(cursor, rev + 1)
                if events:
                    yield events
                else:
                    await wake.wait()
                    self._check_open()
        finally:
            with self._waiters_lock:
                self._waiters.discard(entry)

    def _ensure_poller(self) -> None:
        self._poll_wake.set()
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name=f"haplane-sqlite-poll:{self.path.name}",
                                            daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        """Notice other processes' commits: ``PRAGMA data_version`` changes whenever another connection
        commits. Polls only while someone watches. The first reading after a pause always wakes the
        watchers (spurious wake-ups are harmless; a missed one would stall a watch)."""
        conn: sqlite3.Connection | None = None
        last: int | None = None
        while not self._stopping.is_set():
            with self._waiters_lock:
                watching = bool(self._waiters)
            if not watching:
                last = None
                self._poll_wake.clear()
                with self._waiters_lock:
                    watching = bool(self._waiters)
                if not watching:
                    self._poll_wake.wait()
                continue
            try:
                if conn is None:
                    conn = self.connect()
                version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                conn = None
                version = -1  # wake the watchers: their own read will report the error
            if version != last or version == -1:
                self.notify()
            last = version
            self._stopping.wait(POLL_INTERVAL)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish queued writes, stop the threads, close every connection; open watches then raise
        ``StoreUnavailable``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writer.queue.put(_STOP)
        self._stopping.set()
        self._poll_wake.set()
        done: ThreadFuture[None] = ThreadFuture()

        def finish() -> None:
            try:
                self._writer.join()
                if self._poller is not None:
                    self._poller.join()
                self._readers.shutdown(wait=True)
                with self._conns_lock:
                    conns, self._conns = self._conns, []
                for conn in conns:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        threading.Thread(target=finish, name="haplane-sqlite-close", daemon=True).start()
        await asyncio.wrap_future(done)
        self.notify()

    def __repr__(self) -> str:
        return f"SqliteStore({self.url!r})"

