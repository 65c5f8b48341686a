"""A stand-in for Consul's HTTP API, shipped beside the real thing as a public fake (like ``haplane.testing``).

It serves the two read endpoints haplane's Consul source needs, in the shapes Consul documents
(developer.hashicorp.com/consul/api-docs/health and /catalog), with blocking queries:

- ``GET /v1/health/service/:service[?passing=true][&tag=T][&index=N&wait=D]`` — ``[{"Node", "Service", "Checks"}]``
- ``GET /v1/catalog/service/:service[?tag=T][&index=N&wait=D]`` — flat ``[{"Node", "Address", "ServiceID", ...}]``
- ``GET /v1/catalog/services[?index=N&wait=D]`` — ``{"service": ["tag", ...]}`` (the catalog's index)

Blocking queries as Consul documents them: with ``index=N`` the answer waits until the service's index differs from N
(greater, or lower after ``reset_index``) or ``wait`` (default 5m, at most 10m; ``10s``/``500ms``/``1m`` forms) runs
out, then answers with the current data. Every answer carries ``X-Consul-Index`` (the service's ModifyIndex; at least
1), ``X-Consul-KnownLeader: true`` and ``X-Consul-LastContact: 0``. An unknown service is ``[]`` with an index.

Tests drive it directly: ``register(...)``, ``set_check(...)``, ``deregister(...)``, and ``reset_index(n)`` to
make the index go backwards (as after a Consul snapshot restore).

As a production Consul is run: ``ssl_context`` serves HTTPS (demanding client certificates if the context
says so, like Consul's ``verify_incoming``); ``acl_token`` turns on ACLs with ``default_policy = deny`` as
Consul's docs describe them for these read endpoints: the token (``X-Consul-Token`` header or ``?token=``)
sees everything; an unknown token gets ``403 ACL not found``; no token is the anonymous token, whose answers
are filtered to nothing with ``X-Consul-Results-Filtered-By-ACLs: true``.

It is NOT Consul: no agents, no raft, no policies beyond that one token, no datacenters (``dc`` is accepted and
ignored), no ``filter`` expressions. Runs a ThreadingHTTPServer in a daemon thread; listen on loopback only.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["ConsulStandIn", "parse_wait"]

MAX_WAIT = 600.0
DEFAULT_WAIT = 300.0


def parse_wait(text: str) -> float:
    """Consul's duration form for ``wait``: ``10s``, ``500ms``, ``2m``, ``1h``; a bare number is seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise ValueError(f"invalid wait {text!r}")
    value = float(m.group(1))
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]
    return min(MAX_WAIT, value * unit)


@dataclass
class _Entry:
    node: str
    node_address: str
    service_id: str
    service: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    status: str  # of the service's check: passing | warning | critical
    create_index: int
    modify_index: int
    node_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class ConsulStandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, datacenter: str = "dc1", *,
                 ssl_context: ssl.SSLContext | None = None, acl_token: str | None = None) -> None:
        self.datacenter = datacenter
        self.acl_token = acl_token
        self._entries: dict[tuple[str, str], _Entry] = {}  # (node, service id) -> entry
        self._index = 1  # raft index: every write bumps it
        self._service_index: dict[str, int] = {}  # service -> ModifyIndex of its last change
        self._cond = threading.Condition()
        self._stopped = False
        self.requests: list[str] = []  # paths with query strings, in order (for tests)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        if ssl_context is not None:
            # the handshake runs in each request's thread (on first read), so a refused client blocks nobody
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True,
                                                          do_handshake_on_connect=False)
            self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        scheme = "https" if ssl_context is not None else "http"
        self.address = f"{scheme}://{host}:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> ConsulStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="consul-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop like a dying server: held blocking queries are cut off without an answer."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ConsulStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests do ------------------------------------------------------------------------------------------

    def register(self, service: str, address: str, port: int, *, service_id: str | None = None,
                 node: str = "node1", node_address: str = "127.0.0.1", tags: list[str] | None = None,
                 meta: dict[str, str] | None = None, status: str = "passing") -> str:
        """Register (or update) a service instance on ``node`` (catalog register + one service check)."""
        sid = service_id or service
        with self._cond:
            self._index += 1
            old = self._entries.get((node, sid))
            self._entries[(node, sid)] = _Entry(
                node, node_address, sid, service, address, port, list(tags or []), dict(meta or {}), status,
                old.create_index if old else self._index, self._index,
                node_id=old.node_id if old else str(uuid.uuid4()))
            self._touch(service, old.service if old else None)
        return sid

    def set_check(self, service_id: str, status: str, node: str = "node1") -> None:
        """Set the status of the instance's service check: passing, warning or critical."""
        if status not in ("passing", "warning", "critical"):
            raise ValueError(f"status {status!r}: expected passing, warning or critical")
        with self._cond:
            e = self._entries[(node, service_id)]
            self._index += 1
            e.status = status
            e.modify_index = self._index
            self._touch(e.service)

    def deregister(self, service_id: str, node: str = "node1") -> None:
        with self._cond:
            e = self._entries.pop((node, service_id))
            self._index += 1
            self._touch(e.service)

    def reset_index(self, to: int = 1) -> None:
        """Make every index go backwards (Consul after a snapshot restore or a server reset)."""
        with self._cond:
            self._index = to
            for svc in self._service_index:
                self._service_index[svc] = to
            self._cond.notify_all()

    def index(self, service: str) -> int:
        with self._cond:
            return max(1, self._service_index.get(service, self._index))

    def _touch(self, *services: str | None) -> None:
        for svc in services:
            if svc:
                self._service_index[svc] = self._index
        self._cond.notify_all()

    # --- HTTP ---------------------------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        self.requests.append(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if url.path == "/v1/catalog/services":
            self._services(h, query)
            return
        m = re.fullmatch(r"/v1/(health|catalog)/service/([^/]+)", url.path)
        if m is None:
            self._send(h, 404, b"404 page not found\n", "text/plain; charset=utf-8", None)
            return
        kind, service = m.group(1), unquote(m.group(2))
        token = h.headers.get("X-Consul-Token") or query.get("token") or ""
        hidden = False  # the anonymous token under default_policy = deny: answers filtered to nothing
        if self.acl_token is not None and token != self.acl_token:
            if token:
                self._send(h, 403, b"ACL not found", "text/plain; charset=utf-8", None)
                return
            hidden = True
        block = self._blocking_query(h, query)
        if block is None:
            return
        with self._cond:
            if not self._waited(h, *block, lambda: self.index(service)):
                return
            entries = [e for e in self._entries.values() if e.service == service]
            index = self.index(service)
            entries.sort(key=lambda e: (e.node, e.service_id))
            tag = query.get("tag")
            if tag is not None:
                entries = [e for e in entries if tag in e.tags]
            passing = query.get("passing") is not None and query.get("passing") not in ("false", "0")
            if kind == "health" and passing:
                entries = [e for e in entries if e.status == "passing"]
            filtered = hidden and bool(entries)
            if hidden:
                entries = []
            if kind == "health":
                body = [self._health_entry(e) for e in entries]
            else:
                body = [self._catalog_entry(e) for e in entries]
        self._send(h, 200, json.dumps(body).encode(), "application/json", index, filtered)

    def _services(self, h: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        """``GET /v1/catalog/services``: every service with the union of its instances' tags, ``{name: [tags]}``;
        a blocking query waits for any catalog change (its index is the catalog's, the last raft index)."""
        block = self._blocking_query(h, query)
        if block is None:
            return
        with self._cond:
            if not self._waited(h, *block, lambda: max(1, self._index)):
                return
            services: dict[str, list[str]] = {}
            for e in self._entries.values():
                tags = services.setdefault(e.service, [])
                tags.extend(t for t in e.tags if t not in tags)
            index = max(1, self._index)
        self._send(h, 200, json.dumps(dict(sorted(services.items()))).encode(), "application/json", index)

    def _blocking_query(self, h: BaseHTTPRequestHandler, query: dict[str, str]) -> tuple[float, int] | None:
        """A blocking query's deadline and index (``?wait=D&index=N``), or None once a 400 is sent for them."""
        try:
            wait = parse_wait(query["wait"]) if "wait" in query else DEFAULT_WAIT
            want = int(query["index"]) if query.get("index") else 0
        except ValueError as exc:
            self._send(h, 400, f"{exc}\n".encode(), "text/plain; charset=utf-8", None)
            return None
        return time.monotonic() + wait, want

    def _waited(self, h: BaseHTTPRequestHandler, deadline: float, want: int, current: Callable[[], int]) -> bool:
        """Holding ``self._cond``: wait while ``current()`` is still ``want`` (any other index, lower too, is a
        change) and the deadline is ahead. False when the stand-in stopped meanwhile (the connection is closed)."""
        if want > 0:
            while current() == want and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        if self._stopped:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return False
        return True

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, index: int | None,
              filtered: bool = False) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        if filtered:
            h.send_header("X-Consul-Results-Filtered-By-Acls", "true")
        if index is not None:
            h.send_header("X-Consul-Index", str(index))
            h.send_header("X-Consul-Knownleader", "true")
            h.send_header("X-Consul-Lastcontact", "0")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _node(self, e: _Entry) -> dict[str, Any]:
        return {"ID": e.node_id, "Node": e.node, "Address": e.node_address, "Datacenter": self.datacenter,
                "TaggedAddresses": {"lan": e.node_address, "wan": e.node_address}, "Meta": {},
                "CreateIndex": e.create_index, "ModifyIndex": e.create_index}

    def _health_entry(self, e: _Entry) -> dict[str, Any]:
        service = {"ID": e.service_id, "Service": e.service, "Tags": list(e.tags), "Address": e.address,
                   "TaggedAddresses": {}, "Meta": dict(e.meta), "Port": e.port,
                   "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False, "Proxy": {},
                   "Connect": {}, "Namespace": "default", "CreateIndex": e.create_index,
                   "ModifyIndex": e.modify_index}
        checks = [
            {"Node": e.node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
             "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "",
             "ServiceTags": [], "Type": "", "Namespace": "default", "CreateIndex": e.create_index,
             "ModifyIndex": e.create_index},
            {"Node": e.node, "CheckID": f"service:{e.service_id}", "Name": f"Service '{e.service}' check",
             "Status": e.status, "Notes": "", "Output": "", "ServiceID": e.service_id, "ServiceName": e.service,
             "ServiceTags": list(e.tags), "Type": "http", "Namespace": "default", "CreateIndex": e.create_index,
             "ModifyIndex": e.modify_index},
        ]
        return {"Node": self._node(e), "Service": service, "Checks": checks}

    def _catalog_entry(self, e: _Entry) -> dict[str, Any]:
        return {"ID": e.node_id, "Node": e.node, "Address": e.node_address, "Datacenter": self.datacenter,
                "TaggedAddresses": {"lan": e.node_address, "wan": e.node_address}, "NodeMeta": {},
                "ServiceID": e.service_id, "ServiceName": e.service, "ServiceTags": list(e.tags),
                "ServiceAddress": e.address, "ServiceTaggedAddresses": {}, "ServiceWeights": {"Passing": 1,
                                                                                               "Warning": 1},
                "ServiceMeta": dict(e.meta), "ServicePort": e.port, "ServiceEnableTagOverride": False,
                "ServiceProxy": {}, "ServiceConnect": {}, "Namespace": "default",
                "CreateIndex": e.create_index, "ModifyIndex": e.modify_index}
