"""A Lambda-Registry payload and what it does to its table: stored table + payload → new table. PURE.

``parse_payload`` validates a ``/generate`` body; ``merge_payload`` applies it to the table's stored services
(``tables.py`` reads and writes them; ``compose.compose_table`` turns a table into a config).

The payload is Lambda-Registry's ``{table, running, candidates}``. Per table (Lambda-Registry's rules, with
its known bugs fixed — see ``merge_payload``):
- a candidate for a service the table does not hold yet is stored as given; its servers are its containers;
- a stored service stays while at least one ``running`` entry names it; its servers are its stored containers
  still running, then its candidates' containers, then its ``running`` entries (first occurrence wins);
- a stored service no ``running`` entry names is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from haplane.compose import Container, TableService
from haplane.errors import MISSING, ValidationError
from haplane.model import values as v
from haplane.model.change import Change
from haplane.model.records import Service, parse_predicate


@dataclass(frozen=True, slots=True)
class RawContainer:
    id: str
    address: str
    port: int | None
    field: str  # where it came from, for errors raised when its port is resolved


@dataclass(frozen=True, slots=True)
class Candidate:
    service: str
    mode: str
    predicate: str | None
    cookie: str | None
    port: int | None
    containers: tuple[RawContainer, ...]
    given: frozenset[str]  # which of mode/predicate/cookie/port the payload actually set


@dataclass(frozen=True, slots=True)
class Running:
    service: str
    container: RawContainer


@dataclass(frozen=True, slots=True)
class Payload:
    table: str
    running: tuple[Running, ...]
    candidates: tuple[Candidate, ...]


def _list(data: dict[str, Any], key: str) -> list[Any]:
    raw = data.get(key)
    if raw is None:  # Lambda-Registry crashed here, losing every stop event; absent means empty
        return []
    if not isinstance(raw, list):
        raise ValidationError(key, raw, "must be a list")
    return raw


def _raw_container(data: Any, where: str) -> RawContainer:
    if not isinstance(data, dict):
        raise ValidationError(where, data, "must be an object with id and ip")
    cid = v.name(data.get("id", MISSING), f"{where}.id")
    ip = data.get("ip", MISSING)
    port_given = data.get("port")
    addr, port = v.address_port(ip, f"{where}.ip", 0)  # port 0: the ip carried none
    explicit_port: int | None = port if port else None
    if port_given is not None and explicit_port is None:
        explicit_port = v.port(port_given, f"{where}.port")
    return RawContainer(cid, addr, explicit_port, f"{where}.ip")


def parse_payload(data: Any) -> Payload:
    """Validate a whole payload; the first bad value raises, naming its field."""
    if not isinstance(data, dict):
        raise ValidationError("payload", data, "must be a JSON object with table, running and candidates")
    table = v.name(data.get("table") or "default", "table")
    running = []
    for i, r in enumerate(_list(data, "running")):
        where = f"running[{i}]"
        if not isinstance(r, dict):
            raise ValidationError(where, r, "must be an object with serviceName, id and ip")
        running.append(Running(v.name(r.get("serviceName", MISSING), f"{where}.serviceName"),
                               _raw_container(r, where)))
    candidates = []
    for i, c in enumerate(_list(data, "candidates")):
        where = f"candidates[{i}]"
        if not isinstance(c, dict):
            raise ValidationError(where, c, "must be an object")
        given = frozenset(k for k, key in (("mode", "configMode"), ("predicate", "predicate"),
                                           ("cookie", "cookie"), ("port", "port"))
                          if c.get(key) not in (None, ""))
        mode = v.choice(c.get("configMode"), f"{where}.configMode", ("host", "path"), "host")
        containers_raw = c.get("containers") or []
        if not isinstance(containers_raw, list):
            raise ValidationError(f"{where}.containers", containers_raw, "must be a list")
        candidates.append(Candidate(
            service=v.name(c.get("serviceName", MISSING), f"{where}.serviceName"),
            mode=mode,
            predicate=parse_predicate(mode, c.get("predicate") or MISSING, f"{where}.predicate"),
            cookie=None if not c.get("cookie") else v.cookie_name(c["cookie"], f"{where}.cookie"),
            port=None if c.get("port") is None else v.port(c["port"], f"{where}.port"),
            containers=tuple(_raw_container(x, f"{where}.containers[{j}]")
                             for j, x in enumerate(containers_raw)),
            given=given,
        ))
    return Payload(table, tuple(running), tuple(candidates))


def _resolve(raw: RawContainer, service: Service) -> Container:
    port = raw.port or service.port
    if port is None:
        raise ValidationError(raw.field, raw.address, f"has no port, and service {service.name!r} has none")
    return Container(raw.id, raw.address, port, raw.port is not None)


def _follow(c: Container, svc: Service) -> Container:
    """A stored container whose port came from its service takes the service's port as it is now."""
    if c.own_port or svc.port is None or c.port == svc.port:
        return c
    return Container(c.id, c.address, svc.port, False)


def _dedupe(containers: list[Container]) -> tuple[Container, ...]:
    seen: set[str] = set()
    out = []
    for c in containers:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return tuple(out)


def merge_payload(payload: Payload, stored: dict[str, TableService]) -> tuple[dict[str, TableService], list[Change]]:
    """The table after ``payload``, and what changed.

    Fixed from Lambda-Registry: every stored service is considered (it processed only the first); a
    candidate's mode, predicate, cookie or port replace the stored ones (it ignored them until the service
    died), and a new port applies to the stored containers that took the service's port; ``configMode``
    defaults to host; missing lists mean empty; a path predicate's '/' is not doubled.
    """
    running_ids = {r.container.id for r in payload.running}
    running_by_service: dict[str, list[RawContainer]] = {}
    for r in payload.running:
        running_by_service.setdefault(r.service, []).append(r.container)
    cands_by_service: dict[str, list[Candidate]] = {}
    for c in payload.candidates:
        cands_by_service.setdefault(c.service, []).append(c)

    result: dict[str, TableService] = {}
    changes: list[Change] = []
    names = list(stored) + [n for n in cands_by_service if n not in stored]
    for name in names:
        old = stored.get(name)
        cands = cands_by_service.get(name, [])
        if old is None:
            first = cands[0]
            svc = Service(name, first.mode, first.predicate, first.port, first.cookie)  # type: ignore[arg-type]
            for later in cands[1:]:
                svc = _apply_candidate(svc, later)
            containers = _dedupe([_resolve(x, svc) for c in cands for x in c.containers])
            result[name] = TableService(svc, containers)
            changes.append(Change("service-add", f"service:{name}", "new candidate in the payload",
                                  {"table": payload.table, "servers": [c.id for c in containers]}))
            continue
        if name not in running_by_service:
            changes.append(Change("service-remove", f"service:{name}", "no running container names it",
                                  {"table": payload.table}))
            continue
        svc = old.service
        for c in cands:
            svc = _apply_candidate(svc, c)
        # a candidate's new port applies to the containers already stored (Lambda-Registry kept the old one)
        containers = _dedupe([_follow(c, svc) for c in old.containers if c.id in running_ids]
                             + [_resolve(x, svc) for c in cands for x in c.containers]
                             + [_resolve(x, svc) for x in running_by_service[name]])
        new = TableService(svc, containers)
        result[name] = new
        if new != old:
            changes.append(Change("service-update", f"service:{name}", "payload changed its servers or routing",
                                  {"table": payload.table, "servers": [c.id for c in containers]}))
    return result, changes


def _apply_candidate(svc: Service, c: Candidate) -> Service:
    return Service(
        svc.name,
        c.mode if "mode" in c.given else svc.mode,  # type: ignore[arg-type]
        c.predicate if "predicate" in c.given or "mode" in c.given else svc.predicate,
        c.port if "port" in c.given else svc.port,
        c.cookie if "cookie" in c.given else svc.cookie,
        svc.balance,
        svc.health,
    )


def table_service_to_dict(ts: TableService) -> dict[str, Any]:
    return {"service": ts.service.to_dict(),
            "containers": [{"id": c.id, "address": c.address, "port": c.port, "own_port": c.own_port}
                           for c in ts.containers]}


def table_service_from_dict(data: dict[str, Any]) -> TableService:
    svc = Service.from_dict(data["service"], "service")
    # a record written before own_port was kept: a port equal to the service's was the service's
    return TableService(svc, tuple(Container(c["id"], c["address"], int(c["port"]),
                                             bool(c.get("own_port", int(c["port"]) != svc.port)))
                                   for c in data.get("containers", [])))
