"""``etcd://HOST:PORT[,HOST:PORT...]/PREFIX`` — the Store on a real etcd cluster (v3 API).

It speaks etcd's own JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/watch``, ``/v3/lease/...``, served by
every etcd ≥ 3.4 on its client port) with httpx, so no gRPC stack is needed. Every key lives under PREFIX, so
several haplane installations (or tests) can share one cluster.

Mapping onto the contract:
- revisions are etcd's own (cluster-wide, so they grow with writes outside PREFIX too: still strictly
  increasing for us); a txn that writes bumps it by one; a txn whose ops change nothing (deleting a missing
  key) does not bump it in etcd — the contract allows both;
- compare-and-swap: ``Compare(key, 0)`` is etcd's ``create_revision == 0``, otherwise ``mod_revision ==``;
- a txn that deletes a prefix and puts keys inside it (etcd refuses overlapping ops in one txn) is rewritten
  into single-key deletes of what the prefix holds, guarded by a range compare that fails if anything under
  it changed meanwhile (then it is retried);
- watches start from a revision; a compacted start revision raises ``Compacted`` (resync, never a gap);
- leases carry whole seconds in etcd: a TTL is rounded up, at least 1 s (and etcd may raise small TTLs to its
  own minimum, about 1.5 election timeouts);
- any member may answer: on a connection error or timeout the next endpoint is tried, and all of them failing
  is ``StoreUnavailable``. Leader changes are etcd's business: a write that hits an election is retried once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from haplane.errors import Compacted, ConfigurationError, Conflict, NotFound, StoreUnavailable
from haplane.store._events import check_txn
from haplane.store.base import KV, Compare, Event, Op, Put

__all__ = ["EtcdStore", "open_etcd"]

log = logging.getLogger("haplane.store.etcd")


def open_etcd(url: str) -> EtcdStore:
    head = "etcd://"
    if not url.startswith(head):
        raise ConfigurationError(f"not an etcd URL: {url!r}")
    rest = url[len(head):]
    if "?" in rest:
        raise ConfigurationError(f"etcd store URL {url!r}: options are not supported")
    hosts, _, prefix = rest.partition("/")
    endpoints = []
    for part in hosts.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ConfigurationError(f"etcd store URL {url!r}: {part!r} must be HOST:PORT")
        endpoints.append(f"http://{host}:{port}")
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    return EtcdStore(url, endpoints, prefix)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def _bytes_prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for a prefix: the prefix with its last byte below 0xff incremented; b"\\0" = no end."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"


class _Gone(Exception):
    pass


class EtcdStore:
    def __init__(self, url: str, endpoints: list[str], prefix: str, timeout: float = 5.0) -> None:
        self.url = url
        self.endpoints = endpoints
        self.prefix = prefix
        self._pre = prefix.encode()
        self._current = 0
        self._timeout = timeout
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        self._closed = False

    # --- transport -------------------------------------------------------------------------------------------

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first member that answers; StoreUnavailable when none does."""
        errors = []
        n = len(self.endpoints)
        for attempt in range(n * 2):
            endpoint = self.endpoints[(self._current + attempt) % n]
            try:
                resp = await self._client.post(endpoint + path, json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{endpoint}: {type(exc).__name__}")
                continue
            data: dict[str, Any] = resp.json() if resp.content else {}
            if resp.status_code != 200:
                message = str(data.get("error") or data.get("message") or resp.text)
                if "lease not found" in message:
                    raise _Gone(message)
                if any(s in message for s in ("leader changed", "no leader", "timed out", "too many requests",
                                              "not capable")):
                    errors.append(f"{endpoint}: {message}")
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                raise StoreUnavailable(f"etcd {endpoint}{path}: {message}")
            self._current = (self._current + attempt) % n
            return data
        raise StoreUnavailable("no etcd member answered: " + "; ".join(errors[-n:]))

    def _key(self, key: str) -> bytes:
        return self._pre + key.encode()

    def _unkey(self, raw: str) -> str:
        return _unb64(raw)[len(self._pre):].decode()

    def _kv(self, d: dict[str, Any]) -> KV:
        return KV(self._unkey(d["key"]), _unb64(d.get("value")).decode(), int(d.get("create_revision", 0)),
                  int(d.get("mod_revision", 0)), int(d.get("lease", 0)))

    def _span(self, prefix: str) -> dict[str, str]:
        k = self._key(prefix)
        return {"key": _b64(k), "range_end": _b64(_bytes_prefix_end(k))}

    # --- reads ----------------------------------------------------------------------------------------------

    async def get(self, key: str) -> KV | None:
        data = await self._call("/v3/kv/range", {"key": _b64(self._key(key))})
        kvs = data.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    async def range(self, prefix: str) -> tuple[list[KV], int]:
        data = await self._call("/v3/kv/range", {**self._span(prefix), "sort_order": "ASCEND",
                                                 "sort_target": "KEY"})
        return [self._kv(d) for d in data.get("kvs") or []], int(data["header"]["revision"])

    async def revision(self) -> int:
        data = await self._call("/v3/kv/range", {"key": _b64(self._key("")), "limit": 1, "keys_only": True})
        return int(data["header"]["revision"])

    # --- writes ---------------------------------------------------------------------------------------------

    def _compare(self, c: Compare) -> dict[str, Any]:
        key = _b64(self._key(c.key))
        if c.mod_revision == 0:
            return {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        return {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": str(c.mod_revision)}

    async def _plan_ops(self, ops: Sequence[Op]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """etcd requests for ``ops``, plus guard compares (for prefix deletes that overlap puts)."""
        put_keys = [op.key for op in ops if isinstance(op, Put)]
        requests: list[dict[str, Any]] = []
        guards: list[dict[str, Any]] = []
        seen_deletes: set[str] = set()
        last_put: dict[str, int] = {}
        for i, op in enumerate(ops):
            if isinstance(op, Put):
                last_put[op.key] = i
        for i, op in enumerate(ops):
            if isinstance(op, Put):
                if last_put[op.key] != i:
                    continue  # a later put of the same key wins (etcd refuses duplicates)
                req: dict[str, Any] = {"key": _b64(self._key(op.key)), "value": _b64(op.value.encode())}
                if op.lease:
                    req["lease"] = str(op.lease)
                requests.append({"request_put": req})
            elif op.prefix and any(k.startswith(op.key) for k in put_keys):
                kvs, rev = await self.range(op.key)
                for kv in kvs:
                    if kv.key not in put_keys and kv.key not in seen_deletes:
                        seen_deletes.add(kv.key)
                        requests.append({"request_delete_range": {"key": _b64(self._key(kv.key))}})
                guards.append({**self._span(op.key), "target": "MOD", "result": "LESS",
                               "mod_revision": str(rev + 1)})
            elif op.prefix:
                requests.append({"request_delete_range": self._span(op.key)})
            elif op.key not in put_keys and op.key not in seen_deletes:
                seen_deletes.add(op.key)
                requests.append({"request_delete_range": {"key": _b64(self._key(op.key))}})
        return requests, guards

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        check_txn(compares, ops)
        for _ in range(20):
            requests, guards = await self._plan_ops(ops)
            body = {"compare": [self._compare(c) for c in compares] + guards, "success": requests}
            try:
                data = await self._call("/v3/kv/txn", body)
            except _Gone as exc:
                raise NotFound("lease", str(next(op.lease for op in ops if isinstance(op, Put) and op.lease))
                               ) from exc
            if data.get("succeeded"):
                return int(data["header"]["revision"])
            failed = await self._first_failed(compares)
            if failed is not None:
                raise Conflict(failed.key, failed.mod_revision, await self._mod_revision(failed.key))
            # only a guard failed: the prefix changed under us; plan again
        raise Conflict(self.prefix or "/")

    async def _mod_revision(self, key: str) -> int:
        kv = await self.get(key)
        return kv.mod_revision if kv else 0

    async def _first_failed(self, compares: Sequence[Compare]) -> Compare | None:
        for c in compares:
            if await self._mod_revision(c.key) != c.mod_revision:
                return c
        return None

    # --- watch ----------------------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        body = {"create_request": {**self._span(prefix), "start_revision": str(max(1, start_revision))}}
        errors = []
        n = len(self.endpoints)
        for attempt in range(n):
            endpoint = self.endpoints[(self._current + attempt) % n]
            try:
                async with httpx.AsyncClient(timeout=httpx.Timeout(self._timeout, read=None),
                                             trust_env=False) as client, \
                        client.stream("POST", endpoint + "/v3/watch", json=body) as stream:
                    if stream.status_code != 200:
                        errors.append(f"{endpoint}: HTTP {stream.status_code}")
                        continue
                    async for line in stream.aiter_lines():
                        if not line.strip():
                            continue
                        msg = json.loads(line)
                        if "error" in msg:
                            raise StoreUnavailable(f"etcd watch {endpoint}: {msg['error']}")
                        result = msg.get("result") or {}
                        compact = int(result.get("compact_revision", 0) or 0)
                        if compact:
                            raise Compacted(start_revision, compact)
                        if result.get("canceled"):
                            raise StoreUnavailable(f"etcd watch {endpoint} canceled: "
                                                   f"{result.get('cancel_reason', '')}")
                        events = [self._event(e) for e in result.get("events") or []]
                        if events:
                            yield events
                    raise StoreUnavailable(f"etcd watch {endpoint}: the stream ended")
            except httpx.HTTPError as exc:
                errors.append(f"{endpoint}: {type(exc).__name__}")
                continue
        raise StoreUnavailable("no etcd member took the watch: " + "; ".join(errors))

    def _event(self, e: dict[str, Any]) -> Event:
        kv = e["kv"]
        rev = int(kv.get("mod_revision", 0))
        if e.get("type") == "DELETE":
            return Event("delete", self._unkey(kv["key"]), None, rev)
        return Event("put", self._unkey(kv["key"]), _unb64(kv.get("value")).decode(), rev,
                     int(kv.get("create_revision", 0)))

    # --- leases ---------------------------------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        data = await self._call("/v3/lease/grant", {"TTL": str(max(1, math.ceil(ttl)))})
        if data.get("error"):
            raise StoreUnavailable(f"etcd lease grant: {data['error']}")
        return int(data["ID"])

    async def keepalive(self, lease: int) -> None:
        data = await self._call("/v3/lease/keepalive", {"ID": str(lease)})
        result = data.get("result") or {}
        if int(result.get("TTL", 0) or 0) <= 0:
            raise NotFound("lease", str(lease))

    async def revoke_lease(self, lease: int) -> None:
        try:
            await self._call("/v3/lease/revoke", {"ID": str(lease)})
        except _Gone:
            pass

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()
