"""Registry records: what sources and the API write into the store, and what compose reads.

Each record is a frozen dataclass with ``from_dict(data, field)`` (validating, with field paths for
errors) and ``to_dict()`` (the JSON shape kept in the store and shown by the API). Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from haplane.errors import MISSING, BadRequest, ValidationError
from haplane.model import values as v

Mode = Literal["host", "path"]
AdminState = Literal["ready", "drain", "maint"]
TlsPolicy = Literal["off", "on", "redirect", "auto"]
TLS_POLICIES: tuple[TlsPolicy, ...] = ("off", "on", "redirect", "auto")
HSTS_MAX = 63_072_000  # two years, the most browsers' preload lists ask for


def _obj(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError(where or "body", data, "must be a JSON object")
    return data


def _opt(data: dict[str, Any], key: str) -> Any:
    value = data.get(key, MISSING)
    return MISSING if value is None else value


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _reject_unknown(data: dict[str, Any], known: set[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise ValidationError(_path(where, key), data[key], "is not a known field; expected one of: "
                                  + ", ".join(sorted(known)))


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """An HTTP health check. Thalassa's defaults: GET / HTTP/1.0 every 2000 ms."""

    method: str = "GET"
    path: str = "/"
    http_version: str = "HTTP/1.0"
    host: str | None = None
    interval_ms: int = 2000
    rise: int = 1
    fall: int = 2

    @classmethod
    def from_dict(cls, data: Any, where: str) -> HealthCheck:
        d = _obj(data, where)
        # Thalassa spells them uri/httpVersion/interval; haplane path/http_version/interval_ms.
        aliases = {"uri": "path", "httpVersion": "http_version", "interval": "interval_ms"}
        d = {aliases.get(k, k): val for k, val in d.items()}
        _reject_unknown(d, {"method", "path", "http_version", "host", "interval_ms", "rise", "fall"}, where)
        method = v.choice(d.get("method"), _path(where, "method"), v.HTTP_METHODS, "GET")
        path = v.path_prefix(d.get("path", "/"), _path(where, "path"))
        http_version = v.choice(d.get("http_version"), _path(where, "http_version"), v.HTTP_VERSIONS,
                                "HTTP/1.0")
        host = _opt(d, "host")
        host = None if host is MISSING else v.host_name(host, _path(where, "host"))
        if http_version == "HTTP/1.1" and host is None:
            raise BadRequest(_path(where, "host"), MISSING, "is required when http_version is HTTP/1.1 (here, or "
                             "as the backend's host, as Thalassa took it)")
        interval = v.milliseconds(d.get("interval_ms", 2000), _path(where, "interval_ms"))
        rise = v.integer(d.get("rise", 1), _path(where, "rise"), 1, 100)
        fall = v.integer(d.get("fall", 2), _path(where, "fall"), 1, 100)
        return cls(method, path, http_version, host, interval, rise, fall)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "http_version": self.http_version,
                "host": self.host, "interval_ms": self.interval_ms, "rise": self.rise, "fall": self.fall}

    def to_thalassa(self) -> dict[str, Any]:
        """Thalassa's spelling (uri, httpVersion, interval), for its backends."""
        return {"method": self.method, "uri": self.path, "httpVersion": self.http_version,
                "host": self.host, "interval": self.interval_ms, "rise": self.rise, "fall": self.fall}


def parse_tls(data: dict[str, Any], where: str, mode: str, predicate: str | None) -> tuple[TlsPolicy, int | None]:
    """A service's HTTPS policy: ``tls`` (off: plain HTTP only; on: both; redirect: plain HTTP answers 308 to
    HTTPS, ACME challenges excepted; auto: like redirect once a certificate covers the host, and haplane orders
    one from the ACME directory) and ``hsts`` (a max-age in seconds sent on HTTPS answers, or none)."""
    raw = data.get("tls")
    if isinstance(raw, bool):  # Traefik's tls=true
        raw = "on" if raw else "off"
    tls: TlsPolicy = v.choice(raw, _path(where, "tls"), TLS_POLICIES, "on")  # type: ignore[assignment]
    hsts_raw = _opt(data, "hsts")
    hsts = None if hsts_raw is MISSING else v.integer(hsts_raw, _path(where, "hsts"), 0, HSTS_MAX)
    if tls != "on" and mode != "host":
        raise BadRequest(_path(where, "tls"), tls, "needs mode host: the policy applies to a host name (a path "
                                                   "service shares its host with others)")
    if tls in ("redirect", "auto") and predicate is None:
        raise BadRequest(_path(where, "tls"), tls, "needs a predicate: the host name to redirect or to order a "
                                                   "certificate for")
    if hsts is not None and (mode != "host" or tls == "off"):
        raise BadRequest(_path(where, "hsts"), hsts, "needs mode host and tls on, redirect or auto")
    return tls, hsts


@dataclass(frozen=True, slots=True)
class Service:
    """A service: how requests reach it (mode + predicate), how its backend balances, and its HTTPS policy."""

    name: str
    mode: Mode = "host"
    predicate: str | None = None
    port: int | None = None
    cookie: str | None = None
    balance: str = "roundrobin"
    health: HealthCheck | None = None
    tls: TlsPolicy = "on"
    hsts: int | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "", name: str | None = None) -> Service:
        d = _obj(data, where)
        _reject_unknown(d, {"name", "mode", "predicate", "port", "cookie", "balance", "health", "tls", "hsts"},
                        where)
        svc_name = v.name(name if name is not None else d.get("name", MISSING), _path(where, "name"))
        mode: Mode = v.choice(d.get("mode"), _path(where, "mode"), ("host", "path"), "host")  # type: ignore[assignment]
        predicate = parse_predicate(mode, _opt(d, "predicate"), _path(where, "predicate"))
        tls, hsts = parse_tls(d, where, mode, predicate)
        return cls(
            name=svc_name,
            mode=mode,
            predicate=predicate,
            port=None if _opt(d, "port") is MISSING else v.port(d["port"], _path(where, "port")),
            cookie=None if _opt(d, "cookie") in (MISSING, "") else v.cookie_name(d["cookie"],
                                                                                 _path(where, "cookie")),
            balance=v.choice(d.get("balance"), _path(where, "balance"), v.BALANCE_ALGORITHMS, "roundrobin"),
            health=None if _opt(d, "health") is MISSING else HealthCheck.from_dict(d["health"],
                                                                                  _path(where, "health")),
            tls=tls,
            hsts=hsts,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "predicate": self.predicate, "port": self.port,
                "cookie": self.cookie, "balance": self.balance,
                "health": self.health.to_dict() if self.health else None, "tls": self.tls, "hsts": self.hsts}


def parse_predicate(mode: str, value: Any, where: str) -> str | None:
    if value is MISSING or value == "":
        return None
    if mode == "path":
        return v.path_prefix(value, where)
    return v.host_name(value, where)


@dataclass(frozen=True, slots=True)
class Instance:
    """One running instance of a service.

    ``slot`` is assigned by the registry when the instance is first written (lowest free slot of its
    service) and kept while its address stays (a move takes a new slot), so every HAProxy node puts it in
    the same server slot.
    ``source`` names the watcher that owns it (``PUT /sources/{source}/instances`` replaces exactly those).
    ``state`` is the operator's override (drain, maintenance); ``healthy`` is the source's own view
    (a Docker HEALTHCHECK): an unhealthy instance is not routable. ``weight_override`` is a weight the operator
    pinned (from the UI or the API): ``weight`` follows it. Both are the operator's, so a source re-sending its
    view (``replace_source``) keeps them; ``weight_override: null`` hands the weight back to the source.
    """

    id: str
    service: str
    address: str
    port: int
    weight: int = 10
    version: str | None = None
    zone: str | None = None
    group: str | None = None
    source: str | None = None
    slot: int = 0
    state: AdminState = "ready"
    healthy: bool = True
    ttl: float | None = None
    lease: int = 0
    weight_override: int | None = None
    registered: int = 0  # ms since the epoch when the registry first stored it (Thalassa's meta.registered)
    updated: int = 0  # ms since the epoch of the registry's last write of it (Thalassa's lastKnown)
    hostname: str | None = None  # the host it runs on, as its source knows it (Thalassa's meta.hostname)
    pid: int | None = None  # its process, when its source knows it (Thalassa's meta.pid)

    @classmethod
    def from_dict(cls, data: Any, where: str = "", *, service: str | None = None, id: str | None = None,
                  default_port: int | None = None) -> Instance:
        d = _obj(data, where)
        known = {"id", "service", "address", "port", "weight", "version", "zone", "group", "source", "slot",
                 "state", "healthy", "ttl", "lease", "weight_override", "registered", "updated", "hostname", "pid",
                 "meta"}
        _reject_unknown(d, known, where)
        meta = d.get("meta")  # Thalassa's registration shape: {"hostname", "pid", ...}
        if meta is not None and not isinstance(meta, dict):
            raise ValidationError(_path(where, "meta"), meta, "must be an object (hostname, pid)")
        meta = meta or {}
        hostname_raw = d.get("hostname", meta.get("hostname"))
        pid_raw = d.get("pid", meta.get("pid"))
        addr_raw = d.get("address", MISSING)
        port_raw = _opt(d, "port")
        port_default = default_port if port_raw is MISSING else v.port(port_raw, _path(where, "port"))
        address, port = v.address_port(addr_raw, _path(where, "address"), port_default)
        healthy = d.get("healthy", True)
        if not isinstance(healthy, bool):
            raise ValidationError(_path(where, "healthy"), healthy, "must be true or false")
        ttl = _opt(d, "ttl")
        override = _opt(d, "weight_override")
        weight_override = None if override is MISSING else v.weight(override, _path(where, "weight_override"))
        state: AdminState = v.choice(d.get("state"), _path(where, "state"), ("ready", "drain", "maint"),
                                     "ready")  # type: ignore[assignment]
        return cls(
            id=v.name(id if id is not None else d.get("id", MISSING), _path(where, "id")),
            service=v.name(service if service is not None else d.get("service", MISSING),
                           _path(where, "service")),
            address=address,
            port=port,
            weight=weight_override if weight_override is not None else v.weight(d.get("weight", 10),
                                                                                _path(where, "weight")),
            version=None if _opt(d, "version") is MISSING else v.version(d["version"], _path(where, "version")),
            zone=None if _opt(d, "zone") is MISSING else v.name(d["zone"], _path(where, "zone")),
            group=None if _opt(d, "group") is MISSING else v.name(d["group"], _path(where, "group")),
            source=None if _opt(d, "source") is MISSING else v.name(d["source"], _path(where, "source")),
            slot=v.integer(d.get("slot", 0), _path(where, "slot"), 0, 1_000_000),
            state=state,
            healthy=healthy,
            ttl=None if ttl is MISSING else v.seconds(ttl, _path(where, "ttl"), 1, 86400),
            lease=v.integer(d.get("lease", 0), _path(where, "lease"), 0, 2**63 - 1),
            weight_override=weight_override,
            registered=v.integer(d.get("registered") or 0, _path(where, "registered"), 0, 2**53),
            updated=v.integer(d.get("updated") or 0, _path(where, "updated"), 0, 2**53),
            hostname=None if hostname_raw in (None, "") else v.name(hostname_raw, _path(where, "hostname")),
            pid=None if pid_raw is None else v.integer(pid_raw, _path(where, "pid"), 0, 2**31),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "service": self.service, "address": self.address, "port": self.port,
                "weight": self.weight, "version": self.version, "zone": self.zone, "group": self.group,
                "source": self.source, "slot": self.slot, "state": self.state, "healthy": self.healthy,
                "ttl": self.ttl, "lease": self.lease, "weight_override": self.weight_override,
                "registered": self.registered, "updated": self.updated, "hostname": self.hostname, "pid": self.pid}

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    def with_slot(self, slot: int) -> Instance:
        return replace(self, slot=slot)


# --- Thalassa's frontends, rules and backends -------------------------------------------------------------

RULE_OPERATIONS: dict[str, tuple[str, ...]] = {
    "path": ("path", "path_beg", "path_reg"),
    "url": ("url", "url_beg", "url_reg"),
    "header": ("hdr_dom", "hdr", "hdr_beg"),
}


@dataclass(frozen=True, slots=True)
class Rule:
    type: str
    operation: str
    value: str
    backend: str
    header: str | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Rule:
        d = _obj(data, where)
        _reject_unknown(d, {"type", "operation", "value", "backend", "header"}, where)
        rtype = v.choice(d.get("type"), _path(where, "type"), tuple(RULE_OPERATIONS))
        op = v.choice(d.get("operation"), _path(where, "operation"), RULE_OPERATIONS[rtype])
        value_field = _path(where, "value")
        value = v.regex(d.get("value", MISSING), value_field) if op.endswith("_reg") else (
            v.match_value(d.get("value", MISSING), value_field))
        header = None
        if rtype == "header":
            header = v.header_name(d.get("header", "host"), _path(where, "header"))
        return cls(rtype, op, value, v.name(d.get("backend", MISSING), _path(where, "backend")), header)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "operation": self.operation, "value": self.value,
                             "backend": self.backend}
        if self.header is not None:
            d["header"] = self.header
        return d


def _natives(data: dict[str, Any], where: str, section: Literal["frontend", "backend"]) -> tuple[str, ...]:
    raw = data.get("natives", [])
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValidationError(_path(where, "natives"), raw, "must be a list of strings")
    return tuple(v.native_line(line, f"{_path(where, 'natives')}[{i}]", section) for i, line in enumerate(raw))


@dataclass(frozen=True, slots=True)
class FrontendSpec:
    name: str
    binds: tuple[tuple[str, int], ...]
    backend: str | None = None
    mode: str = "http"
    keepalive: str = "default"
    rules: tuple[Rule, ...] = ()
    natives: tuple[str, ...] = ()
    # haplane's addition to Thalassa's record: every bind terminates TLS with the certificates the agent serves
    # (its default certificate, then its crt-list: SNI picks), on the agents that have HTTPS on
    tls: bool = False

    @classmethod
    def from_dict(cls, data: Any, where: str = "", name: str | None = None) -> FrontendSpec:
        d = _obj(data, where)
        _reject_unknown(d, {"name", "key", "bind", "backend", "mode", "keepalive", "rules", "natives", "tls", "id",
                            "_type"}, where)
        # Thalassa names a frontend by "key" (its persistence file and request bodies); haplane by "name"
        fe_name = v.name(name if name is not None else d.get("name", d.get("key", MISSING)), _path(where, "name"))
        for alias in ("key", "name"):
            if alias in d and d[alias] != fe_name:
                raise ValidationError(_path(where, alias), d[alias], f"differs from the frontend's name {fe_name!r}")
        if "id" in d and d["id"] != f"frontend/{fe_name}":
            raise ValidationError(_path(where, "id"), d["id"], f"must be 'frontend/{fe_name}' (Thalassa's id)")
        bind_raw = d.get("bind", MISSING)
        if bind_raw is MISSING or not isinstance(bind_raw, str) or not bind_raw.strip():
            raise ValidationError(_path(where, "bind"), bind_raw, "must be a comma-separated list of "
                                  "ADDRESS:PORT ('*' for any address)")
        binds = tuple(v.ip_or_wildcard_bind(part, f"{_path(where, 'bind')}[{i}]")
                      for i, part in enumerate(bind_raw.split(",")))
        rules_raw = d.get("rules", [])
        if not isinstance(rules_raw, list):
            raise ValidationError(_path(where, "rules"), rules_raw, "must be a list")
        backend = _opt(d, "backend")
        tls = d.get("tls", False)
        if tls is None:
            tls = False
        if not isinstance(tls, bool):
            raise ValidationError(_path(where, "tls"), tls, "must be true (every bind terminates TLS with the "
                                  "certificates haplane serves) or false")
        return cls(
            name=fe_name,
            binds=binds,
            backend=None if backend is MISSING else v.name(backend, _path(where, "backend")),
            mode=v.choice(d.get("mode"), _path(where, "mode"), ("http", "tcp"), "http"),
            keepalive=v.choice(d.get("keepalive"), _path(where, "keepalive"),
                               ("default", "close", "server-close"), "default"),
            rules=tuple(Rule.from_dict(r, f"{_path(where, 'rules')}[{i}]") for i, r in enumerate(rules_raw)),
            natives=_natives(d, where, "frontend"),
            tls=tls,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": f"frontend/{self.name}", "_type": "frontend", "key": self.name, "name": self.name,
                             "bind": ",".join(f"{'[' + a + ']' if ':' in a else a}:{p}" for a, p in self.binds),
                             "backend": self.backend, "mode": self.mode, "keepalive": self.keepalive,
                             "rules": [r.to_dict() for r in self.rules], "natives": list(self.natives)}
        if self.tls:  # only when on: a frontend without it reads back exactly as Thalassa wrote it
            d["tls"] = True
        return d


@dataclass(frozen=True, slots=True)
class Member:
    host: str
    port: int
    port_text: bool = False  # the client sent the port as a string ("80"): Thalassa echoed it back as sent

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": str(self.port) if self.port_text else self.port}


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Thalassa's backend: ``static`` with its members, or ``dynamic`` following a service's name and
    version (its members are that service's instances of that version)."""

    name: str
    type: str = "static"
    service: str | None = None
    version: str | None = None
    balance: str = "roundrobin"
    host: str | None = None
    health: HealthCheck | None = None
    mode: str = "http"
    natives: tuple[str, ...] = ()
    members: tuple[Member, ...] = ()

    @classmethod
    def from_dict(cls, data: Any, where: str = "", name: str | None = None) -> BackendSpec:
        d = _obj(data, where)
        _reject_unknown(d, {"name", "key", "type", "service", "version", "balance", "host", "health", "mode",
                            "natives", "members", "id", "_type"}, where)
        be_name = v.name(name if name is not None else d.get("key", d.get("name", MISSING)),
                         _path(where, "name"))
        btype = v.choice(d.get("type"), _path(where, "type"), ("static", "dynamic"), "static")
        # Thalassa names the followed service "name"; haplane also accepts "service".
        name_is_service = name is not None or "key" in d
        service_raw = d.get("service", d.get("name") if name_is_service else MISSING)
        if service_raw is None:
            service_raw = MISSING
        service = version = None
        members: tuple[Member, ...] = ()
        if btype == "dynamic":
            service = v.name(service_raw, _path(where, "name"))
            version = v.version(d.get("version", MISSING), _path(where, "version"))
        else:
            raw = d.get("members", [])
            if not isinstance(raw, list):
                raise ValidationError(_path(where, "members"), raw, "must be a list")
            out = []
            for i, m in enumerate(raw):
                mw = f"{_path(where, 'members')}[{i}]"
                md = _obj(m, mw)
                host, port = v.address_port(md.get("host", MISSING), f"{mw}.host",
                                            None if md.get("port") is None else v.port(md["port"], f"{mw}.port"))
                out.append(Member(host, port, isinstance(md.get("port"), str)))
            members = tuple(out)
        host_raw = _opt(d, "host")
        backend_host = None if host_raw is MISSING else v.host_name(host_raw, _path(where, "host"))
        health_raw = _opt(d, "health")
        if isinstance(health_raw, dict) and backend_host is not None and health_raw.get("host") is None:
            # Thalassa's HTTP/1.1 check sent the backend's host (its only Host header setting)
            health_raw = {**health_raw, "host": backend_host}
        if "id" in d and d["id"] != f"backend/{be_name}":
            raise ValidationError(_path(where, "id"), d["id"], f"must be 'backend/{be_name}' (Thalassa's id)")
        return cls(
            name=be_name, type=btype, service=service, version=version,
            balance=v.choice(d.get("balance"), _path(where, "balance"), v.BALANCE_ALGORITHMS, "roundrobin"),
            host=backend_host,
            health=None if health_raw is MISSING else HealthCheck.from_dict(health_raw, _path(where, "health")),
            mode=v.choice(d.get("mode"), _path(where, "mode"), ("http", "tcp"), "http"),
            natives=_natives(d, where, "backend"),
            members=members,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"id": f"backend/{self.name}", "_type": "backend", "key": self.name, "type": self.type,
                "name": self.service, "version": self.version, "balance": self.balance, "host": self.host,
                "health": self.health.to_thalassa() if self.health else None, "mode": self.mode,
                "natives": list(self.natives), "members": [m.to_dict() for m in self.members]}


@dataclass(frozen=True, slots=True)
class RegistryCert:
    """A certificate of the registry, checked and paired with its key (``haplane.tls.records`` holds the stored
    shapes; the agent's mirror makes these): what compose needs to serve it."""

    name: str
    pem: str  # chain then key
    sha1: str  # the leaf's fingerprint, as HAProxy prints it
    hosts: tuple[str, ...] = ()
    not_after: float = 0.0

    def __repr__(self) -> str:  # never a key in a log line
        return f"RegistryCert({self.name!r}, {self.sha1})"

    def covers(self, host: str) -> bool:
        for name in self.hosts:
            if name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Registry:
    """Everything compose needs, read from the store at one revision."""

    services: tuple[Service, ...] = ()
    instances: tuple[Instance, ...] = ()
    frontends: tuple[FrontendSpec, ...] = ()
    backends: tuple[BackendSpec, ...] = ()
    revision: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    certificates: tuple[RegistryCert, ...] = ()
    challenges: tuple[tuple[str, str], ...] = ()  # ACME HTTP-01: (token, key authorization)
