"""The names haplane's records take in haproxy.cfg, who holds each, and how they normalise. PURE.

Records that never meet in the store meet in HAProxy: a service and a Thalassa backend both become a
``backend`` section; a Thalassa frontend sits beside haplane's own frontends; two services' routes share the
main frontend's router. Each record therefore *claims* names in a few spaces, and a name held by two owners is a
collision. The registry refuses a write whose claim another owner holds (409, naming that owner); compose, which
may still meet one (a store written by an older haplane, or by hand), keeps one owner by a stable rule and
reports the other (``collisions``), never dropping one in silence.

The spaces, and how a value is compared (as HAProxy will compare it):

- ``backend``: a service's backend (its name) and its fallback backend (``<name>_fallback``, or the name HSDO's
  settings gave it; claimed whether or not an agent focuses, since any agent may); a Thalassa backend's name.
  Exact (HAProxy's proxy names are case-sensitive).
- ``frontend``: a Thalassa frontend's name. haplane's own frontends (``http``, which carries the HTTPS binds
  too, and ``haplane_stats``) are reserved. Exact.
- ``host``: a host-mode service's host name: lower case, without a trailing dot (the router looks up the Host
  header lower-cased, its port cut off).
- ``path``: a path-mode service's prefix as the path map keys it (``model.haproxy.path_map_key``): ``api``,
  ``/api`` and ``/api/`` are one prefix; ``/API`` is another (paths are compared case-sensitively).

Who wins in compose: haplane's own names, then services, then Thalassa backends, then Thalassa frontends; within
a kind, the smaller name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from haplane.model.haproxy import path_map_key
from haplane.model.records import BackendSpec, FrontendSpec, Service

Space: TypeAlias = Literal["backend", "frontend", "host", "path"]

MAIN_FRONTEND = "http"  # the frontend every service is routed from (and HTTPS is bound to)
STATS_FRONTEND = "haplane_stats"
FALLBACK_SUFFIX = "_fallback"
HAPLANE = "haplane"  # the owner kind of haplane's own names
OWN_FRONTENDS: tuple[str, ...] = (MAIN_FRONTEND, STATS_FRONTEND)

_RANK = {HAPLANE: 0, "service": 1, "backend": 2, "frontend": 3}


@dataclass(frozen=True, slots=True, order=True)
class Claim:
    """A name a record takes: ``value`` in ``space``, from its field ``field`` (for the error that names it)."""

    space: Space
    value: str
    field: str = "name"


@dataclass(frozen=True, slots=True)
class Collision:
    """``loser`` claims what ``winner`` holds (owners are ``kind:name``, as compose's line owners)."""

    claim: Claim
    loser: str
    winner: str

    def __str__(self) -> str:
        return (f"{describe(self.loser)} claims {self.claim.space} {self.claim.value!r} ({self.claim.field}), "
                f"which {describe(self.winner)} holds: {describe(self.loser)} is left out")


def normalise_host(host: str) -> str:
    """A host name as the router compares it: lower case, no trailing dot."""
    return host[:-1].lower() if host.endswith(".") else host.lower()


def normalise_path(prefix: str) -> str:
    """A path prefix as the router compares it (the path map's key): a leading and one trailing ``/``, case
    kept."""
    return path_map_key(prefix if prefix.startswith("/") else "/" + prefix)


def fallback_of(service: str, fallback_names: Mapping[str, str] | None = None) -> str:
    """The name of a service's fallback backend."""
    return (fallback_names or {}).get(service, service + FALLBACK_SUFFIX)


def owner(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def describe(who: str) -> str:
    """An owner in words: ``service 'web'``, ``haplane's own frontend 'http'``."""
    kind, _, name = who.partition(":")
    if kind == HAPLANE:
        return f"haplane's own {name}"
    return f"{'Thalassa ' if kind in ('backend', 'frontend') else ''}{kind} {name!r}"


def rank(who: str) -> tuple[int, str]:
    """The order in which owners win a name: haplane's own, services, backends, frontends; then by name."""
    kind, _, name = who.partition(":")
    return _RANK.get(kind, 9), name


def service_claims(svc: Service, fallback_names: Mapping[str, str] | None = None) -> tuple[Claim, ...]:
    return _service_claims(svc.name, svc.mode, svc.predicate, fallback_names)


def _service_claims(name: str, mode: str, predicate: str | None, fallback_names: Mapping[str, str] | None
                    ) -> tuple[Claim, ...]:
    claims = [Claim("backend", name), Claim("backend", fallback_of(name, fallback_names))]
    if predicate:
        if mode == "path":
            claims.append(Claim("path", normalise_path(predicate), "predicate"))
        else:
            claims.append(Claim("host", normalise_host(predicate), "predicate"))
    return tuple(claims)


def stored_claims(kind: str, name: str, doc: Mapping[str, Any], fallback_names: Mapping[str, str] | None = None
                  ) -> tuple[str, tuple[Claim, ...]]:
    """The owner and claims of a record as the store keeps it (``to_dict``'s shape; ``kind`` and ``name`` from its
    key), without validating it again: the registry reads every record this way when another process has
    written since it last looked, so it must stay cheap (10,000 services)."""
    if kind == "service":
        predicate = doc.get("predicate")
        return owner(kind, name), _service_claims(name, str(doc.get("mode") or "host"),
                                                  predicate if isinstance(predicate, str) else None, fallback_names)
    return owner(kind, name), (Claim(kind, name),)  # type: ignore[arg-type]


def backend_claims(spec: BackendSpec) -> tuple[Claim, ...]:
    return (Claim("backend", spec.name),)


def frontend_claims(spec: FrontendSpec) -> tuple[Claim, ...]:
    return (Claim("frontend", spec.name),)


def claims_of(record: Service | BackendSpec | FrontendSpec, fallback_names: Mapping[str, str] | None = None
              ) -> tuple[str, tuple[Claim, ...]]:
    """The owner of a record and what it claims."""
    if isinstance(record, Service):
        return owner("service", record.name), service_claims(record, fallback_names)
    if isinstance(record, BackendSpec):
        return owner("backend", record.name), backend_claims(record)
    return owner("frontend", record.name), frontend_claims(record)


class Names:
    """Every name taken, and by whom: the index the registry checks a write against, and compose resolves
    collisions with. Built from records (``index``), kept current by ``hold``/``release``."""

    def __init__(self) -> None:
        self._holders: dict[tuple[Space, str], set[str]] = {}
        self._of: dict[str, tuple[Claim, ...]] = {}
        for fe in OWN_FRONTENDS:
            self.hold(owner(HAPLANE, f"frontend {fe!r}"), (Claim("frontend", fe),))

    def owners(self) -> list[str]:
        return list(self._of)

    def claims(self, who: str) -> tuple[Claim, ...]:
        return self._of.get(who, ())

    def hold(self, who: str, claims: Iterable[Claim]) -> None:
        """``who`` now claims exactly ``claims``."""
        if who in self._of:
            self.release(who)
        claims = tuple(claims)
        self._of[who] = claims
        for claim in claims:
            self._holders.setdefault((claim.space, claim.value), set()).add(who)

    def release(self, who: str) -> None:
        for claim in self._of.pop(who, ()):
            holders = self._holders.get((claim.space, claim.value))
            if holders is not None:
                holders.discard(who)
                if not holders:
                    del self._holders[(claim.space, claim.value)]

    def holders(self, claim: Claim) -> set[str]:
        """Everyone who holds ``claim``."""
        return set(self._holders.get((claim.space, claim.value), ()))

    def taken(self, who: str, claims: Iterable[Claim]) -> tuple[Claim, str] | None:
        """The first of ``claims`` another owner holds, and that owner (the one that would win); else None."""
        for claim in claims:
            others = self.holders(claim) - {who}
            if others:
                return claim, min(others, key=rank)
        return None


def index(services: Iterable[Service] = (), backends: Iterable[BackendSpec] = (),
          frontends: Iterable[FrontendSpec] = (), fallback_names: Mapping[str, str] | None = None) -> Names:
    """The names the records take (a collision already among them is kept: every holder is listed)."""
    names = Names()
    records: list[Service | BackendSpec | FrontendSpec] = [*services, *backends, *frontends]
    for record in records:
        who, claims = claims_of(record, fallback_names)
        names.hold(who, claims)
    return names


def collisions(services: Iterable[Service] = (), backends: Iterable[BackendSpec] = (),
               frontends: Iterable[FrontendSpec] = (), fallback_names: Mapping[str, str] | None = None,
               fallbacks: bool = True) -> list[Collision]:
    """Every claim a record loses. Backend and frontend names first, in ``rank`` order: an owner takes its names
    unless an owner ranked before it (and not itself left out) holds one, else it is left out whole. Then the
    routes of the services kept, in the router's order (``compose.order_routes``: hosts by service name, path
    prefixes longest first as written, then by name): of two services with one host or prefix the first keeps
    the route, and the other keeps its backend without it. ``fallbacks`` False: no agent focuses, so fallback
    backends are not claimed. Deterministic: the same records give the same answer in any order."""
    records: list[tuple[str, tuple[Claim, ...], tuple[int, str]]] = []
    every: list[Service | BackendSpec | FrontendSpec] = [*services, *backends, *frontends]
    for record in every:
        who, claims = claims_of(record, fallback_names)
        route_order = (0, record.name)
        if isinstance(record, Service):
            if not fallbacks:
                claims = tuple(c for c in claims if not (c.space == "backend" and c.value != record.name))
            if record.mode == "path" and record.predicate is not None:
                route_order = (-len(record.predicate), record.name)
        records.append((who, claims, route_order))
    held = Names()
    out: list[Collision] = []
    kept: list[tuple[tuple[int, str], str, list[Claim]]] = []
    for who, claims, route_order in sorted(records, key=lambda r: rank(r[0])):
        names = [c for c in claims if c.space in ("backend", "frontend")]
        hit = next(((c, w) for c in names for w in [held.taken(who, (c,))] if w is not None), None)
        if hit is not None:
            out.append(Collision(hit[0], who, hit[1][1]))
            continue
        held.hold(who, names)
        kept.append((route_order, who, [c for c in claims if c.space in ("host", "path")]))
    routes = Names()
    for _order, who, route_claims in sorted(kept):
        for claim in route_claims:
            winner = routes.taken(who, (claim,))
            if winner is not None:
                out.append(Collision(claim, who, winner[1]))
        routes.hold(who, [c for c in route_claims if routes.taken(who, (c,)) is None])
    return out
