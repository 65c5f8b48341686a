"""``dynamodb://TABLE?region=R[&endpoint=URL]`` — the Store on one Amazon DynamoDB table (HSDO's AWS-native setup).

Needs the ``aws`` extra (boto3); without it the store's first operation raises ``MissingDependency`` naming it
(``open_dynamodb`` only checks the URL). The table is created (on-demand billing, keys ``pk``/``sk``, both
strings) if it does not exist. Credentials, region and endpoint come from boto3's usual chain (``AWS_*``
variables, ``~/.aws``, instance roles; boto3 ≥ 1.28 reads ``AWS_ENDPOINT_URL`` itself); ``region=`` and
``endpoint=`` in the URL win over them.

Layout (one table, four item families):
- ``pk="meta", sk="rev"`` — the store-wide revision counter; ``sk="leaseseq"`` — the lease id counter;
- ``pk="kv", sk=KEY`` — a key with its value, create/mod revision and lease (``sk`` is compared as UTF-8 bytes,
  which is code point order, so a ``begins_with`` query is an ordered prefix range);
- ``pk="log", sk=REVISION`` (zero-padded) — the change log: the events of that revision's txn;
- ``pk="lease", sk=ID`` (zero-padded) — a lease with its ttl and expiry (Unix time).

How the contract is kept:
- **txn / compare-and-swap**: under a per-process lock, the txn reads the revision and the keys it touches
  (consistent reads), checks the compares against that snapshot, then writes everything in ONE
  ``TransactWriteItems``: the data items, the change-log item, and the counter ``rev`` with the condition
  ``rev = <the revision read>``. Any other writer that committed meanwhile (another process, another host) makes
  the condition fail; the txn is then retried from the reads (with ``backoff_delay``). So every txn bumps the
  revision by exactly one, is all-or-nothing, and compares can never pass on a stale read. A ``Conflict`` is
  raised when a compare fails on the consistent read of its key: a key's revision only moves forward, so the
  compare did fail at that read.
- **size**: a DynamoDB transaction holds at most 100 items (``max_items=``; moto allows 25). A txn needs one
  item per put or deleted key, one per distinct lease it puts with, plus two; a bigger txn is refused with a
  ``TxnTooLarge`` naming the limit (nothing is written), never split (it would not be atomic).
- **watch**: polls the change log every ``poll=`` seconds (default 0.2) with a consistent ``Query`` from the
  watcher's next revision. Latency is therefore up to ``poll`` plus one round trip (about 0.2 to 0.3 s against
  AWS in one region); each watcher costs one read request per ``poll`` when idle.
- **history / Compacted**: the log keeps the last ``history=`` revisions (default 100,000); each txn deletes the
  log item that fell out. Every revision has a log item (even one with no events), so a gap in what a watcher
  reads means events were dropped: it raises ``Compacted``.
- **leases**: items with an expiry. DynamoDB's own TTL deletes items up to days late, so it is not used: a reaper task
  in every open store sweeps the table's expired leases, whichever host granted them (every ``lease_check=`` seconds,
  default 1, and before any operation once a lease it knows of is due: at most that late): one txn deletes the lease's
  keys (with delete events) and the lease item, under the condition that it is still expired (a racing keepalive
  wins). ``keepalive`` is a conditional update (``expires_at > now``); a put with a lease checks the same condition
  inside the txn. Expiry uses the hosts' wall clocks: keep them in sync (NTP) when several hosts share a table.
- errors from AWS (throttling after botocore's own retries, network) are ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from haplane.backoff import backoff_delay
from haplane.errors import (
    Compacted,
    ConfigurationError,
    Conflict,
    MissingDependency,
    NotFound,
    StoreUnavailable,
    TxnTooLarge,
    ValidationError,
)
from haplane.store._events import DEFAULT_HISTORY, check_options, check_txn, float_option, int_option, split_url
from haplane.store.base import KV, Compare, Delete, Event, Op, Put

__all__ = ["DynamoDBStore", "open_dynamodb"]

log = logging.getLogger("haplane.store.dynamodb")

T = TypeVar("T")
AWS_MAX_ITEMS = 100  # TransactWriteItems' limit on AWS (moto: 25)
_REV_WIDTH = 20
_RETRIES = 50


def open_dynamodb(url: str) -> DynamoDBStore:
    """The ``ENGINES`` factory for ``dynamodb://TABLE?region=R&endpoint=URL&history=N&poll=S&lease_check=S``."""
    table, options = split_url(url, "dynamodb")
    check_options(url, options, ["region", "endpoint", "history", "poll", "lease_check", "max_items"])
    if not table or "/" in table:
        raise ConfigurationError(f"store URL {url!r}: expected dynamodb://TABLE (a table name, no path)")
    return DynamoDBStore(
        url, table, region=options.get("region") or None, endpoint=options.get("endpoint") or None,
        history=int_option(url, options, "history", DEFAULT_HISTORY, 1),
        poll=float_option(url, options, "poll", 0.2, 0.01),
        lease_check=float_option(url, options, "lease_check", 1.0, 0.01),
        max_items=int_option(url, options, "max_items", AWS_MAX_ITEMS, 3))


def _rk(rev: int) -> str:
    return str(rev).zfill(_REV_WIDTH)


def _s(text: str) -> dict[str, str]:
    return {"S": text}


def _n(number: int | float) -> dict[str, str]:
    return {"N": repr(number) if isinstance(number, float) else str(number)}


class _Retry(Exception):
    """Another writer committed between our reads and our write: read again."""


class DynamoDBStore:
    def __init__(self, url: str, table: str, *, region: str | None = None, endpoint: str | None = None,
                 history: int = DEFAULT_HISTORY, poll: float = 0.2, lease_check: float = 1.0,
                 max_items: int = AWS_MAX_ITEMS) -> None:
        self.url = url
        self.table = table
        self.region = region
        self.endpoint = endpoint
        self.history = history
        self.poll = poll
        self.lease_check = lease_check
        self.max_items = max_items
        self._client: Any = None
        self._ready: asyncio.Lock | None = None
        self._write_lock: asyncio.Lock | None = None
        self._next_expiry = float("inf")  # Unix time of the earliest lease expiry we know of
        # the revision our last commit made (or last read) under the write lock: a txn conditions its counter
        # bump on it, so reading it is skipped when this process is the only writer; None: read it
        self._rev_hint: int | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    # --- plumbing -----------------------------------------------------------------------------------------------

    def _make_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ModuleNotFoundError:
            raise MissingDependency("the dynamodb store engine", "haplane[aws] (boto3)") from None
        cfg = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=10,
                     max_pool_connections=32)
        return boto3.session.Session().client("dynamodb", region_name=self.region, endpoint_url=self.endpoint,
                                              config=cfg)

    async def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        """Run a blocking boto3 call in a thread; AWS and network errors become StoreUnavailable. Calls that
        expect a conditional failure (``keepalive``, ``_commit``, ``_expire``) run boto3 through
        ``asyncio.to_thread`` themselves and read the ``ClientError``'s code first."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(fn, **kwargs)
        except ClientError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from None

    async def _open(self) -> Any:
        if self._closed:
            raise StoreUnavailable(f"{self.url}: the store is closed")
        if self._client is not None:
            return self._client
        if self._ready is None:
            self._ready = asyncio.Lock()
        async with self._ready:
            if self._client is None:
                client = self._make_client()
                await self._ensure_table(client)
                self._client = client
                self._write_lock = asyncio.Lock()
                self._kick_reaper(float("inf"))  # sweeps every host's leases, not only the ones granted here
        return self._client

    async def _ensure_table(self, client: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            described = await self._call(client.describe_table, TableName=self.table)
            self._check_schema(described.get("Table", {}))
        except StoreUnavailable as exc:
            if "ResourceNotFoundException" not in str(exc):
                raise
            try:
                await asyncio.to_thread(
                    client.create_table, TableName=self.table, BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                          {"AttributeName": "sk", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                               {"AttributeName": "sk", "KeyType": "RANGE"}])
                log.info("created DynamoDB table %s", self.table)
            except ClientError as cexc:
                if cexc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                    raise StoreUnavailable(f"{self.url}: cannot create table {self.table}: {cexc}") from None
            except Exception as oexc:
                raise StoreUnavailable(f"{self.url}: cannot create table {self.table}: {oexc}") from None
            waiter = client.get_waiter("table_exists")
            await self._call(waiter.wait, TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    def _check_schema(self, table: dict[str, Any]) -> None:
        """A table of another schema is a settings error naming it, never a 503 at the first write. HSDO's own
        table (hash key BackendServerID) is the usual case: DYNAMODB_TABLE_NAME is the store setting here."""
        keys = {k.get("KeyType"): k.get("AttributeName") for k in table.get("KeySchema", [])}
        if keys == {"HASH": "pk", "RANGE": "sk"}:
            return
        types = {a.get("AttributeName"): a.get("AttributeType") for a in table.get("AttributeDefinitions", [])}
        schema = ", ".join(f"{kind.lower()} key {name} ({types.get(name, '?')})" for kind, name in sorted(
            keys.items(), key=lambda kv: kv[0] != "HASH"))
        if keys.get("HASH") == "BackendServerID":
            raise ConfigurationError(
                f"DynamoDB table {self.table!r} is HSDO's server list ({schema}), not a haplane store (hash key pk "
                f"(S), range key sk (S), created on first use). Keep HSDO's table for HSDO and give haplane its "
                f"own: HAPLANE_STORE=dynamodb://{self.table}-haplane (DYNAMODB_TABLE_NAME then names no store), "
                "and feed it from the same AutoScaling groups with `haplane watch aws` (SERVER_ASG_NAMES) - see "
                "docs/migrating.md, HSDO")
        raise ConfigurationError(f"DynamoDB table {self.table!r} has {schema or 'no key schema'}; a haplane store "
                                 "needs hash key pk (S) and range key sk (S): name a new table (it is created on "
                                 "first use)")

    async def _client_ready(self) -> Any:
        client = await self._open()
        if time.time() >= self._next_expiry:
            await self._sweep()
        return client

    def _kick_reaper(self, expires_at: float) -> None:
        self._next_expiry = min(self._next_expiry, expires_at)
        if self._reaper is None and not self._closed:
            self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.lease_check)
            try:
                await self._sweep()
            except StoreUnavailable as exc:
                log.warning("lease sweep failed, retrying: %s", exc)
            except Exception:  # never let the reaper die silently
                log.exception("lease sweep failed")

    # --- reads --------------------------------------------------------------------------------------------------

    async def _get_rev(self, client: Any) -> int:
        resp = await self._call(client.get_item, TableName=self.table, Key={"pk": _s("meta"), "sk": _s("rev")},
                                ConsistentRead=True)
        item = resp.get("Item")
        return int(item["r"]["N"]) if item else 0

    async def _query(self, client: Any, pk: str, *, prefix: str = "", after: str | None = None,
                     limit: int | None = None, filter_lease: Sequence[int] = ()) -> list[dict[str, Any]]:
        cond = "pk = :pk"
        values: dict[str, Any] = {":pk": _s(pk)}
        if after is not None:
            cond += " AND sk >= :after"
            values[":after"] = _s(after)
        elif prefix:
            cond += " AND begins_with(sk, :prefix)"
            values[":prefix"] = _s(prefix)
        kwargs: dict[str, Any] = {"TableName": self.table, "KeyConditionExpression": cond,
                                  "ExpressionAttributeValues": values, "ConsistentRead": True}
        if filter_lease:
            names = [f":l{i}" for i in range(len(filter_lease))]
            kwargs["FilterExpression"] = f"l IN ({', '.join(names)})"
            values.update({name: _n(lease) for name, lease in zip(names, filter_lease, strict=True)})
        items: list[dict[str, Any]] = []
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - len(items)
            resp = await self._call(client.query, **kwargs)
            items.extend(resp.get("Items", []))
            last = resp.get("LastEvaluatedKey")
            if not last or (limit is not None and len(items) >= limit):
                return items
            kwargs["ExclusiveStartKey"] = last

    @staticmethod
    def _kv(item: dict[str, Any]) -> KV:
        return KV(item["sk"]["S"], item["v"]["S"], int(item["c"]["N"]), int(item["m"]["N"]),
                  int(item.get("l", {"N": "0"})["N"]))

    async def _get_many(self, client: Any, keys: Sequence[str]) -> dict[str, KV]:
        out: dict[str, KV] = {}
        todo = [{"pk": _s("kv"), "sk": _s(k)} for k in dict.fromkeys(keys)]
        while todo:
            chunk, todo = todo[:100], todo[100:]
            request: dict[str, Any] = {self.table: {"Keys": chunk, "ConsistentRead": True}}
            while request:
                resp = await self._call(client.batch_get_item, RequestItems=request)
                for item in resp.get("Responses", {}).get(self.table, []):
                    kv = self._kv(item)
                    out[kv.key] = kv
                request = resp.get("UnprocessedKeys") or {}
                if request:
                    await asyncio.sleep(0.05)
        return out

    async def get(self, key: str) -> KV | None:
        client = await self._client_ready()
        resp = await self._call(client.get_item, TableName=self.table, Key={"pk": _s("kv"), "sk": _s(key)},
                                ConsistentRead=True) if key else {}
        item = resp.get("Item")
        return self._kv(item) if item else None

    async def get_many(self, keys: Sequence[str]) -> list[KV | None]:
        """BatchGetItem, 100 keys a call; read again if a txn committed meanwhile (one revision, as range)."""
        client = await self._client_ready()
        wanted = [k for k in keys if k]
        for _ in range(_RETRIES):
            rev = await self._get_rev(client)
            found = await self._get_many(client, wanted) if wanted else {}
            if await self._get_rev(client) == rev:
                return [found.get(k) for k in keys]
        raise StoreUnavailable(f"{self.url}: could not read {len(keys)} keys at one revision (too many writers)")

    async def range(self, prefix: str) -> tuple[list[KV], int]:
        client = await self._client_ready()
        for _ in range(_RETRIES):
            rev = await self._get_rev(client)
            items = await self._query(client, "kv", prefix=prefix)
            if await self._get_rev(client) == rev:  # nothing committed while we read: a snapshot at rev
                return [self._kv(i) for i in items], rev
        raise StoreUnavailable(f"{self.url}: could not read {prefix!r} at one revision (too many writers)")

    async def revision(self) -> int:
        return await self._get_rev(await self._client_ready())

    # --- writes -------------------------------------------------------------------------------------------------

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        check_txn(compares, ops)
        for op in ops:
            if not op.key and not (isinstance(op, Delete) and op.prefix):
                raise ValidationError("key", op.key, "must not be empty in the dynamodb store")
        client = await self._client_ready()
        assert self._write_lock is not None
        async with self._write_lock:
            for attempt in range(_RETRIES):
                try:
                    return await self._txn_once(client, compares, ops)
                except _Retry:
                    await asyncio.sleep(backoff_delay(attempt, 0.005, 0.5))
        raise StoreUnavailable(f"{self.url}: txn gave up after {_RETRIES} attempts (too many concurrent writers)")

    async def _txn_once(self, client: Any, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        # The revision is known (read, or the hint) BEFORE the keys are read, and the commit is conditioned on
        # it: if the commit succeeds, nothing changed since, so the keys read were the state at ``rev``.
        rev = self._rev_hint if self._rev_hint is not None else await self._get_rev(client)
        single = [c.key for c in compares] + [op.key for op in ops if not (isinstance(op, Delete) and op.prefix)]
        current = await self._get_many(client, single)
        for op in ops:
            if isinstance(op, Delete) and op.prefix:
                for item in await self._query(client, "kv", prefix=op.key):
                    found = self._kv(item)
                    current[found.key] = found
        for cmp in compares:
            seen = current.get(cmp.key)
            actual = seen.mod_revision if seen is not None else 0
            if actual != cmp.mod_revision:  # it did not hold when read (a consistent read): the txn fails
                raise Conflict(cmp.key, cmp.mod_revision, actual)
        if not ops:
            return await self._get_rev(client)
        new = rev + 1
        # apply ops in order to a view of the touched keys: the last op on a key decides its item
        state: dict[str, KV | None] = dict(current)
        events: list[list[Any]] = []
        for op in ops:
            if isinstance(op, Put):
                old = state.get(op.key)
                create = old.create_revision if old is not None else new
                state[op.key] = KV(op.key, op.value, create, new, op.lease)
                events.append(["put", op.key, op.value, create])
            elif op.prefix:
                for key in sorted(k for k, kv in state.items() if kv is not None and k.startswith(op.key)):
                    state[key] = None
                    events.append(["delete", key, None, 0])
            elif state.get(op.key) is not None:
                state[op.key] = None
                events.append(["delete", op.key, None, 0])
        leases = sorted({op.lease for op in ops if isinstance(op, Put) and op.lease})
        items: list[dict[str, Any]] = []
        for key, kv in state.items():
            before = current.get(key)
            if kv is None:
                if before is not None:
                    items.append({"Delete": {"TableName": self.table, "Key": {"pk": _s("kv"), "sk": _s(key)}}})
            elif kv.mod_revision == new:
                item = {"pk": _s("kv"), "sk": _s(key), "v": _s(kv.value), "c": _n(kv.create_revision),
                        "m": _n(kv.mod_revision), "l": _n(kv.lease)}
                items.append({"Put": {"TableName": self.table, "Item": item}})
        now = time.time()
        for lease in leases:
            items.append({"ConditionCheck": {
                "TableName": self.table, "Key": {"pk": _s("lease"), "sk": _s(_rk(lease))},
                "ConditionExpression": "attribute_exists(sk) AND x > :now",
                "ExpressionAttributeValues": {":now": _n(now)}}})
        await self._commit(client, rev, events, items, leases=leases)
        return new

    async def _commit(self, client: Any, rev: int, events: list[list[Any]], items: list[dict[str, Any]],
                      leases: Sequence[int] = (), reason: str = "txn") -> None:
        """Write ``items`` plus the log item and the counter bump rev -> rev + 1, all or nothing.
        Raises _Retry if another writer moved the revision, NotFound if a lease check failed."""
        from botocore.exceptions import BotoCoreError, ClientError

        new = rev + 1
        total = len(items) + 2
        if total > self.max_items:
            raise TxnTooLarge("txn", total, self.max_items, f"DynamoDB's {self.max_items} items per transaction: one "
                              "per put or deleted key, one per lease, plus 2; the store URL's max_items", "items")
        counter: dict[str, Any] = {"Update": {
            "TableName": self.table, "Key": {"pk": _s("meta"), "sk": _s("rev")},
            "UpdateExpression": "SET r = :new",
            "ExpressionAttributeValues": {":new": _n(new)}}}
        if rev:
            counter["Update"]["ConditionExpression"] = "r = :old"
            counter["Update"]["ExpressionAttributeValues"][":old"] = _n(rev)
        else:
            counter["Update"]["ConditionExpression"] = "attribute_not_exists(r)"
        log_item = {"Put": {"TableName": self.table, "Item": {
            "pk": _s("log"), "sk": _s(_rk(new)), "e": _s(json.dumps(events, separators=(",", ":")))}}}
        request = [counter, log_item, *items]
        try:
            await asyncio.to_thread(client.transact_write_items, TransactItems=request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") != "TransactionCanceledException":
                raise StoreUnavailable(f"{self.url}: {exc}") from None
            reasons = exc.response.get("CancellationReasons") or []
            codes = [r.get("Code", "None") for r in reasons]
            self._rev_hint = None
            if codes and codes[0] == "ConditionalCheckFailed":
                raise _Retry() from None
            for i, code in enumerate(codes):
                if code == "ConditionalCheckFailed" and "ConditionCheck" in request[i]:
                    lease = int(request[i]["ConditionCheck"]["Key"]["sk"]["S"])
                    raise NotFound("lease", str(lease)) from None
                if code == "ConditionalCheckFailed" and reason == "sweep":
                    raise _Retry() from None
            if any(c in ("TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded")
                   for c in codes) or not codes:
                raise _Retry() from None
            raise StoreUnavailable(f"{self.url}: transaction refused: {codes}") from None
        except BotoCoreError as exc:
            self._rev_hint = None
            raise StoreUnavailable(f"{self.url}: {exc}") from None
        self._rev_hint = new
        if new > self.history:  # the log item that fell out of the history
            with contextlib.suppress(StoreUnavailable):
                await self._call(client.delete_item, TableName=self.table,
                                 Key={"pk": _s("log"), "sk": _s(_rk(new - self.history))})

    # --- watch --------------------------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        """Polls the change log every ``poll`` seconds (see the module notes for latency)."""
        client = await self._client_ready()
        cursor = max(1, start_revision)
        while True:
            if self._closed:
                raise StoreUnavailable(f"{self.url}: the store is closed")
            rev = await self._get_rev(client)
            if rev < cursor:
                await asyncio.sleep(self.poll)
                if time.time() >= self._next_expiry:
                    await self._sweep()
                continue
            # every revision up to rev has its log item (same transaction), unless trimmed from the history
            items = await self._query(client, "log", after=_rk(cursor), limit=500)
            if not items:
                raise Compacted(start_revision, max(cursor + 1, rev - self.history + 1))
            batch: list[Event] = []
            for item in items:
                rev = int(item["sk"]["S"])
                if rev != cursor:  # a gap: trimmed out of the history
                    raise Compacted(start_revision, rev)
                for typ, key, value, create in json.loads(item["e"]["S"]):
                    if key.startswith(prefix):
                        batch.append(Event(typ, key, value, rev, create))
                cursor = rev + 1
            if batch:
                yield batch

    # --- leases -------------------------------------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        if not ttl > 0:
            raise ValidationError("ttl", ttl, "must be a positive number of seconds")
        client = await self._client_ready()
        resp = await self._call(client.update_item, TableName=self.table,
                                Key={"pk": _s("meta"), "sk": _s("leaseseq")}, UpdateExpression="ADD n :one",
                                ExpressionAttributeValues={":one": _n(1)}, ReturnValues="UPDATED_NEW")
        lease = int(resp["Attributes"]["n"]["N"])
        expires_at = time.time() + ttl
        await self._call(client.put_item, TableName=self.table,
                         Item={"pk": _s("lease"), "sk": _s(_rk(lease)), "t": _n(float(ttl)), "x": _n(expires_at)})
        self._kick_reaper(expires_at)
        return lease

    async def keepalive(self, lease: int) -> None:
        from botocore.exceptions import ClientError

        client = await self._client_ready()
        now = time.time()
        try:
            resp = await asyncio.to_thread(
                client.update_item, TableName=self.table, Key={"pk": _s("lease"), "sk": _s(_rk(lease))},
                UpdateExpression="SET x = :now + t", ConditionExpression="attribute_exists(sk) AND x > :now",
                ExpressionAttributeValues={":now": _n(now)}, ReturnValues="ALL_NEW")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise NotFound("lease", str(lease)) from None
            raise StoreUnavailable(f"{self.url}: {exc}") from None
        self._kick_reaper(float(resp["Attributes"]["x"]["N"]))

    async def keepalive_many(self, leases: Sequence[int]) -> set[int]:
        """One conditional UpdateItem per lease (DynamoDB has no batch update), 16 at a time."""
        gate = asyncio.Semaphore(16)
        gone: set[int] = set()

        async def one(lease: int) -> None:
            async with gate:
                try:
                    await self.keepalive(lease)
                except NotFound:
                    gone.add(lease)

        await asyncio.gather(*(one(lease) for lease in dict.fromkeys(leases)))
        return gone

    async def revoke_lease(self, lease: int) -> None:
        client = await self._client_ready()
        await self._expire(client, [lease], condition=None)

    async def _sweep(self) -> None:
        """Expire every lease past its deadline (in this table, whoever granted it)."""
        client = await self._open()
        now = time.time()
        items = await self._query(client, "lease")
        due = [int(i["sk"]["S"]) for i in items if float(i["x"]["N"]) <= now]
        later = [float(i["x"]["N"]) for i in items if float(i["x"]["N"]) > now]
        self._next_expiry = min(later, default=float("inf"))
        if due:
            await self._expire(client, due, condition=now)

    async def _expire(self, client: Any, leases: Sequence[int], condition: float | None) -> None:
        """Delete the leases' keys (one txn, delete events) and the lease items; with ``condition`` only while
        each lease is still expired at that time (a keepalive that got in first keeps it)."""
        from botocore.exceptions import ClientError

        assert self._write_lock is not None
        async with self._write_lock:
            for attempt in range(_RETRIES):
                if condition is not None:  # still expired? (a keepalive may have got in first)
                    wanted = set(leases)
                    leases = [int(i["sk"]["S"]) for i in await self._query(client, "lease")
                              if int(i["sk"]["S"]) in wanted and float(i["x"]["N"]) <= condition]
                    if not leases:
                        return
                kvs = [self._kv(i) for i in await self._query(client, "kv", filter_lease=leases)]
                lease_items: list[dict[str, Any]] = []
                for lease in leases:
                    op: dict[str, Any] = {"TableName": self.table, "Key": {"pk": _s("lease"), "sk": _s(_rk(lease))}}
                    if condition is not None:
                        op["ConditionExpression"] = "x <= :now"
                        op["ExpressionAttributeValues"] = {":now": _n(condition)}
                    lease_items.append({"Delete": op})
                if not kvs:  # nothing to delete: no revision, just forget the leases
                    for item in lease_items:
                        try:
                            await asyncio.to_thread(client.delete_item, **item["Delete"])
                        except ClientError as exc:
                            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                                raise StoreUnavailable(f"{self.url}: {exc}") from None
                    return
                rev = self._rev_hint if self._rev_hint is not None else await self._get_rev(client)
                kvs.sort(key=lambda kv: kv.key)
                events: list[list[Any]] = [["delete", kv.key, None, 0] for kv in kvs]
                items = [{"Delete": {"TableName": self.table, "Key": {"pk": _s("kv"), "sk": _s(kv.key)},
                                     "ConditionExpression": "m = :m", "ExpressionAttributeValues": {
                                         ":m": _n(kv.mod_revision)}}} for kv in kvs]
                try:
                    await self._commit(client, rev, events, items + lease_items, reason="sweep")
                    return
                except _Retry:
                    await asyncio.sleep(backoff_delay(attempt, 0.005, 0.5))
            raise StoreUnavailable(f"{self.url}: could not expire leases {list(leases)}: too many writers")

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reaper
            self._reaper = None
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)
