"""Compose, observe, plan: what the agent would do now, in one place for the agent, the UI's dry run and
``haplane plan``.

- ``compose_observe_plan``: the desired model (composed from the registry, or one the caller composed already),
  what HAProxy runs (``show servers state`` and the host map, through any ``HAProxyReader``), and the plan
  between them. The agent runs it on every change; ``AgentView.plan_preview`` and ``haplane plan`` run it too
  and apply nothing.
- ``Composer``: the agent's own composition over its store mirror: the full config (cached per store revision
  and quarantine); for an instance event, only the backends it touched (``incremental``); for service records
  that change no structure, only their backends and map entries (``service_change``).
- ``plan_document``: a plan as plain data for the UI and the CLI (the command text comes from the runtime
  adapter, ``haproxy.runtime.command_of``).
"""

from __future__ import annotations

import logging
from collections.abc import Container, Mapping, Set
from dataclasses import replace
from typing import Any

from haplane.agent.mirror import Mirror, Touched
from haplane.compose import (
    ComposeOptions,
    backends_of_service,
    compose,
    frontends_without_tls,
    held_in_maps,
    name_collisions,
    place_in_pools,
    pools_low,
    service_map_entries,
    spare_backend,
    spares,
    thalassa_backend,
)
from haplane.haproxy.runtime import command_of
from haplane.model.haproxy import Backend, Config, with_map_entries
from haplane.model.names import Collision, service_claims
from haplane.model.observed import Observed
from haplane.model.ops import RuntimeOp
from haplane.model.records import Instance, Registry, Service
from haplane.plan import Memory, Plan, Policy, plan
from haplane.typing import HAProxyReader

log = logging.getLogger("haplane.agent")

__all__ = ["Composer", "command_text", "compose_observe_plan", "maps_now", "plan_document", "plan_seen"]


async def maps_now(reader: HAProxyReader, desired: Config) -> dict[str, dict[str, str]]:
    """The entries HAProxy holds now for each map of ``desired`` (maps are named by the path HAProxy loads them
    from: ``ComposeOptions.host_map``)."""
    paths = [path for path, _ in desired.maps]
    current = await reader.maps(paths)
    return {path: current.get(path, {}) for path in paths}


async def compose_observe_plan(reader: HAProxyReader, what: Registry | Config, options: ComposeOptions,
                               policy: Policy, *, memory: Memory, applied: Config | None, now: float,
                               backends: set[str] | None = None, read_maps: bool = True, read_certs: bool = False,
                               cert_paths: set[str] | None = None,
                               map_keys: Mapping[str, Set[str]] | None = None) -> tuple[Config, Plan]:
    """The desired config and the plan from what HAProxy runs to it.

    ``what`` is the registry to compose with ``options``, or a config the caller composed already (the agent
    composes incrementally and keeps its full composition). ``backends`` limits the membership diff (and the
    state read) to those backends; ``read_maps`` False leaves the host map out (the agent reads it only on a
    full or structural pass); ``read_certs`` reads what HAProxy serves through the crt-list (of ``cert_paths``
    only, when given) so certificates are planned too; ``map_keys`` (map → keys) reads and plans those entries
    alone (a service record's change, ``Composer.service_change``: each entry read, not every map's whole).
    ``memory`` is the ramp/drain bookkeeping (``SlotMemory``), ``applied`` the config HAProxy runs (None: a reload
    is planned)."""
    if isinstance(what, Registry):
        observed = await reader.servers(None)
        options = await pools_as_observed(reader, what, options, observed.keys())
        desired = compose(what, options)
        if backends is not None:
            observed = {name: slots for name, slots in observed.items() if name in backends}
    else:
        desired = what
        observed = await reader.servers(backends)
    current = None
    if map_keys is not None:
        current = await reader.map_entries_of(map_keys)
    elif read_maps and desired.maps:
        current = await maps_now(reader, desired)
    crt_list = next((f.tls.crt_list for f in desired.frontends if f.tls is not None), None)
    certs = await reader.certificates(crt_list, cert_paths) if read_certs and crt_list is not None else None
    return desired, plan(desired, observed, memory, applied, now, policy, maps_now=current,
                         map_paths={path: path for path, _ in desired.maps}, backends=backends, certs_now=certs,
                         cert_paths=cert_paths, map_keys=map_keys)


def plan_seen(desired: Config, seen: Observed, policy: Policy, *, memory: Memory, applied: Config | None,
              now: float, backends: set[str]) -> Plan:
    """The plan for ``backends`` on slots HAProxy answered for them already (``agent.seen``): their membership
    alone (no maps, no certificates), with no read first."""
    return plan(desired, seen, memory, applied, now, policy, backends=backends)


async def pools_as_observed(reader: HAProxyReader, registry: Registry, options: ComposeOptions,
                            running: Container[str]) -> ComposeOptions:
    """``options`` with the spares services hold as HAProxy's route maps show them (besides ``options.pooled``),
    and those the new services would take among the backends HAProxy runs (``running``): how a reader without the
    agent's memory (``haplane status``, ``haplane plan``) sees what the agent does."""
    if not options.pooling:
        return options
    paths = [p for p in (options.host_map, options.path_map) if p]
    held = dict(held_in_maps(registry, await reader.maps(paths), options))
    held.update(options.pooled)
    options = replace(options, pooled=tuple(sorted(held.items())))
    return replace(options, pooled=place_in_pools(registry, running, options))


class Composer:
    """The agent's composition over its mirror of the store, with the quarantined owners and the runtime holds
    (``instance:``, ``certificate:`` owners) left out, and the spares of the pools new services took since the
    config HAProxy runs was loaded (``pooled``)."""

    def __init__(self, mirror: Mirror, options: ComposeOptions) -> None:
        self.mirror = mirror
        self.options = options
        self.pooled: tuple[tuple[str, str], ...] = ()  # spare → service, since the last (re)load
        self._full: Config | None = None
        self._full_key: tuple[int, frozenset[str], tuple[tuple[str, str], ...]] | None = None
        self._to_reload = False  # the last full composition was a config to reload with (every service its own)
        self._left_out: list[str] = []  # TLS frontends this agent cannot serve (no HTTPS), last said
        self._collisions: list[str] = []  # records left out because another holds their name, last said
        self._losers: frozenset[str] = frozenset()  # their owners, left out of incremental compositions too
        self._lost: tuple[tuple[int, frozenset[str]], list[Collision]] | None = None  # name_collisions, per key

    def options_for(self, excluded: frozenset[str]) -> ComposeOptions:
        """The compose options with ``excluded`` held back and the spares taken so far."""
        return replace(self.options, excluded=excluded, pooled=self.pooled)

    def place(self, applied: Config | None, excluded: frozenset[str]) -> tuple[tuple[str, str], ...]:
        """The spares every service holds once the new ones among the records took theirs (not kept)."""
        return place_in_pools(self.mirror.registry(), None if applied is None else applied.names(),
                              self.options_for(excluded), self._name_collisions(excluded))

    def _name_collisions(self, excluded: frozenset[str]) -> list[Collision]:
        """``name_collisions`` of the mirror's records (a walk over every one of them), once per store revision
        and ``excluded``: placing new services in the pools and composing the config ask for the same answer
        (the spares held and the instances change nothing in it)."""
        key = (self.mirror.revision, excluded)
        if self._lost is None or self._lost[0] != key:
            self._lost = key, name_collisions(self.mirror.registry(), self.options_for(excluded))
        return self._lost[1]

    def loaded(self) -> None:
        """HAProxy (re)loaded a config this composer composed with no spare held: every spare is free again."""
        self.pooled = ()

    def full(self, excluded: frozenset[str], applied: Config | None = None) -> Config:
        """Everything in the store; the same object again while the store revision, ``excluded`` and the spares
        held stay. With ``applied`` (the config HAProxy runs), new services that fit a pool take its spares (kept
        in ``pooled``); without it every service has a backend of its own (a config to reload with)."""
        pooled: tuple[tuple[str, str], ...] = ()
        self._to_reload = applied is None
        if applied is not None:
            self.pooled = pooled = self.place(applied, excluded)
        key = (self.mirror.revision, excluded, pooled)
        if self._full_key != key or self._full is None:
            registry, options = self.mirror.registry(), replace(self.options, excluded=excluded, pooled=pooled)
            if any(o.startswith(("instance:", "certificate:")) for o in excluded):  # runtime holds
                registry = replace(registry, instances=tuple(i for i in registry.instances
                                                             if f"instance:{i.service}/{i.id}" not in excluded),
                                   certificates=tuple(c for c in registry.certificates
                                                      if f"certificate:{c.name}" not in excluded))
            lost = self._name_collisions(excluded)
            self._full = compose(registry, options, lost)
            self._full_key = key
            left_out = frontends_without_tls(registry, options)
            if left_out and left_out != self._left_out:
                log.warning("frontend(s) %s ask for TLS but this agent has no HTTPS listener (https_port 0): left "
                            "out of HAProxy's config until it has one", ", ".join(left_out))
            self._left_out = left_out
            said = [str(c) for c in lost]
            if said and said != self._collisions:
                log.warning("name collision(s) in the store (written past the registry's checks): %s",
                            "; ".join(said))
            self._collisions = said
            self._losers = frozenset(c.loser for c in lost if c.claim.space not in ("host", "path"))
        return self._full

    def incremental(self, desired: Config, touched: Touched, excluded: frozenset[str],
                    composed: Container[str] = ()) -> tuple[Config, set[str]]:
        """``desired`` with only the backends of touched services (and dynamic backends following them)
        composed again, but those of the services in ``composed`` (done already); and their names."""
        opts = self.options_for(excluded)
        replaced: dict[str, Backend] = {}
        for name in touched.services:
            if name in composed:
                continue
            svc = self.mirror.services.get(name)
            if svc is None or f"service:{name}" in excluded or f"service:{name}" in self._losers:
                continue
            for be in backends_of_service(svc, self._instances(name, excluded), opts):
                replaced[be.name] = be
        by_service = {s: self._instances(s, excluded) for s in touched.services}
        for spec in self.mirror.backends.values():
            if spec.type == "dynamic" and spec.service in touched.services and spec.name not in replaced \
                    and f"backend:{spec.name}" not in excluded and f"backend:{spec.name}" not in self._losers:
                replaced[spec.name] = thalassa_backend(spec, by_service, opts)
        replaced = {n: be for n, be in replaced.items() if desired.backend(n) is not None}
        if not replaced:
            return desired, set()
        return desired.with_backends(replaced), set(replaced)

    def service_change(self, desired: Config, applied: Config | None, touched: Touched, excluded: frozenset[str]
                       ) -> tuple[Config, set[str], dict[str, set[str]]] | None:
        """``desired`` after a batch that changed service records (``touched.before``) and no other record, in time
        that grows with those services, not with the config: their backends composed again (the spare a new
        service takes, or a gone one leaves), their map entries (route, HTTPS policy and HSTS) set, the pools
        that run low counted again. With it, the backends and the map entries (map → keys) to plan.

        None when the change needs the whole config composed (``full``): a backend to add, remove or change in
        structure (a reload follows), a name or route another record claims too (collisions are resolved over
        every record), an owner held back, a quarantine released, focus, a route not carried by a runtime map,
        ``desired`` composed with other owners held back or as a config to reload with (a reload that failed or
        was held back by a quarantine leaves that one), or HAProxy running no config yet."""
        opts = self.options
        if (applied is None or touched.others or not touched.before or opts.focused or self._full_key is None
                or self._full_key[1] != excluded or self._to_reload):
            return None
        names = self.mirror.names
        now: dict[str, Service | None] = {}
        for name, before in touched.before.items():
            who = f"service:{name}"
            if who in excluded or who in self._losers:
                return None
            now[name] = svc = self.mirror.services.get(name)
            for rec in (before, svc):
                if rec is None:
                    continue
                if rec.predicate is not None and (opts.host_map if rec.mode == "host" else opts.path_map) is None:
                    return None  # a route in the frontend's own rules: structure
                if any(names.holders(c) - {who} for c in service_claims(rec) if c.space != "backend"
                       or c.value == name):
                    return None  # another record claims its name, host or prefix (or did)
        # new services take the lowest free spares of their pools, as ``place_in_pools`` over every record would
        # (the others hold theirs, or have their own backends, or found no spare free, and none was freed since)
        fresh = [s for s in now.values() if s is not None]
        present = Registry(tuple(fresh), tuple(i for s in fresh for i in self._instances(s.name, excluded)),
                           (), (), self.mirror.revision)
        pooled = place_in_pools(present, applied.names(), self.options_for(excluded), [])
        opts = replace(opts, excluded=excluded, pooled=pooled)
        held_before = {svc: spare for spare, svc in self.pooled}
        certs = tuple(c for c in self.mirror.certs.served.values() if f"certificate:{c.name}" not in excluded)
        replaced: dict[str, Backend] = {}
        changes: dict[str, dict[str, str | None]] = {}
        for name, before in touched.before.items():
            svc = now[name]
            new = backends_of_service(svc, self._instances(name, excluded), opts) if svc is not None else []
            for be in new:
                old = desired.backend(be.name)
                if old is None or old.structure() != be.structure():
                    return None  # a backend of its own to add, or one to change: a reload
                replaced[be.name] = be
            own = desired.backend(name)
            if own is not None and own.owner == f"service:{name}" and name not in replaced:
                return None  # its backend goes: a reload
            spare = held_before.get(name)
            if spare is not None and spare not in replaced:  # it left the spare it held: free again
                profile = spares(opts).get(spare)
                if profile is None:
                    return None
                replaced[spare] = spare_backend(profile, spare, opts)
            if before is not None:  # its entries out, then its entries (as it is now) in
                for path, kv in service_map_entries(before, "", opts, certs).items():
                    changes.setdefault(path, {}).update(dict.fromkeys(kv))
            if svc is not None:
                route_to = name if any(not be.pool for be in new) else next((b.name for b in new if b.pool), name)
                for path, kv in service_map_entries(svc, route_to, opts, certs).items():
                    changes.setdefault(path, {}).update(kv)
        maps = tuple((path, with_map_entries(content, changes[path]) if changes.get(path) else content)
                     for path, content in desired.maps)
        if any(path not in dict(desired.maps) for path, kv in changes.items() if kv):
            return None
        config = desired.with_backends(replaced, maps=maps, pools_low=pools_low(opts))
        self.pooled = pooled
        # instances that came in the same batch, and the dynamic backends following these services
        config, more = self.incremental(config, touched, excluded, composed=touched.before.keys())
        return config, set(replaced) | more, {path: set(kv) for path, kv in changes.items() if kv}

    def _instances(self, service: str, excluded: frozenset[str]) -> list[Instance]:
        """The service's instances, without those held (runtime holds)."""
        instances = self.mirror.service_instances(service)
        if not excluded:
            return instances
        return [i for i in instances if f"instance:{service}/{i.id}" not in excluded]

    def touched_backends(self, touched: Touched, excluded: frozenset[str]) -> set[str]:
        """The backends a structural batch touched: its changed Thalassa backends, and those of its services (the
        spares they hold included)."""
        opts = self.options_for(excluded)
        limit = set(touched.backends)
        for name in touched.services:
            svc = self.mirror.services.get(name)
            if svc is not None:
                limit |= {be.name for be in backends_of_service(svc, self.mirror.service_instances(name), opts)}
        # a service gone (or changed) leaves the spare it held: its slots are freed through the runtime
        limit |= {spare for spare, holder in self.pooled if holder in touched.services}
        return limit


def command_text(op: RuntimeOp) -> str:
    """The Runtime API command an operation is sent as, or why it would not be sent."""
    try:
        return command_of(op)
    except ValueError as exc:
        return f"(not sent: {exc})"


def plan_document(p: Plan, revision: int, applied_revision: int | None = None,
                  reload_reason: str | None = None) -> dict[str, Any]:
    """A dry-run ``Plan`` as plain data: the runtime commands it would send (each with its Change) and whether,
    and why, it would reload."""
    reason = reload_reason if reload_reason is not None else (p.reload.reason if p.reload is not None else None)
    return {
        "revision": revision,
        "applied_revision": applied_revision,
        "commands": [{"command": command_text(op), **op.change.to_dict()} for op in p.ops],
        "reload": reason is not None,
        "reload_reason": reason,
        "waiting": list(p.waiting),
    }
