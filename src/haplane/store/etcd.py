"""``etcd://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]/PREFIX[?cacert=F&cert=F&key=F]`` — the Store on a real
etcd cluster (v3 API).

It speaks etcd's own JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/watch``, ``/v3/lease/...``, served by
every etcd ≥ 3.4 on its client port) with httpx, so no gRPC stack is needed. Every key lives under PREFIX, so
several haplane installations (or tests) can share one cluster.

Security, as production runs etcd (each option also comes from settings: ``etcd_cacert``, ``etcd_cert``,
``etcd_key``, ``etcd_user``, ``etcd_password``, i.e. ``HAPLANE_ETCD_*``; what the URL says wins):

- TLS: ``cacert`` (the CA that signed etcd's server certificate; default: the system's CAs), ``cert`` and ``key``
  (the client certificate etcd's ``--client-cert-auth`` asks for). Any of them, or ``tls=true``, means https to
  every member. A certificate etcd refuses, or a server certificate the CA did not sign, is a
  ``StoreUnavailable`` saying so in one line.
- Authentication: ``user``/``password`` (etcd's RBAC): a token from ``/v3/auth/authenticate`` is sent with every
  request and fetched again when etcd says it expired (simple tokens live ``--auth-token-ttl``, 5 min by default).
  Note: with RBAC *and* ``--client-cert-auth`` on, etcd's gateway refuses a client certificate that carries a
  CommonName (it cannot turn it into an etcd user across the gateway); issue haplane's client certificate
  without a CN and let the user/password say who it is.
- The password never appears in an error message or in ``store.url`` (it is shown as ``***``).

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
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

from haplane.errors import Compacted, ConfigurationError, Conflict, NotFound, StoreUnavailable, TxnTooLarge
from haplane.store._events import check_options, check_txn, redact_url, split_url
from haplane.store.base import KV, Compare, Event, Op, Put

__all__ = ["EtcdAccess", "EtcdStore", "open_etcd"]

log = logging.getLogger("haplane.store.etcd")

OPTIONS = ("cacert", "cert", "key", "tls", "user", "password")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class EtcdAccess:
    """How to reach the cluster: TLS files and credentials (all optional)."""

    tls: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = None

    def ssl_context(self, shown: str) -> ssl.SSLContext | None:
        """The client TLS context, or None for plain http. Unreadable files are a ``ConfigurationError``."""
        if not self.tls:
            return None
        for what, path in (("cacert", self.cacert), ("cert", self.cert), ("key", self.key)):
            if path is not None and not Path(path).is_file():
                raise ConfigurationError(f"etcd store {shown}: {what} {path!r} is not a readable file")
        try:
            ctx = ssl.create_default_context(cafile=self.cacert)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(f"etcd store {shown}: cacert {self.cacert!r} is not a PEM CA "
                                     f"certificate: {exc}") from None
        if self.cert is not None:
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigurationError(f"etcd store {shown}: cert {self.cert!r} and key {self.key!r} are not a "
                                         f"PEM certificate and its private key: {exc}") from None
        return ctx


def open_etcd(url: str, **settings: str | None) -> EtcdStore:
    """The ``ENGINES`` factory. ``settings``: ``cacert``, ``cert``, ``key``, ``user``, ``password`` from the
    settings (``etcd_*``); what the URL says wins."""
    shown = redact_url(url)
    try:
        rest, options = split_url(url, "etcd")
    except ConfigurationError:
        raise ConfigurationError(f"not an etcd URL: {shown!r}") from None
    check_options(shown, options, OPTIONS)
    if "password" in options:
        raise ConfigurationError(f"etcd store URL {shown!r}: put the password before the host "
                                 "(etcd://USER:PASSWORD@HOST:PORT/...) or in the etcd_password setting")
    netloc, _, prefix = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts = netloc
    url_user, _, url_password = userinfo.partition(":")
    merged: dict[str, str | None] = {k: v for k, v in settings.items() if v not in (None, "")}
    unknown = sorted(set(merged) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(f"etcd store: unknown setting(s) {', '.join('etcd_' + u for u in unknown)}")
    merged.update(options)
    if url_user:
        merged["user"] = unquote(url_user)
    if url_password:
        merged["password"] = unquote(url_password)
    tls_word = str(merged.get("tls") or "").strip().lower()
    if tls_word not in _TRUE | _FALSE:
        raise ConfigurationError(f"etcd store URL {shown!r}: tls={tls_word!r} must be true or false")
    if bool(merged.get("cert")) != bool(merged.get("key")):
        raise ConfigurationError(f"etcd store {shown}: a client certificate needs both cert and key")
    if merged.get("password") and not merged.get("user"):
        raise ConfigurationError(f"etcd store {shown}: a password needs a user")
    tls = tls_word in _TRUE or any(merged.get(k) for k in ("cacert", "cert", "key"))
    if tls_word in _FALSE and tls_word != "" and tls:
        raise ConfigurationError(f"etcd store {shown}: tls=false contradicts cacert/cert/key")
    access = EtcdAccess(tls=tls, cacert=merged.get("cacert"), cert=merged.get("cert"), key=merged.get("key"),
                        user=merged.get("user"), password=merged.get("password"))
    endpoints = []
    for part in hosts.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ConfigurationError(f"etcd store URL {shown!r}: {part!r} must be HOST:PORT")
        endpoints.append(f"{'https' if tls else 'http'}://{host}:{port}")
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    return EtcdStore(shown, endpoints, prefix, access=access)


_TRANSPORT_ERRORS = (httpx.HTTPError, ssl.SSLError, OSError)  # httpx lets a TLS alert through unwrapped at times


def _explain(endpoint: str, exc: BaseException) -> str:
    """One line saying why ``endpoint`` did not answer; TLS refusals named as such."""
    text = str(exc) or type(exc).__name__
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return (f"{endpoint}: its TLS certificate is not trusted ({seen.verify_message or seen}); "
                    "check cacert")
        if isinstance(seen, ssl.SSLError):
            reason = str(seen)
            if "ALERT" in reason.upper():
                return (f"{endpoint}: etcd refused our TLS client certificate ({reason}); check cert and key, "
                        "and that etcd's --trusted-ca-file signed it")
            return f"{endpoint}: TLS failed: {reason}"
        seen = seen.__cause__ or seen.__context__
    if "WRONG_VERSION_NUMBER" in text.upper() or "record layer failure" in text:
        return f"{endpoint}: not a TLS endpoint ({text}); use no cacert/cert/key for a plain http etcd"
    return f"{endpoint}: {type(exc).__name__}: {text}"


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


_KEEPALIVE_ROUNDS = 4  # rounds of streamed keepalives for the leases still unanswered, then one call each


class _TooLarge(Exception):
    """etcd refused a request as too large: too many operations in one txn, or too many bytes."""


def _json(resp: httpx.Response) -> dict[str, Any]:
    if not resp.content:
        return {}
    try:
        data = resp.json()
    except ValueError:
        return {"error": resp.text[:200]}
    return data if isinstance(data, dict) else {"error": str(data)[:200]}


def _json_text(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise StoreUnavailable(f"etcd answered something that is not JSON: {text[:200]!r}") from None
    if not isinstance(data, dict):
        raise StoreUnavailable(f"etcd answered {text[:200]!r}")
    return data


def _gateway_hint(message: str) -> str:
    if "CommonName of client" in message:
        return (f"{message} (etcd has client-cert-auth and RBAC on: its gateway accepts only client certificates "
                "without a CommonName; authenticate with user/password)")
    return message


class EtcdStore:
    def __init__(self, url: str, endpoints: list[str], prefix: str, timeout: float = 5.0,
                 access: EtcdAccess | None = None) -> None:
        self.url = redact_url(url)
        self.endpoints = endpoints
        self.prefix = prefix
        self._pre = prefix.encode()
        self._current = 0
        self._timeout = timeout
        self.access = access or EtcdAccess()
        self._ssl = self.access.ssl_context(self.url)
        verify: ssl.SSLContext | bool = self._ssl if self._ssl is not None else True
        self._verify = verify
        # as many kept-alive connections as concurrent callers are likely: past httpx's default (20) every
        # extra concurrent request opened and closed a connection of its own
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False, verify=verify,
                                         limits=httpx.Limits(max_connections=100, max_keepalive_connections=100))
        self._token: str | None = None  # etcd's auth token, when a user is set
        self._token_lock = asyncio.Lock()
        self._closed = False

    # --- transport -------------------------------------------------------------------------------------------

    async def _why(self, endpoint: str, exc: BaseException) -> str:
        """``_explain``, and over TLS, when the connection just broke: the server's own word on our certificate.
        A TLS 1.3 server checks the client certificate after the handshake and sends its alert then; when the
        request was still being written the alert is lost to a broken pipe, so a bare handshake asks again."""
        text = _explain(endpoint, exc)
        if self._ssl is None or "TLS" in text or isinstance(exc, httpx.ConnectError | httpx.TimeoutException):
            return text
        host, _, port = endpoint.removeprefix("https://").rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port), ssl=self._ssl), self._timeout)
        except (TimeoutError, OSError, ssl.SSLError) as probe:
            return _explain(endpoint, probe) if isinstance(probe, ssl.SSLError) else text
        try:
            await asyncio.wait_for(reader.read(1), 1.0)
        except ssl.SSLError as probe:
            return _explain(endpoint, probe)
        except (TimeoutError, OSError):
            return text  # no alert within a second: the certificate was accepted; the failure was elsewhere
        finally:
            writer.close()
        return text

    async def _auth_headers(self, renew_from: str | None = None) -> dict[str, str]:
        """``Authorization`` with a valid token (fetched first, or again when ``renew_from`` was refused)."""
        if self.access.user is None:
            return {}
        async with self._token_lock:
            if self._token is None or self._token == renew_from:
                self._token = await self._authenticate()
            return {"Authorization": self._token}

    async def _authenticate(self) -> str:
        errors = []
        n = len(self.endpoints)
        body = {"name": self.access.user, "password": self.access.password or ""}
        for attempt in range(n):
            endpoint = self.endpoints[(self._current + attempt) % n]
            try:
                resp = await self._client.post(endpoint + "/v3/auth/authenticate", json=body)
            except _TRANSPORT_ERRORS as exc:
                errors.append(await self._why(endpoint, exc))
                continue
            data: dict[str, Any] = _json(resp)
            if resp.status_code == 200 and data.get("token"):
                return str(data["token"])
            message = str(data.get("error") or data.get("message") or resp.text).strip()
            if "authentication failed" in message or "auth: " in message or "not enabled" in message:
                raise StoreUnavailable(f"etcd {endpoint} refused user {self.access.user!r}: {message}")
            errors.append(f"{endpoint}: {_gateway_hint(message)}")
        raise StoreUnavailable(f"etcd: could not authenticate as {self.access.user!r}: " + "; ".join(errors[-n:]))

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first member that answers; StoreUnavailable when none does."""
        return _json_text(await self._call_raw(path, json.dumps(body).encode()))

    async def _call_raw(self, path: str, content: bytes) -> str:
        """POST ``content`` (JSON, or several JSON documents one a line for a streaming call) to the first member
        that answers; the answer's text."""
        errors = []
        n = len(self.endpoints)
        headers = await self._auth_headers()
        renewed = False
        for attempt in range(max(3, n * 2)):  # a lone member gets three tries: a pooled connection may be stale
            endpoint = self.endpoints[(self._current + attempt) % n]
            try:
                resp = await self._client.post(endpoint + path, content=content,
                                               headers={**headers, "Content-Type": "application/json"})
            except _TRANSPORT_ERRORS as exc:
                errors.append(await self._why(endpoint, exc))
                await asyncio.sleep(0.01 * attempt)
                continue
            if resp.status_code != 200:
                data: dict[str, Any] = _json(resp)
                message = str(data.get("error") or data.get("message") or resp.text).strip()
                if "lease not found" in message:
                    raise _Gone(message)
                if "too many operations in txn request" in message or "request is too large" in message:
                    raise _TooLarge(message)
                if headers and not renewed and ("invalid auth token" in message or "user name is empty" in message):
                    headers = await self._auth_headers(renew_from=headers.get("Authorization"))
                    renewed = True  # the token expired (or etcd restarted): once more with a new one
                    continue
                if "permission denied" in message or "user name is empty" in message:
                    who = f"user {self.access.user!r}" if self.access.user else "no user (set etcd_user)"
                    raise StoreUnavailable(f"etcd {endpoint}{path}: {message} for {who}")
                if any(s in message for s in ("leader changed", "no leader", "timed out", "too many requests",
                                              "not capable")):
                    errors.append(f"{endpoint}: {message}")
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                raise StoreUnavailable(f"etcd {endpoint}{path}: {_gateway_hint(message)}")
            self._current = (self._current + attempt) % n
            return resp.text
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

    async def get_many(self, keys: Sequence[str]) -> list[KV | None]:
        """One txn of single-key ranges per 100 keys (etcd's --max-txn-ops defaults to 128); later chunks read at
        the first one's revision, so all are one snapshot."""
        out: list[KV | None] = []
        revision = 0
        for i in range(0, len(keys), 100):
            chunk = keys[i:i + 100]
            ranges = [{"request_range": {"key": _b64(self._key(k)), **({"revision": str(revision)} if revision
                                                                       else {})}} for k in chunk]
            data = await self._call("/v3/kv/txn", {"compare": [], "success": ranges})
            revision = revision or int(data["header"]["revision"])
            for answer in data.get("responses") or []:
                kvs = (answer.get("response_range") or {}).get("kvs") or []
                out.append(self._kv(kvs[0]) if kvs else None)
        if len(out) != len(keys):
            raise StoreUnavailable(f"etcd answered {len(out)} reads for {len(keys)} keys")
        return out

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
            except _TooLarge as exc:  # nothing was written; the caller may split what it asked
                if "request is too large" in str(exc):
                    size = len(json.dumps(body))
                    raise TxnTooLarge("txn", size, None, "etcd --max-request-bytes, 1.5 MiB by default",
                                      "bytes") from None
                count = max(len(body["compare"]), len(requests))
                raise TxnTooLarge("txn", count, None, "etcd --max-txn-ops, 128 by default") from None
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
        headers = await self._auth_headers()
        for attempt in range(n):
            endpoint = self.endpoints[(self._current + attempt) % n]
            try:
                async with httpx.AsyncClient(timeout=httpx.Timeout(self._timeout, read=None), trust_env=False,
                                             verify=self._verify) as client, \
                        client.stream("POST", endpoint + "/v3/watch", json=body, headers=headers) as stream:
                    if stream.status_code != 200:
                        text = (await stream.aread()).decode("utf-8", "replace")[:300]
                        if "invalid auth token" in text:
                            headers = await self._auth_headers(renew_from=headers.get("Authorization"))
                        errors.append(f"{endpoint}: HTTP {stream.status_code} {_gateway_hint(text.strip())}")
                        continue
                    async for line in stream.aiter_lines():
                        if not line.strip():
                            continue
                        msg = json.loads(line)
                        if "error" in msg:
                            error = msg["error"]
                            text = str(error.get("message") if isinstance(error, dict) else error)
                            if "invalid auth token" in text:  # the caller watches again: with a new token
                                await self._auth_headers(renew_from=headers.get("Authorization"))
                            raise StoreUnavailable(f"etcd watch {endpoint}: {_gateway_hint(text)}")
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
            except _TRANSPORT_ERRORS as exc:
                errors.append(await self._why(endpoint, exc))
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

    async def keepalive_many(self, leases: Sequence[int]) -> set[int]:
        """Streamed keepalive calls, 32 at a time: the gateway reads a stream of keepalive requests from one
        body (the gRPC call is a stream) and answers each on its own line; an unknown lease is answered without
        a TTL. The gateway ends its answer when the request's stream ends, often before every request was
        answered (17 of 200, on this machine; streams of 16 were always answered whole): the leases left
        unanswered are asked again in streams of 16, and any still unanswered after a few rounds one by one,
        so a live lease is never reported gone."""
        gone: set[int] = set()
        todo = list(dict.fromkeys(leases))
        answered: dict[int, int] = {}

        async def stream(chunk: Sequence[int]) -> None:
            body = "".join(json.dumps({"ID": str(lease)}) + "\n" for lease in chunk).encode()
            for line in (await self._call_raw("/v3/lease/keepalive", body)).splitlines():
                if line.strip():
                    result = json.loads(line).get("result") or {}
                    if int(result.get("ID", 0) or 0):
                        answered[int(result["ID"])] = int(result.get("TTL", 0) or 0)

        for size in (64, *([16] * (_KEEPALIVE_ROUNDS - 1))):
            if not todo:
                return gone
            chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
            for i in range(0, len(chunks), 32):
                await asyncio.gather(*(stream(chunk) for chunk in chunks[i:i + 32]))
            gone.update(lease for lease in todo if lease in answered and answered[lease] <= 0)
            todo = [lease for lease in todo if lease not in answered]

        async def one(lease: int) -> None:
            try:
                await self.keepalive(lease)
            except NotFound:
                gone.add(lease)

        for i in range(0, len(todo), 32):
            await asyncio.gather(*(one(lease) for lease in todo[i:i + 32]))
        return gone

    async def revoke_lease(self, lease: int) -> None:
        try:
            await self._call("/v3/lease/revoke", {"ID": str(lease)})
        except _Gone:
            pass

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()
