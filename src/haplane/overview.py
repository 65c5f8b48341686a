"""The overview: frontends → rules → backends → servers, as plain data for the web UI, ``haplane status`` and
/metrics. PURE: built from the desired model, the registry's records and (when there is one) what HAProxy
reports in ``show stat``; no I/O.

A server's ``state`` is what HAProxy does with it now (``up``, ``down``, ``draining``, ``maint``), or, when
HAProxy's view is not at hand, what the registry asks for (``ready``, ``drain``, ``maint``); ``weight`` is the
weight in force and ``target`` the one it ramps to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from haplane.model.haproxy import Backend, Config, Frontend, Route, Server
from haplane.model.records import Registry


class Row(Protocol):
    """What the overview reads of a ``show stat`` row (``StatRow`` and the sampler's ``LiveRow`` both fit)."""

    @property
    def status(self) -> str: ...
    @property
    def weight(self) -> int | None: ...
    @property
    def uweight(self) -> int | None: ...
    @property
    def scur(self) -> int: ...
    @property
    def stot(self) -> int: ...
    @property
    def check_status(self) -> str | None: ...


Rows = Mapping[tuple[str, str], Row]

ROUTE_WORDS = {"host": "host", "path_prefix": "path prefix"}


def server_state(status: str) -> str:
    """HAProxy's ``show stat`` status → up | down | draining | maint."""
    s = status.upper()
    if s.startswith("MAINT"):
        return "maint"
    if s.startswith("DRAIN") or s.startswith("NOLB"):
        return "draining"
    if s.startswith("DOWN"):
        return "down"
    return "up"


def _route(r: Route, config: Config) -> dict[str, Any]:
    kind = ROUTE_WORDS.get(r.kind, r.kind)
    if r.kind.startswith("hdr"):
        kind = f"{r.kind}({r.header})"
    return {"match": kind, "value": r.value, "backend": config.shown(r.backend)}


def _frontend(fe: Frontend, maps: Mapping[str, str], rows: Rows | None, config: Config) -> dict[str, Any]:
    rules = []
    if fe.host_map is not None:
        for line in maps.get(fe.host_map, "").splitlines():
            host, _, backend = line.partition(" ")
            if host:
                rules.append({"match": "host", "value": host, "backend": config.shown(backend)})
    if fe.path_map is not None:  # longest prefix first, as HAProxy picks
        prefixes = [line.partition(" ") for line in maps.get(fe.path_map, "").splitlines()]
        for prefix, _, backend in sorted(prefixes, key=lambda p: (-len(p[0]), p[0])):
            if prefix:
                rules.append({"match": ROUTE_WORDS["path_prefix"], "value": prefix,
                              "backend": config.shown(backend)})
    rules.extend(_route(r, config) for r in fe.routes)
    row = rows.get((fe.name, "FRONTEND")) if rows is not None else None
    return {"name": fe.name, "binds": [b.render() for b in fe.binds], "mode": fe.mode,
            "default_backend": fe.default_backend, "rules": rules,
            "status": row.status if row else None, "sessions": row.scur if row else None}


def _server(be: Backend, srv: Server, row: Row | None, service: str | None) -> dict[str, Any]:
    if row is not None:
        state = server_state(row.status)
        weight = row.uweight if row.uweight is not None else row.weight
        health = row.check_status or ("no check" if row.status.lower() == "no check" else None)
    else:
        state, weight, health = {"ready": "up", "drain": "draining", "maint": "maint"}[srv.state], None, None
    return {
        "name": srv.name, "instance": srv.instance, "service": service, "address": srv.endpoint,
        "state": state, "wanted": srv.state, "status": row.status if row else None, "health": health,
        "weight": weight, "target": srv.weight, "ramping": weight is not None and weight < srv.weight,
        "sessions": row.scur if row else None, "total": row.stot if row else None,
        "version": srv.version, "zone": srv.zone,
    }


def _backend_kind(be: Backend, registry: Registry) -> tuple[str, str | None, str | None]:
    """(kind, service followed, version followed)."""
    owner_kind, _, owner = be.owner.partition(":")
    if owner_kind == "service":
        # a service's second backend is its fallback, whatever its name (<service>_fallback, or HSDO's name)
        return ("fallback" if be.shown != owner else "service"), owner, None
    for spec in registry.backends:
        if spec.name == be.name:
            return spec.type, spec.service, spec.version
    return "static", None, None


Traffic = Mapping[tuple[str, str], Mapping[str, float | None]]


def health_of(servers: list[dict[str, Any]]) -> str:
    """A backend at a glance: ``ok``; ``degraded`` (a server down); ``down`` (servers, none up); ``empty``."""
    if not servers:
        return "empty"
    if not any(s["state"] == "up" for s in servers):
        return "down"
    return "degraded" if any(s["state"] == "down" for s in servers) else "ok"


def build(config: Config, registry: Registry, rows: Rows | None = None,
          quarantined: Mapping[str, str] | None = None, sampled_at: float | None = None,
          traffic: Traffic | None = None) -> dict[str, Any]:
    """The overview document (see the module docstring). ``rows``: ``show stat`` by (proxy, server);
    ``traffic``: current figures by (proxy, server or BACKEND): ``req`` and ``err`` per second, ``rtime`` (ms,
    HAProxy's average) and ``p95`` (ms, from the access log), each None when unknown."""
    maps = dict(config.maps)
    backends = []
    pools: dict[str, dict[str, Any]] = {}
    for be in config.backends:
        if be.pool:
            pool = pools.setdefault(be.pool, {"profile": be.pool, "balance": be.balance, "cookie": be.cookie,
                                              "check": be.health.path if be.health else None, "spares": 0,
                                              "free": 0, "held": []})
            pool["spares"] += 1
            if be.free_spare:  # a spare no service holds is not a backend anyone knows
                pool["free"] += 1
                continue
            pool["held"].append(be.label)
        kind, service, version = _backend_kind(be, registry)
        servers = []
        free = 0
        for srv in be.servers:
            if be.slotted and srv.instance is None:
                free += 1
                continue
            row = rows.get((be.name, srv.name)) if rows is not None else None
            servers.append(_server(be, srv, row, service))
            if traffic is not None:
                servers[-1]["traffic"] = dict(traffic.get((be.name, srv.name)) or {})
        row = rows.get((be.name, "BACKEND")) if rows is not None else None
        up = sum(1 for s in servers if s["state"] == "up")
        backends.append({
            "name": be.shown, "proxy": be.name, "kind": kind, "service": service, "version": version, "mode": be.mode,
            "balance": be.balance, "slots": len(be.servers) if be.slotted else None, "free_slots": free,
            "status": row.status if row else None, "sessions": row.scur if row else None,
            "servers_up": up, "servers_down": sum(1 for s in servers if s["state"] == "down"),
            "health": health_of(servers), "servers": servers, "owner": be.owner,
            "traffic": dict(traffic.get((be.name, "BACKEND")) or {}) if traffic is not None else None,
        })
    services = {s.name: s for s in registry.services}
    instances: dict[str, int] = {}
    for inst in registry.instances:
        instances[inst.service] = instances.get(inst.service, 0) + 1
    return {
        "revision": registry.revision,
        "live": rows is not None,
        "sampled_at": sampled_at,
        "frontends": [_frontend(fe, maps, rows, config) for fe in config.frontends],
        "backends": backends,
        "pools": sorted(pools.values(), key=lambda p: p["profile"]),
        "services": [{"name": n, "mode": s.mode, "predicate": s.predicate, "instances": instances.get(n, 0)}
                     for n, s in sorted(services.items())],
        "quarantined": dict(quarantined or {}),
        "waiting": waiting_for_services(registry),
    }


def waiting_for_services(registry: Registry) -> list[dict[str, Any]]:
    """Instances whose service is not defined (a watcher's ``--service X`` before ``X`` exists): they wait,
    unrouted, until the service is defined. One entry per service, with the sources that sent them."""
    # a dynamic backend (Thalassa) follows its service's instances without a service record
    defined = {s.name for s in registry.services} | {b.service for b in registry.backends if b.service}
    waiting: dict[str, dict[str, Any]] = {}
    for inst in registry.instances:
        if inst.service in defined:
            continue
        entry = waiting.setdefault(inst.service, {"service": inst.service, "instances": 0, "sources": set()})
        entry["instances"] += 1
        entry["sources"].add(inst.source or "api")
    return [{**e, "sources": sorted(e["sources"]), "message": waiting_message(e["service"], e["instances"])}
            for _, e in sorted(waiting.items())]


def waiting_message(service: str, count: int) -> str:
    return (f"{count} instance{'s' if count != 1 else ''} waiting for service {service} (define it: "
            f"PUT /services/{service}, or the watcher's --define mode=host,predicate=HOST)")


def servers_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every server of an overview document, each with its backend's name."""
    return [{**s, "backend": b["name"]} for b in doc.get("backends", []) for s in b.get("servers", [])]
