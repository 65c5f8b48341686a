"""Compose: registry records → the desired HAProxy model. PURE: no I/O, no clock.

Two entry points:
- ``compose(registry, options)`` for the agent: one slotted backend per service (server slots filled through
  the Runtime API), Thalassa frontends and backends, focus/fallback backends, host and path-prefix routing through maps
  (an added, moved or removed route is a map entry, not a reload).
- ``compose_table(services, options)`` for Lambda-Registry's ``/generate``: one backend per stored service
  with one explicit ``server`` line per container, as Lambda-Registry rendered it (but with per-server cookies).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container as Names
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from haplane.model.haproxy import (
    FREE_SLOT_ADDRESS,
    FREE_SLOT_PORT,
    Backend,
    Bind,
    BindTls,
    Config,
    EdgeTls,
    Frontend,
    Globals,
    Route,
    ServedCert,
    Server,
    path_map_key,
)
from haplane.model.names import FALLBACK_SUFFIX, MAIN_FRONTEND, Collision, collisions, owner
from haplane.model.records import (
    BackendSpec,
    FrontendSpec,
    HealthCheck,
    Instance,
    Registry,
    RegistryCert,
    Service,
)

SPARE_PREFIX = "_pool"  # spares are _pool<profile>_<n>: a leading "_" no service or backend name may have


@dataclass(frozen=True, slots=True)
class PoolProfile:
    """What a pool's spares are rendered with: a new service whose backend would be rendered the same (balance,
    sticky cookie or not, health check or not; host routing through the map; the pool's slot count) takes one at
    runtime. ``name`` is the pool's (the ``<profile>`` of its spares' names)."""

    name: str
    balance: str = "roundrobin"
    cookie: str | None = None
    health: HealthCheck | None = None

    def matches(self, svc: Service) -> bool:
        return (svc.balance, svc.cookie, svc.health) == (self.balance, self.cookie, self.health)

    def describe(self) -> str:
        words = [self.balance] + ([f"cookie {self.cookie}"] if self.cookie else [])
        if self.health is not None:
            words.append(f"check {self.health.method} {self.health.path}")
        return ", ".join(words)


def parse_pool_profile(text: str, name: str, where: str = "pool_profiles") -> PoolProfile:
    """A profile as settings spell it: ``BALANCE[:cookie=NAME][:check=PATH]`` (``leastconn``,
    ``roundrobin:cookie=JSESSIONID``, ``roundrobin:check=/healthz``: a GET of PATH with the health check's other
    defaults). ``ValidationError`` names the part that is wrong."""
    from haplane.model import values as v

    balance, *parts = text.strip().split(":")
    balance = v.choice(balance, where, v.BALANCE_ALGORITHMS, "roundrobin")
    cookie: str | None = None
    health: HealthCheck | None = None
    for part in parts:
        key, sep, value = part.partition("=")
        if key == "cookie" and sep:
            cookie = v.cookie_name(value, f"{where} ({text}): cookie")
        elif key == "check" and sep:
            health = HealthCheck(path=v.path_prefix(value, f"{where} ({text}): check"))
        else:
            from haplane.errors import ValidationError

            raise ValidationError(where, text, "is not BALANCE[:cookie=NAME][:check=PATH] "
                                               f"({part!r} is neither cookie=NAME nor check=PATH)")
    return PoolProfile(name, balance, cookie, health)


def pool_profiles(texts: Sequence[str]) -> tuple[PoolProfile, ...]:
    """The profiles of the settings' ``pool_profiles``, named 1, 2, ... in their order (spares _pool1_1, ...)."""
    return tuple(parse_pool_profile(t, str(i)) for i, t in enumerate(texts, 1))


@dataclass(frozen=True, slots=True)
class ComposeOptions:
    binds: tuple[Bind, ...] = (Bind("*", 80),)
    globals: Globals = field(default_factory=Globals)
    min_slots: int = 8
    host_map: str | None = None  # absolute path of a host map: one lookup instead of N ACLs
    path_map: str | None = None  # absolute path of a path-prefix map (longest prefix wins): no ACL per path route
    focus_zones: frozenset[str] = frozenset()
    focus_groups: frozenset[str] = frozenset()
    all_in_fallback: bool = False
    excluded: frozenset[str] = frozenset()  # owners held back (quarantined), e.g. "service:app1"
    cookie_key: str = "haplane"  # dynamic-cookie-key of sticky slotted backends: the same on every node
    tls: EdgeTls | None = None  # HTTPS on the main frontend (certificates, policy maps, ACME challenges)
    certs_dir: str = ""  # where the certificate files are (<certs_dir>/<name>.pem), with tls
    # HSDO's names, kept so dashboards keep their labels: backend -> server-template base name of its slots
    # (slot n is named <base>n instead of s<n>), and service -> name of its fallback backend
    server_prefixes: tuple[tuple[str, str], ...] = ()
    fallback_names: tuple[tuple[str, str], ...] = ()
    # pools of ready backends: ``pool_size`` spares of each profile (0: no pools); ``pooled`` the spares taken
    # since the config HAProxy runs was loaded (spare → service; a spare stays taken until the next reload, even
    # once its service is gone); see ``place_in_pools``
    pools: tuple[PoolProfile, ...] = ()
    pool_size: int = 0
    pooled: tuple[tuple[str, str], ...] = ()

    @property
    def focused(self) -> bool:
        return bool(self.focus_zones or self.focus_groups)

    @property
    def pooling(self) -> bool:
        """Pools are rendered: there are profiles and spares, routes go through the runtime maps, no focus (a
        focused service has two backends)."""
        return (bool(self.pools) and self.pool_size > 0 and (self.host_map is not None or self.path_map is not None)
                and not self.focused)


def slot_count(max_slot: int, min_slots: int) -> int:
    """Slots for a backend whose highest used slot is ``max_slot``: a power of two with ≥ 25 % headroom, so
    growth reloads rarely and the size is the same on every node for the same data."""
    need = max(min_slots, max_slot + (max_slot + 3) // 4)
    size = 1
    while size < need:
        size *= 2
    return size


def slot_name(slot: int, prefix: str = "s") -> str:
    return f"{prefix}{slot}"


def fallback_name(service: str, options: ComposeOptions) -> str:
    """The fallback backend of a focused service: ``<service>_fallback``, or the name HSDO's settings gave it."""
    return dict(options.fallback_names).get(service, service + FALLBACK_SUFFIX)


def assign_slots(instances: Iterable[Instance]) -> dict[str, int]:
    """instance id → slot (1-based). Instances keep the slot the registry gave them; any without one (or
    colliding) take the lowest free slots in id order, so the result depends only on the data."""
    result: dict[str, int] = {}
    used: set[int] = set()
    pending: list[Instance] = []
    for inst in sorted(instances, key=lambda i: (i.slot == 0, i.slot, i.id)):
        if inst.slot > 0 and inst.slot not in used:
            result[inst.id] = inst.slot
            used.add(inst.slot)
        else:
            pending.append(inst)
    nxt = 1
    for inst in sorted(pending, key=lambda i: i.id):
        while nxt in used:
            nxt += 1
        result[inst.id] = nxt
        used.add(nxt)
    return result


def _slotted_servers(members: Sequence[Instance], slots: dict[str, int], size: int, prefix: str = "s"
                     ) -> tuple[Server, ...]:
    """Slots s1..sN. Sticky slotted backends use dynamic cookies (a hash of the server's address), so the
    servers carry no cookie value: a client follows its instance, not the slot it happens to be in."""
    by_slot = {slots[i.id]: i for i in members}
    servers = []
    for n in range(1, size + 1):
        inst = by_slot.get(n)
        name = slot_name(n, prefix)
        if inst is None:
            servers.append(Server(name, FREE_SLOT_ADDRESS, FREE_SLOT_PORT, 1, "maint"))
        else:
            state = inst.state if inst.healthy else "maint"
            servers.append(Server(name, inst.address, inst.port, inst.weight, state,
                                  instance=inst.id, zone=inst.zone, version=inst.version))
    return tuple(servers)


def _in_focus(inst: Instance, options: ComposeOptions) -> bool:
    return (inst.zone in options.focus_zones) or (inst.group in options.focus_groups)


def service_backends(svc: Service, instances: Sequence[Instance], options: ComposeOptions
                      ) -> list[Backend]:
    slots = assign_slots(instances)
    size = slot_count(max(slots.values(), default=0), options.min_slots)
    owner = f"service:{svc.name}"
    common = {"balance": svc.balance, "cookie": svc.cookie, "cookie_key": options.cookie_key if svc.cookie else None,
              "health": svc.health,
              "check_inter_ms": svc.health.interval_ms if svc.health else 2000, "slotted": True, "owner": owner}
    prefixes = dict(options.server_prefixes)
    if not options.focused:
        return [Backend(svc.name, _slotted_servers(instances, slots, size, prefixes.get(svc.name, "s")),
                        **common)]  # type: ignore[arg-type]
    main = [i for i in instances if _in_focus(i, options)]
    rest = instances if options.all_in_fallback else [i for i in instances if not _in_focus(i, options)]
    fallback = fallback_name(svc.name, options)
    return [
        Backend(svc.name, _slotted_servers(main, slots, size, prefixes.get(svc.name, "s")),
                **common),  # type: ignore[arg-type]
        Backend(fallback, _slotted_servers(rest, slots, size, prefixes.get(fallback, "s")),
                **common),  # type: ignore[arg-type]
    ]


def _service_route(svc: Service, backend: str | None = None) -> Route | None:
    if svc.predicate is None:
        return None
    kind = "host" if svc.mode == "host" else "path_prefix"
    return Route(backend or svc.name, kind, svc.predicate, owner=f"service:{svc.name}")  # type: ignore[arg-type]


# --- pools of ready backends ----------------------------------------------------------------------------------

def spare_name(profile: PoolProfile, n: int) -> str:
    return f"{SPARE_PREFIX}{profile.name}_{n}"


def spares(options: ComposeOptions) -> dict[str, PoolProfile]:
    """Every spare the config renders (name → its profile), pool by pool; none without ``options.pooling``, none
    of a pool held back (``pool:NAME`` quarantined: an operator's template HAProxy refuses in its spares)."""
    if not options.pooling:
        return {}
    return {spare_name(p, n): p for p in options.pools for n in range(1, options.pool_size + 1)
            if f"pool:{p.name}" not in options.excluded}


def spare_backend(profile: PoolProfile, name: str, options: ComposeOptions) -> Backend:
    """A free spare: the backend a service of ``profile`` would get, its slots free (disabled)."""
    size = slot_count(0, options.min_slots)
    return Backend(name, _slotted_servers([], {}, size), balance=profile.balance, cookie=profile.cookie,
                   cookie_key=options.cookie_key if profile.cookie else None, health=profile.health,
                   check_inter_ms=profile.health.interval_ms if profile.health else 2000, slotted=True,
                   pool=profile.name, owner=f"pool:{profile.name}")


def pool_profile_of(svc: Service, instances: Sequence[Instance], options: ComposeOptions) -> PoolProfile | None:
    """The pool whose spares ``svc`` can take: it is routed through a runtime map (a host, or a path prefix: it
    has a predicate), has no HSDO slot names, its instances fit in a spare's slots, and its balance, cookie and
    health check are a profile's."""
    if not options.pooling or svc.predicate is None:
        return None
    if (options.host_map if svc.mode == "host" else options.path_map) is None:
        return None
    if svc.name in dict(options.server_prefixes):
        return None
    slots = assign_slots(instances)
    if slot_count(max(slots.values(), default=0), options.min_slots) != slot_count(0, options.min_slots):
        return None
    return next((p for p in options.pools if p.matches(svc)), None)


def held_in_maps(registry: Registry, maps: Mapping[str, Mapping[str, str]], options: ComposeOptions
                 ) -> tuple[tuple[str, str], ...]:
    """The spares services hold as HAProxy's route maps say (``maps``: map path → entries, as the Runtime API
    shows them): a service whose route's entry names a spare holds it. How a reader without the agent's memory
    (``haplane status`` and ``plan``, a restarted agent) knows where a service is served."""
    if not options.pooling:
        return ()
    names = spares(options)
    hosts = maps.get(options.host_map or "", {})
    paths = maps.get(options.path_map or "", {})
    held: dict[str, str] = {}
    for svc in registry.services:
        if svc.predicate is None:
            continue
        value = hosts.get(svc.predicate) if svc.mode == "host" else paths.get(path_map_key(svc.predicate))
        if value is not None and value in names:
            held.setdefault(value, svc.name)
    return tuple(sorted(held.items()))


def place_in_pools(registry: Registry, running: Names[str] | None, options: ComposeOptions,
                   lost: Sequence[Collision] | None = None) -> tuple[tuple[str, str], ...]:
    """Which spare each service holds (spare → service, sorted): the spares taken so far (``options.pooled``)
    stay taken, and every new service (one with no backend of its own name among the backends HAProxy runs,
    ``running``) that fits a profile takes the lowest free spare of its pool HAProxy runs, new services in name
    order.

    Depends only on the data (the records, the backends HAProxy runs, the spares taken since it loaded its
    config), so the same events give the same placement on every node. A service that left and comes back before
    the next reload gets its spare back; a spare whose service left stays taken (its slots may still drain) until
    the next reload, which gives every pooled service a backend of its own name and frees every spare.

    ``lost``: ``name_collisions(registry, options)`` when the caller has it already (a walk over every record)."""
    if running is None or not options.pooling:
        return ()
    taken = dict(options.pooled)
    holding = set(taken.values())
    by_service: dict[str, list[Instance]] = defaultdict(list)
    for inst in registry.instances:
        by_service[inst.service].append(inst)
    if lost is None:
        lost = name_collisions(registry, options)
    losers = {c.loser for c in lost}  # left out or unrouted: no spare
    for svc in sorted(registry.services, key=lambda s: s.name):
        if svc.name in holding or svc.name in running or {f"service:{svc.name}"} & (options.excluded | losers):
            continue
        profile = pool_profile_of(svc, by_service.get(svc.name, []), options)
        if profile is None:
            continue
        for n in range(1, options.pool_size + 1):
            spare = spare_name(profile, n)
            if spare not in taken and spare in running:
                taken[spare] = svc.name
                holding.add(svc.name)
                break
    return tuple(sorted(taken.items()))


def _pooled_backend(svc: Service, instances: Sequence[Instance], spare: str, profile: PoolProfile,
                    options: ComposeOptions) -> tuple[Backend, bool]:
    """The spare ``spare`` holding ``svc``, and whether ``svc`` still fits it. When it no longer does (its
    balance, cookie or health check changed, or it outgrew the slots), the spare keeps serving the instances that
    fit its slots until the reload its own backend needs."""
    free = spare_backend(profile, spare, options)
    slots = assign_slots(instances)
    size = len(free.servers)
    if pool_profile_of(svc, instances, options) == profile:
        return replace(free, servers=_slotted_servers(instances, slots, size), owner=f"service:{svc.name}",
                       label=svc.name), True
    fitting = [i for i in instances if slots[i.id] <= size]
    return replace(free, servers=_slotted_servers(fitting, slots, size), owner=f"service:{svc.name}",
                   label=svc.name), False


def backends_of_service(svc: Service, instances: Sequence[Instance], options: ComposeOptions) -> list[Backend]:
    """The backends of ``svc``: its own (``service_backends``), or the spare it holds (``options.pooled``), or
    both while it no longer fits its spare."""
    for spare, holder in options.pooled:
        if holder == svc.name and options.pooling:
            profile = spares(options).get(spare)
            if profile is not None:
                be, fits = _pooled_backend(svc, instances, spare, profile, options)
                return [be] if fits else [*service_backends(svc, instances, options), be]
    return service_backends(svc, instances, options)


def _spares_of(options: ComposeOptions, held: Mapping[str, Backend]) -> tuple[list[Backend],
                                                                             tuple[tuple[str, int, int], ...]]:
    """Every spare (held ones as held), and the pools that run low: at most half their spares free."""
    out = [held.get(spare) or spare_backend(profile, spare, options) for spare, profile in spares(options).items()]
    return out, pools_low(options)


def pools_low(options: ComposeOptions) -> tuple[tuple[str, int, int], ...]:
    """The pools that run low, (profile, spares free, spares in all): at most half their spares free
    (``Config.pools_low``)."""
    free: dict[str, int] = {}
    taken = {spare for spare, _svc in options.pooled}
    for spare, profile in spares(options).items():
        free[profile.name] = free.get(profile.name, 0) + (spare not in taken)
    return tuple((name, n, options.pool_size) for name, n in free.items() if n * 2 <= options.pool_size)


def order_routes(routes: Iterable[Route]) -> list[Route]:
    """Host routes first (by backend name), then path prefixes longest first, so '/api/v2' wins over '/api'."""
    return sorted(routes, key=lambda r: (r.kind != "host", -len(r.value) if r.kind != "host" else 0,
                                         r.backend, r.value))


def _thalassa_route(rule_type: str, op: str, value: str, backend: str, header: str | None, owner: str) -> Route:
    if rule_type == "header":
        return Route(backend, op, value, header=header or "host", owner=owner)  # type: ignore[arg-type]
    return Route(backend, op, value, owner=owner)  # type: ignore[arg-type]


def _thalassa_frontend(spec: FrontendSpec, backends: set[str], tls: EdgeTls | None) -> Frontend | None:
    """A Thalassa frontend; None for one that asks for TLS from an agent without HTTPS (it has no certificates
    to bind with, and serving it in plain text instead would hand out what was meant to be encrypted)."""
    owner = f"frontend:{spec.name}"
    bind_tls = None
    if spec.tls:
        if tls is None:
            return None
        bind_tls = BindTls(tls.default_cert, tls.crt_list, tls.alpn if spec.mode == "http" else None)
    routes = tuple(_thalassa_route(r.type, r.operation, r.value, r.backend, r.header, owner)
                   for r in spec.rules if r.backend in backends)
    return Frontend(spec.name, tuple(Bind(a, p) for a, p in spec.binds), spec.mode,
                    spec.backend if spec.backend in backends else None, spec.keepalive, routes, spec.natives,
                    owner=owner, bind_tls=bind_tls)


def frontends_without_tls(registry: Registry, options: ComposeOptions) -> list[str]:
    """The Thalassa frontends ``compose`` leaves out because they ask for TLS and ``options`` has no HTTPS."""
    if options.tls is not None:
        return []
    return sorted(f.name for f in registry.frontends if f.tls and f"frontend:{f.name}" not in options.excluded
                  and f.name != MAIN_FRONTEND)


def thalassa_backend(spec: BackendSpec, by_service: dict[str, list[Instance]],
                      options: ComposeOptions) -> Backend:
    owner = f"backend:{spec.name}"
    common = {"mode": spec.mode, "balance": spec.balance, "health": spec.health,
              "check_inter_ms": spec.health.interval_ms if spec.health else 2000,
              "host_header": spec.host, "natives": spec.natives, "owner": owner}
    if spec.type == "dynamic":
        members = [i for i in by_service.get(spec.service or "", []) if i.version == spec.version]
        slots = assign_slots(by_service.get(spec.service or "", []))
        size = slot_count(max(slots.values(), default=0), options.min_slots)
        return Backend(spec.name, _slotted_servers(members, slots, size), slotted=True,
                       **common)  # type: ignore[arg-type]
    servers = tuple(Server(f"m{n}", m.host, m.port, 1) for n, m in enumerate(spec.members, 1))
    return Backend(spec.name, servers, **common)  # type: ignore[arg-type]


def name_collisions(registry: Registry, options: ComposeOptions) -> list[Collision]:
    """The names two records of ``registry`` claim (``haplane.model.names``), with the owner ``compose`` keeps
    and the one it leaves out (a whole backend or frontend, or a service's route), by the names' stable rule.
    The registry refuses such writes; a store written otherwise (an older haplane, by hand) can still hold
    them, and the agent says so."""
    return collisions([s for s in registry.services if owner("service", s.name) not in options.excluded],
                      [b for b in registry.backends if owner("backend", b.name) not in options.excluded],
                      [f for f in registry.frontends if owner("frontend", f.name) not in options.excluded],
                      dict(options.fallback_names), fallbacks=options.focused)


def compose(registry: Registry, options: ComposeOptions | None = None,
            lost: Sequence[Collision] | None = None) -> Config:
    """The desired HAProxy model for everything in the registry (a record that collides with another's name is
    left out, as ``name_collisions`` says; ``lost`` is that answer when the caller has it already: it depends on
    the services, Thalassa backends and frontends and on ``options``' excluded owners and fallback names alone)."""
    options = options or ComposeOptions()
    if lost is None:
        lost = name_collisions(registry, options)
    left_out = {c.loser for c in lost if c.claim.space not in ("host", "path")}
    unrouted = {c.loser for c in lost if c.claim.space in ("host", "path")}
    by_service: dict[str, list[Instance]] = defaultdict(list)
    for inst in registry.instances:
        by_service[inst.service].append(inst)
    backends: list[Backend] = []
    routes: list[Route] = []
    held: dict[str, Backend] = {}  # spares holding a service
    for svc in sorted(registry.services, key=lambda s: s.name):
        who = owner("service", svc.name)
        if who in options.excluded or who in left_out:
            continue
        own = []
        for be in backends_of_service(svc, by_service.get(svc.name, []), options):
            if be.pool:
                held[be.name] = be
            else:
                own.append(be)
        backends.extend(own)
        # routed to the spare it holds while it has no backend of its own
        route = _service_route(svc, None if own else next(n for n, b in held.items() if b.label == svc.name))
        if route is not None and who not in unrouted:
            routes.append(route)
    for spec in sorted(registry.backends, key=lambda b: b.name):
        who = owner("backend", spec.name)
        if who in options.excluded or who in left_out:
            continue
        backends.append(thalassa_backend(spec, by_service, options))
    names = {b.name for b in backends}
    pool_backends, pools_low = _spares_of(options, held)
    backends.extend(pool_backends)

    maps: tuple[tuple[str, str], ...] = ()
    ordered = order_routes(routes)
    main_routes = ordered
    if options.host_map:
        hosts = sorted((r.value, r.backend) for r in main_routes if r.kind == "host")
        maps += ((options.host_map, "".join(f"{h} {b}\n" for h, b in hosts)),)
        main_routes = [r for r in main_routes if r.kind != "host"]  # the map carries host routes
    if options.path_map:
        prefixes: dict[str, str] = {}
        for r in main_routes:  # longest first: of two prefixes with the same key, the one its ACL would pick
            if r.kind == "path_prefix":
                prefixes.setdefault(path_map_key(r.value), r.backend)
        maps += ((options.path_map, "".join(f"{k} {b}\n" for k, b in sorted(prefixes.items()))),)
        main_routes = [r for r in main_routes if r.kind != "path_prefix"]  # the map carries path routes
    # every focused service with a fallback backend, routed or not: a route added to a service later is a map
    # entry, not a new fallback rule (no reload)
    fallbacks = tuple((b.name, fallback_name(b.name, options)) for b in backends
                      if options.focused and b.owner == f"service:{b.name}"
                      and fallback_name(b.name, options) in names)
    certificates: tuple[ServedCert, ...] = ()
    if options.tls is not None:
        served = [s for s in registry.services if f"service:{s.name}" not in options.excluded]
        maps += tls_maps(options.tls, served, registry.certificates, registry.challenges)
        certificates = served_certificates(registry.certificates, options.certs_dir)
    frontends = [Frontend(MAIN_FRONTEND, options.binds, routes=tuple(main_routes),
                          host_map=options.host_map or None, path_map=options.path_map or None,
                          owner="frontend:" + MAIN_FRONTEND, fallbacks=fallbacks, tls=options.tls)]
    for fspec in sorted(registry.frontends, key=lambda f: f.name):
        who = owner("frontend", fspec.name)
        if who in options.excluded or who in left_out:
            continue
        fe = _thalassa_frontend(fspec, names, options.tls)
        if fe is not None:
            frontends.append(fe)
    return Config(tuple(frontends), tuple(backends), options.globals, maps, certificates, pools_low)


def service_map_entries(svc: Service, backend: str, options: ComposeOptions,
                        certificates: Sequence[RegistryCert] = ()) -> dict[str, dict[str, str]]:
    """The entries ``svc`` alone puts in the runtime maps of ``compose`` (map path → key → value), routed to
    ``backend``: its route (the host or path map) and, with HTTPS, its host's policy and HSTS entries. What a
    change of one service record changes in the maps, when no other record claims its host or prefix
    (``haplane.model.names``); compose builds the same entries for every service at once."""
    out: dict[str, dict[str, str]] = {}
    route = _service_route(svc, backend)
    if route is not None:
        if route.kind == "host" and options.host_map:
            out[options.host_map] = {route.value: backend}
        elif route.kind == "path_prefix" and options.path_map:
            out[options.path_map] = {path_map_key(route.value): backend}
    if options.tls is not None:
        policy, hsts = tls_host_entries([svc], certificates)
        out.setdefault(options.tls.policy_map, {}).update(policy)
        out.setdefault(options.tls.hsts_map, {}).update(hsts)
    return out


# --- HTTPS ----------------------------------------------------------------------------------------------------

def tls_host_entries(services: Sequence[Service], certificates: Sequence[RegistryCert]
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """The entries of HTTPS's policy map (host → redirect or off; ``on`` is the absence of an entry; ``auto``
    redirects once a certificate covers the host, so nobody is sent to the default certificate) and of its HSTS
    map (host → max-age) that ``services`` put there."""
    policy: dict[str, str] = {}
    hsts: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s.name):
        host = svc.predicate
        if svc.mode != "host" or host is None:
            continue
        if svc.tls in ("redirect", "off"):
            policy.setdefault(host, svc.tls)
        elif svc.tls == "auto" and any(c.covers(host) for c in certificates):
            policy.setdefault(host, "redirect")
        if svc.hsts is not None and svc.tls != "off":
            hsts.setdefault(host, str(svc.hsts))
    return policy, hsts


def tls_maps(tls: EdgeTls, services: Sequence[Service], certificates: Sequence[RegistryCert],
             challenges: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The three runtime maps of HTTPS: ACME challenges (token → key authorization), the policy and HSTS
    (``tls_host_entries``)."""
    policy, hsts = tls_host_entries(services, certificates)
    return (
        (tls.acme_map, "".join(f"{t} {a}\n" for t, a in sorted(challenges))),
        (tls.policy_map, "".join(f"{h} {p}\n" for h, p in sorted(policy.items()))),
        (tls.hsts_map, "".join(f"{h} {age}\n" for h, age in sorted(hsts.items()))),
    )


def served_certificates(certificates: Sequence[RegistryCert], certs_dir: str) -> tuple[ServedCert, ...]:
    return tuple(ServedCert(c.name, f"{certs_dir}/{c.name}.pem", c.pem, c.sha1, c.hosts, c.not_after)
                 for c in sorted(certificates, key=lambda c: c.name))


# --- Lambda-Registry tables ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Container:
    id: str
    address: str
    port: int
    own_port: bool = False  # the payload gave this container its port; else it follows its service's port


@dataclass(frozen=True, slots=True)
class TableService:
    """A service stored in a Lambda-Registry table, with the containers it last had."""

    service: Service
    containers: tuple[Container, ...]


def compose_table(services: Sequence[TableService], binds: tuple[Bind, ...] = (Bind("*", 80),),
                  globals_: Globals | None = None) -> Config:
    """Lambda-Registry's config: one frontend, one ACL + use_backend per service, one backend per service
    with one server per container. Each server's cookie value is its own id (Lambda-Registry gave every
    server the cookie *name*, so stickiness never worked)."""
    routes = []
    backends = []
    for ts in sorted(services, key=lambda t: t.service.name):
        svc = ts.service
        route = _service_route(svc)
        if route is not None:
            routes.append(route)
        servers = tuple(Server(c.id, c.address, c.port, 1, cookie=c.id if svc.cookie else None)
                        for c in ts.containers)
        backends.append(Backend(svc.name, servers, balance=svc.balance, cookie=svc.cookie,
                                health=svc.health,
                                check_inter_ms=svc.health.interval_ms if svc.health else 2000,
                                owner=f"service:{svc.name}"))
    frontend = Frontend(MAIN_FRONTEND, binds, routes=tuple(order_routes(routes)), owner="frontend:http")
    return Config((frontend,), tuple(backends), globals_ or Globals())
