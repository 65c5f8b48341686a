"""The HAProxy model: what compose produces, render turns into haproxy.cfg and plan diffs against.

Two layers of a backend are kept apart on purpose:
- its *structure* (name, mode, balance, cookie, health check, natives, number of server slots), which only
  a reload can change, and
- its *membership* (what each slot points at, weight, admin state), which the Runtime API changes live.
``Config.structure_key()`` is the fingerprint plan compares to decide whether a reload is needed.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

from haplane.model.records import HealthCheck

ServerState = Literal["ready", "drain", "maint"]

# The address a free slot points at: loopback, a port nothing listens on, and the slot is in maintenance
# anyway (no traffic, no health checks) until the Runtime API fills it.
FREE_SLOT_ADDRESS = "127.0.0.1"
FREE_SLOT_PORT = 1


class Server(NamedTuple):
    """One server line (or slot). A NamedTuple, not a dataclass: configs hold 100,000 of them and this is
    several times cheaper to create."""

    name: str
    address: str
    port: int
    weight: int = 1
    state: ServerState = "ready"
    cookie: str | None = None
    check: bool = True
    instance: str | None = None  # the registry instance in this slot; None for a free slot
    zone: str | None = None
    version: str | None = None

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    @property
    def free(self) -> bool:
        return self.instance is None and self.state == "maint"


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    servers: tuple[Server, ...] = ()
    mode: str = "http"
    balance: str = "roundrobin"
    cookie: str | None = None  # sticky cookie name
    cookie_key: str | None = None  # set: dynamic cookies (a hash of key + server address), for slots
    health: HealthCheck | None = None  # the record's own value; None: a plain TCP connect check
    check_inter_ms: int = 2000
    host_header: str | None = None
    natives: tuple[str, ...] = ()
    slotted: bool = False  # servers are slots s1..sN filled through the Runtime API
    owner: str = ""  # who this came from, e.g. "service:app1" or "backend:live" (for quarantine)
    # a spare of a pool (``pool``: its profile's name): a backend rendered ahead of need, that a new service
    # fitting the profile takes at runtime (map entries and slots through the Runtime API, no reload)
    pool: str = ""
    # the service a spare holds (what status, the UI, metrics and the activity log show instead of ``name``)
    label: str = ""

    @property
    def shown(self) -> str:
        """The name operators know this backend by: the service a spare holds, else its HAProxy name."""
        return self.label or self.name

    @property
    def free_spare(self) -> bool:
        """A spare no service holds."""
        return bool(self.pool) and not self.label

    def structure(self) -> tuple[object, ...]:
        """Everything about this backend that only a reload can change (not ``owner``, ``pool``, ``label``: a
        spare taken by a service keeps the structure it had free)."""
        servers: tuple[object, ...]
        if self.slotted:
            servers = (len(self.servers),)
        else:
            servers = tuple((s.name, s.address, s.port, s.weight, s.state, s.cookie) for s in self.servers)
        return (self.name, self.mode, self.balance, self.cookie, self.cookie_key, self.health, self.check_inter_ms,
                self.host_header, self.natives, self.slotted, servers)


RouteKind = Literal["host", "path_prefix", "path", "path_beg", "path_reg", "url", "url_beg", "url_reg",
                    "hdr_dom", "hdr", "hdr_beg"]


@dataclass(frozen=True, slots=True)
class Route:
    """``use_backend <backend> if <acl>``; the ACL's name is derived from the route, never random, so the
    same data renders the same bytes."""

    backend: str
    kind: RouteKind
    value: str
    header: str = "host"
    owner: str = ""

    @property
    def acl_name(self) -> str:
        digest = hashlib.sha1(f"{self.kind}\0{self.header}\0{self.value}\0{self.backend}".encode()).hexdigest()
        return f"r_{self.backend}_{digest[:8]}"


def map_value(content: str, key: str) -> str | None:
    """The value of ``key`` in a map's content as compose writes it (``key value`` lines, keys without spaces),
    found without splitting the content into entries (a map holds an entry per service)."""
    at = 0
    if not content.startswith(key + " "):
        at = content.find("\n" + key + " ") + 1
        if at == 0:
            return None
    end = content.find("\n", at)
    return content[at + len(key) + 1:end if end >= 0 else len(content)]


def with_map_entries(content: str, changes: Mapping[str, str | None]) -> str:
    """A map's content (``key value`` lines sorted by key, one line per key, as compose writes it) with the
    entries of ``changes`` set (None: removed), still sorted: each found by bisection, so the Python work grows
    with the changes, not with the map."""
    lines = content.splitlines(keepends=True)
    for key, value in changes.items():
        i = bisect.bisect_left(lines, key, key=_map_line_key)
        present = i < len(lines) and _map_line_key(lines[i]) == key
        if value is None:
            if present:
                del lines[i]
        elif present:
            lines[i] = f"{key} {value}\n"
        else:
            lines.insert(i, f"{key} {value}\n")
    return "".join(lines)


def _map_line_key(line: str) -> str:
    return line.partition(" ")[0]


def path_map_key(prefix: str) -> str:
    """The path map's key for a path-prefix route: the prefix with one trailing ``/``. The lookup is the request's
    path with a ``/`` appended (``path,concat(/),map_beg(...)``), so ``/app`` matches ``/app`` and ``/app/...``
    but not ``/application``, exactly as the route's ACLs do."""
    return prefix.rstrip("/") + "/"


@dataclass(frozen=True, slots=True)
class Bind:
    address: str  # an IP or "*"
    port: int

    def render(self) -> str:
        if self.address == "*":
            return f"*:{self.port}"
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class EdgeTls:
    """HTTPS on a frontend: the TLS binds (certificates through a crt-list, the default certificate first), and
    the per-host policy through runtime maps (so a policy change, a new certificate or an ACME challenge never
    needs a reload): ``acme_map`` (token → key authorization, answered by HAProxy itself), ``policy_map`` (host →
    ``redirect`` | ``off``), ``hsts_map`` (host → max-age). ``https_port`` goes in redirect locations."""

    binds: tuple[Bind, ...]
    default_cert: str
    crt_list: str
    acme_map: str
    policy_map: str
    hsts_map: str
    https_port: int = 443
    alpn: str = "h2,http/1.1"


@dataclass(frozen=True, slots=True)
class BindTls:
    """TLS on every bind of a (Thalassa) frontend, with the certificates the main frontend's HTTPS serves: the
    default certificate first, then the crt-list (SNI picks; a certificate added at runtime is served on every
    bind that names the list). ``alpn`` is None in tcp mode (the bytes go to the server as they are)."""

    default_cert: str
    crt_list: str
    alpn: str | None = None


@dataclass(frozen=True, slots=True)
class ServedCert:
    """A certificate HAProxy serves through the crt-list: changed at runtime, never a reason to reload.
    ``path`` is the file HAProxy knows it by; ``pem`` the chain then the key; ``sha1`` the leaf's fingerprint as
    ``show ssl cert`` prints it (how the agent tells whether HAProxy holds this one)."""

    name: str
    path: str
    pem: str
    sha1: str
    hosts: tuple[str, ...] = ()
    not_after: float = 0.0

    def __repr__(self) -> str:  # never a key in a log line or a repr-based fingerprint
        return f"ServedCert({self.name!r}, {self.sha1})"


@dataclass(frozen=True, slots=True)
class Frontend:
    name: str
    binds: tuple[Bind, ...]
    mode: str = "http"
    default_backend: str | None = None
    keepalive: str = "default"
    routes: tuple[Route, ...] = ()
    natives: tuple[str, ...] = ()
    host_map: str | None = None  # route hosts through this map file (one lookup instead of N ACLs)
    # route path prefixes through this map file (``map_beg``: HAProxy's prefix tree picks the longest prefix,
    # whatever order the entries were added in); keys are ``path_map_key(prefix)``
    path_map: str | None = None
    owner: str = ""
    # (backend, its fallback): a request routed to the backend goes to the fallback while the backend has no
    # usable server (HSDO's dedicated-ASG mode, where HSDO left this wiring to the operator)
    fallbacks: tuple[tuple[str, str], ...] = ()
    tls: EdgeTls | None = None  # HTTPS binds and the per-host policy
    bind_tls: BindTls | None = None  # every bind of ``binds`` terminates TLS (a Thalassa frontend with tls: true)


@dataclass(frozen=True, slots=True)
class Globals:
    """The global and defaults sections. ``control_*`` lines come from the HAProxy adapter (sockets, state
    file); the rest are plain settings."""

    maxconn: int = 4096
    log_target: str | None = "127.0.0.1 local0"
    control_global: tuple[str, ...] = ()
    control_defaults: tuple[str, ...] = ()
    timeout_connect_ms: int = 5000
    timeout_client_ms: int = 50000
    timeout_server_ms: int = 50000
    stats_bind: Bind | None = None  # HAProxy's stats page and Prometheus exporter, if wanted
    stats_user: str | None = None  # basic auth of the above: user, and its crypt(3) hash
    stats_password_hash: str | None = None
    # TLS defaults of every HTTPS bind (ssl-default-bind-*), when any frontend has HTTPS
    tls_min_version: str | None = None
    tls_ciphers: str | None = None
    tls_ciphersuites: str | None = None


_ROUTING_MOD = 1 << 128


def _routing_digest(be: Backend) -> int:
    """One backend's share of ``Config.routing_key``: its whole content, slots included."""
    return int.from_bytes(hashlib.sha256(repr(be).encode()).digest()[:16], "big")


def _routing_front(config: Config) -> bytes:
    """The frontends' and the maps' share of ``Config.routing_key``."""
    frontends = [(f.name, f.mode, f.default_backend, f.keepalive, f.routes, f.natives) for f in config.frontends]
    maps = sorted(content for _name, content in config.maps)
    return hashlib.sha256(repr((frontends, maps)).encode()).digest()


@dataclass(frozen=True, slots=True)
class Config:
    frontends: tuple[Frontend, ...] = ()
    backends: tuple[Backend, ...] = ()
    globals: Globals = field(default_factory=Globals)
    maps: tuple[tuple[str, str], ...] = ()  # (file name, content) beside haproxy.cfg
    certificates: tuple[ServedCert, ...] = ()  # served through the crt-list; runtime-changeable
    # the pools that run low: (profile, spares free, spares in all); a reload refills them (not structure)
    pools_low: tuple[tuple[str, int, int], ...] = ()
    # computed once per config (a config holds 10,000 backends; the agent asks for these on every change)
    _key: str | None = field(default=None, init=False, repr=False, compare=False)
    _positions: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)
    _routing: tuple[bytes, int] | None = field(default=None, init=False, repr=False, compare=False)

    def _position(self, name: str) -> int | None:
        if self._positions is None:
            object.__setattr__(self, "_positions", {b.name: i for i, b in enumerate(self.backends)})
            assert self._positions is not None
        return self._positions.get(name)

    def names(self) -> Container[str]:
        """The names of its backends (``in`` is O(1))."""
        self._position("")
        assert self._positions is not None
        return self._positions.keys()

    def shown(self, name: str) -> str:
        """The name operators know HAProxy's backend ``name`` by (the service a spare holds)."""
        be = self.backend(name)
        return name if be is None else be.shown

    def backend(self, name: str) -> Backend | None:
        i = self._position(name)
        return None if i is None else self.backends[i]

    def with_backends(self, replaced: Mapping[str, Backend], maps: tuple[tuple[str, str], ...] | None = None,
                      pools_low: tuple[tuple[str, int, int], ...] | None = None) -> Config:
        """This config with the backends of the same names replaced (the others kept, in order), in time that
        grows with ``replaced``, not with the config: its structure key is carried over when no replaced backend
        changed its structure (membership alone), its routing key (updated) and its index of backends always.
        ``maps`` and ``pools_low`` given replace those too (runtime state: the structure key stays)."""
        backends = list(self.backends)
        same_structure = self._key is not None
        routing = self._routing
        for name, be in replaced.items():
            i = self._position(name)
            if i is None:
                raise KeyError(name)
            if same_structure and backends[i].structure() != be.structure():
                same_structure = False
            if routing is not None:
                routing = (routing[0], (routing[1] - _routing_digest(backends[i]) + _routing_digest(be)) % _ROUTING_MOD)
            backends[i] = be
        out = replace(self, backends=tuple(backends), maps=self.maps if maps is None else maps,
                      pools_low=self.pools_low if pools_low is None else pools_low)
        if routing is not None and out.maps != self.maps:
            routing = (_routing_front(out), routing[1])
        object.__setattr__(out, "_positions", self._positions)
        if same_structure:
            object.__setattr__(out, "_key", self._key)
        if routing is not None:
            object.__setattr__(out, "_routing", routing)
        return out

    def routing_key(self) -> str:
        """A fingerprint of how this config routes, without what differs between nodes by design (bind addresses
        and ports, global and control lines with local paths, the paths of map files): nodes that composed the
        same registry have the same key (``haplane status`` compares them). Computed once per config, and carried
        over by ``with_backends`` in time that grows with the replaced backends, not with the config: the
        backends' part is a sum of one digest each."""
        if self._routing is None:
            object.__setattr__(self, "_routing", (_routing_front(self),
                                                  sum(map(_routing_digest, self.backends)) % _ROUTING_MOD))
        assert self._routing is not None
        front, total = self._routing
        return hashlib.sha256(front + total.to_bytes(16, "big")).hexdigest()[:16]

    def structure_key(self) -> str:
        """A fingerprint of everything that needs a reload to change. Two configs with the same key differ
        only in what the Runtime API can change (slot contents, weights, states, map entries)."""
        if self._key is None:
            object.__setattr__(self, "_key", self._structure_key())
        assert self._key is not None
        return self._key

    def _structure_key(self) -> str:
        h = hashlib.sha256()
        h.update(repr(self.globals).encode())
        for fe in self.frontends:
            # with route maps, host and path routes live in the maps (runtime-changeable), not in fe.routes
            h.update(repr((fe.name, fe.binds, fe.mode, fe.default_backend, fe.keepalive, fe.routes, fe.natives,
                           fe.host_map, fe.path_map, fe.fallbacks) + ((fe.tls,) if fe.tls is not None else ())
                          + ((fe.bind_tls,) if fe.bind_tls is not None else ())).encode())
        for be in self.backends:
            h.update(repr(be.structure()).encode())
        return h.hexdigest()
