"""Plan: desired HAProxy model + what HAProxy reports → runtime operations, or a reload. PURE.

The agent calls ``plan()`` after every batch of store events and on every ramp/drain tick. The plan:
- fills, updates and frees server slots (``SetAddress``, ``SetWeight``, ``SetState``: no reload), in an order
  that never routes to a half-configured slot (address and weight before state ready);
- ramps a new server's weight from ``ramp_min`` to its target in ``ramp_step`` steps every ``ramp_interval``;
- drains a leaving instance (state drain: no new sessions) until it has no sessions or ``drain_timeout``
  passes, and only then frees its slot (state maint);
- updates route-map entries, hosts and path prefixes (``MapAdd`` / ``MapDel`` / ``MapSet``);
- asks for a ``Reload`` only when the structure changed (a new backend, frontend, rule, slot count, ...), with
  its causes as data (``ReloadCause``).

The operations are typed values (``haplane.model.ops``), each carrying its ``Change``; the runtime adapter
alone turns them into Runtime API text.

``SlotMemory`` is the agent's own bookkeeping (which instance is in a slot since when, whether it drains);
plan returns the memory as it will be once its operations succeed.
"""

from __future__ import annotations

import math
from collections import ChainMap
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field, replace

from haplane.model.change import CauseKind, Change, ChangeKind, ReloadCause, reason_of
from haplane.model.haproxy import Backend, Config, Server, map_value
from haplane.model.observed import Observed, SlotObs
from haplane.model.ops import CertDel, CertPut, MapAdd, MapDel, MapSet, RuntimeOp, SetAddress, SetState, SetWeight


@dataclass(frozen=True, slots=True)
class SlotMemory:
    instance: str | None
    placed_at: float = 0.0  # when the instance was put in the slot (ramp clock)
    drain_since: float | None = None  # set while the slot's previous instance drains
    ramped: bool = False  # reached its target weight once: no more ramping


Memory = Mapping[tuple[str, str], SlotMemory]


@dataclass(frozen=True, slots=True)
class Policy:
    ramp_min: int = 1
    ramp_step: int = 1
    ramp_interval: float = 30.0  # 0 disables ramping
    drain_timeout: float = 30.0  # 0 frees slots at once


@dataclass(frozen=True, slots=True)
class Reload:
    """The structure changed: only a reload brings HAProxy there. ``causes`` say why, as data."""

    causes: tuple[ReloadCause, ...]

    @property
    def reason(self) -> str:
        """The causes in words (``backend web added; frontend http changed``)."""
        return reason_of(self.causes)


@dataclass(frozen=True, slots=True)
class Plan:
    ops: tuple[RuntimeOp, ...] = ()
    reload: Reload | None = None
    # the memory as it will be once the operations succeed (the one given, overlaid with memory_changes)
    memory: Mapping[tuple[str, str], SlotMemory] = field(default_factory=dict)
    wake_at: float | None = None  # when a ramp step or a drain deadline needs another look
    wake_backends: frozenset[str] = frozenset()  # the backends that need it
    waiting: tuple[str, ...] = ()  # slots whose new instance waits for a drain to finish
    memory_changes: Mapping[tuple[str, str], SlotMemory] = field(default_factory=dict)  # the slots planned

    @property
    def empty(self) -> bool:
        return not self.ops and self.reload is None


def ramp_weight(target: int, placed_at: float, now: float, policy: Policy) -> int:
    """The weight a server placed at ``placed_at`` should have at ``now``."""
    if policy.ramp_interval <= 0 or target <= policy.ramp_min:
        return target
    steps = math.floor(max(0.0, now - placed_at) / policy.ramp_interval)
    return min(target, policy.ramp_min + steps * policy.ramp_step)


def next_ramp_at(target: int, placed_at: float, now: float, policy: Policy) -> float | None:
    if ramp_weight(target, placed_at, now, policy) >= target:
        return None
    steps = math.floor(max(0.0, now - placed_at) / policy.ramp_interval) + 1
    return placed_at + steps * policy.ramp_interval


class _Planner:
    def __init__(self, observed: Observed, memory: Memory, now: float, policy: Policy) -> None:
        self.observed = observed
        self.known = memory  # read, never copied: it holds every slot, a plan touches a few
        self.memory: dict[tuple[str, str], SlotMemory] = {}  # what this plan changes
        self.now = now
        self.policy = policy
        self.ops: list[RuntimeOp] = []
        self.wake: list[float] = []
        self.wake_backends: set[str] = set()
        self.waiting: list[str] = []

    def backend(self, be: Backend) -> None:
        obs = self.observed.get(be.name)
        if obs is None:
            return  # not in the running config: it arrives with the next reload
        for srv in be.servers:
            o = obs.get(srv.name)
            if o is not None:
                self.slot(be, srv, o)

    def slot(self, be: Backend, want: Server, o: SlotObs) -> None:
        n_wake = len(self.wake)
        self._slot(be, want, o)
        if len(self.wake) > n_wake:
            self.wake_backends.add(be.name)

    def _slot(self, be: Backend, want: Server, o: SlotObs) -> None:
        key = (be.name, want.name)
        ref = f"{be.shown}/{want.name}"
        mem = self.memory.get(key)
        if mem is None:
            mem = self.known.get(key)
        if mem is None:
            # first look at this slot: adopt what HAProxy runs if it is what we want
            same = not o.maint and (o.address, o.port) == (want.address, want.port) and want.instance
            mem = SlotMemory(want.instance if same else None, self.now - (1e9 if same else 0), None, bool(same))
            if not same and not o.maint:
                mem = SlotMemory("?", self.now - 1e9, None, True)  # something unknown runs here
        current = mem.instance
        if current is not None and current != want.instance:
            # the slot's occupant leaves (or is replaced): drain it first
            if not self._drained(key, be, mem, o, want):
                return
            current = None
            mem = SlotMemory(None)
        if want.instance is None:
            if not o.maint:
                self.ops.append(SetState(be.name, want.name, "maint",
                                         Change("server-remove", ref, "slot freed: its instance is gone")))
            self.memory[key] = SlotMemory(None)
            return
        if current is None:
            self.fill(key, be, want, o)
            return
        self.update(key, be, want, o, mem)

    def _drained(self, key: tuple[str, str], be: Backend, mem: SlotMemory, o: SlotObs, want: Server) -> bool:
        if o.maint or self.policy.drain_timeout <= 0 or mem.instance == "?":
            return True
        backend, ref = be.name, f"{be.shown}/{want.name}"
        if mem.drain_since is None:
            self.ops.append(SetState(backend, want.name, "drain", Change(
                "server-drain", ref, f"instance {mem.instance} left: draining before the slot is freed",
                {"instance": mem.instance})))
            self.memory[key] = replace(mem, drain_since=self.now)
            # look again soon: a slot with no session left is freed at once, not at the deadline
            self.wake.append(self.now + min(0.05, self.policy.drain_timeout))
            if want.instance is not None:
                self.waiting.append(ref)
            return False
        deadline = mem.drain_since + self.policy.drain_timeout
        if o.sessions > 0 and self.now < deadline:
            self.wake.append(min(deadline, self.now + 0.1))
            if want.instance is not None:
                self.waiting.append(ref)
            return False
        return True

    def fill(self, key: tuple[str, str], be: Backend, want: Server, o: SlotObs) -> None:
        backend, ref = be.name, f"{be.shown}/{want.name}"
        weight = ramp_weight(want.weight, self.now, self.now, self.policy)
        detail = {"instance": want.instance, "address": want.endpoint, "weight": weight}
        self.ops.append(SetAddress(backend, want.name, want.address, want.port, Change(
            "server-add", ref, f"instance {want.instance} is up: slot points at it", detail)))
        self.ops.append(SetWeight(backend, want.name, weight, Change(
            "server-add", ref, f"instance {want.instance} starts at weight {weight}", detail)))
        if want.state != "maint":
            self.ops.append(SetState(backend, want.name, want.state, Change(
                "server-add", ref, f"instance {want.instance} is now routable", detail)))
        elif not o.maint:
            self.ops.append(SetState(backend, want.name, "maint", Change("server-state", ref, "instance is unhealthy")))
        self.memory[key] = SlotMemory(want.instance, self.now, None, weight >= want.weight)
        nxt = next_ramp_at(want.weight, self.now, self.now, self.policy)
        if nxt is not None:
            self.wake.append(nxt)

    def update(self, key: tuple[str, str], be: Backend, want: Server, o: SlotObs, mem: SlotMemory) -> None:
        backend, ref = be.name, f"{be.shown}/{want.name}"
        if (o.address, o.port) != (want.address, want.port):
            self.ops.append(SetAddress(backend, want.name, want.address, want.port, Change(
                "server-update", ref, f"instance {want.instance} moved to {want.endpoint}")))
        weight = want.weight if mem.ramped else ramp_weight(want.weight, mem.placed_at, self.now, self.policy)
        if weight != o.weight:
            kind: ChangeKind = "weight-ramp" if weight < want.weight or not mem.ramped else "server-update"
            reason = (f"ramping to {want.weight}: step to {weight}" if kind == "weight-ramp"
                      else f"weight set to {weight}")
            self.ops.append(SetWeight(backend, want.name, weight, Change(kind, ref, reason, {"weight": weight})))
        ramped = mem.ramped or weight >= want.weight
        if not ramped:
            nxt = next_ramp_at(want.weight, mem.placed_at, self.now, self.policy)
            if nxt is not None:
                self.wake.append(nxt)
        state = {"ready": (False, False), "drain": (False, True), "maint": (True, False)}[want.state]
        if (o.maint, o.drain) != state:
            reason = {"ready": "back in service", "drain": "drained by request: no new sessions",
                      "maint": "in maintenance or unhealthy"}[want.state]
            self.ops.append(SetState(backend, want.name, want.state, Change("server-state", ref, reason)))
        self.memory[key] = SlotMemory(want.instance, mem.placed_at, None, ramped)


def plan_certs(desired: Config, current: Mapping[str, str], paths: set[str] | None = None) -> list[RuntimeOp]:
    """Certificate changes: ``current`` is what HAProxy serves through the main frontend's crt-list (file path →
    the leaf's SHA1), of ``paths`` only when given. A desired certificate HAProxy lacks, or serves another leaf
    of, is put (new or replaced, through the Runtime API); one it serves that the registry no longer has is
    removed."""
    crt_list = next((f.tls.crt_list for f in desired.frontends if f.tls is not None), None)
    if crt_list is None:
        return []
    ops: list[RuntimeOp] = []
    wanted = {c.path for c in desired.certificates}
    for path in sorted(current.keys() - wanted):
        name = path.rsplit("/", 1)[-1].removesuffix(".pem")
        ops.append(CertDel(name, path, crt_list, Change("certificate-remove", f"certificate:{name}",
                                                        "no longer in the registry: its hosts get the default "
                                                        "certificate")))
    for c in desired.certificates:
        if paths is not None and c.path not in paths:
            continue
        have = current.get(c.path)
        if have == c.sha1:
            continue
        hosts = ", ".join(c.hosts)
        change = (Change("certificate-add", f"certificate:{c.name}", f"served for {hosts}", {"sha1": c.sha1})
                  if have is None else
                  Change("certificate-update", f"certificate:{c.name}", f"replaced for {hosts}",
                         {"sha1": c.sha1, "was": have}))
        ops.append(CertPut(c.name, c.path, crt_list, c.pem, change))
    return ops


def plan_maps(desired: Config, current: Mapping[str, Mapping[str, str]], map_paths: Mapping[str, str],
              applied: Config | None = None, keys: Mapping[str, Set[str]] | None = None) -> list[RuntimeOp]:
    """Map entry changes: ``current`` is file name → {key: value} as HAProxy has it; ``map_paths`` file name →
    the path HAProxy knows the map by. In a map of backends (a frontend's host or path map), an entry is not
    pointed at a backend HAProxy does not run yet (not in ``applied``): it stays as it is until the reload that
    brings the backend, which loads the map file with it (a service leaving its spare for a backend of its own
    keeps being served by the spare until then). The changes name backends as operators know them
    (``Backend.shown``). ``keys`` given (map → keys): only those entries of only those maps are compared (what a
    change of one service record touched), the rest of each map is not read."""
    ops: list[RuntimeOp] = []
    backend_maps = {m for fe in desired.frontends for m in (fe.host_map, fe.path_map) if m}
    for name, content in desired.maps:
        path = map_paths.get(name, name)
        have = current.get(name, {})
        if keys is None:
            want = dict(line.split(" ", 1) for line in content.splitlines() if line)
        elif name in keys:
            want = {k: v for k in keys[name] if (v := map_value(content, k)) is not None}
            have = {k: have[k] for k in keys[name] if k in have}
        else:
            continue
        shown: Callable[[str], str] = str
        if name in backend_maps:
            shown = desired.shown
            if applied is not None:
                want = {k: (val if k not in have or applied.backend(val) is not None else have[k])
                        for k, val in want.items()}
        for k in sorted(have.keys() - want.keys()):
            ops.append(MapDel(path, k, Change("map-update", f"map:{name}", f"{k} removed")))
        for k in sorted(want):
            if k not in have:
                ops.append(MapAdd(path, k, want[k], Change("map-update", f"map:{name}", f"{k} → {shown(want[k])}")))
            elif have[k] != want[k]:
                ops.append(MapSet(path, k, want[k], Change("map-update", f"map:{name}",
                                                           f"{k} → {shown(want[k])} (was {shown(have[k])})")))
    return ops


def structure_diff(applied: Config | None, desired: Config) -> tuple[ReloadCause, ...]:
    """What changed in the structure, one ``ReloadCause`` per backend, frontend or the globals."""
    if applied is None:
        return (ReloadCause("structure", "haproxy", "first configuration"),)
    out: list[ReloadCause] = []

    def cause(kind: CauseKind, what: str, name: str, words: str) -> None:
        out.append(ReloadCause(kind, f"{what} {name}", f"{what} {name} {words}"))

    old_b = {b.name: b for b in applied.backends}
    new_b = {b.name: b for b in desired.backends}
    for n in sorted(new_b.keys() - old_b.keys()):
        cause("backend-added", "backend", n, "added")
    for n in sorted(old_b.keys() - new_b.keys()):
        cause("backend-removed", "backend", n, "removed")
    for n in sorted(new_b.keys() & old_b.keys()):
        a, b = old_b[n].structure(), new_b[n].structure()
        if a != b:
            if old_b[n].slotted and new_b[n].slotted and len(old_b[n].servers) != len(new_b[n].servers):
                cause("backend-slots", "backend", n, f"slots {len(old_b[n].servers)} → {len(new_b[n].servers)}")
            else:
                cause("backend-changed", "backend", n, "changed")
    old_f = {f.name: f for f in applied.frontends}
    new_f = {f.name: f for f in desired.frontends}
    for n in sorted(new_f.keys() - old_f.keys()):
        cause("frontend-added", "frontend", n, "added")
    for n in sorted(old_f.keys() - new_f.keys()):
        cause("frontend-removed", "frontend", n, "removed")
    for n in sorted(new_f.keys() & old_f.keys()):
        if old_f[n] != new_f[n]:
            cause("frontend-changed", "frontend", n, "changed")
    if applied.globals != desired.globals:
        out.append(ReloadCause("globals", "haproxy", "global settings changed"))
    return tuple(out) or (ReloadCause("structure", "haproxy", "structure changed"),)


def plan(desired: Config, observed: Observed, memory: Memory, applied: Config | None, now: float,
         policy: Policy, maps_now: Mapping[str, Mapping[str, str]] | None = None,
         map_paths: Mapping[str, str] | None = None, backends: set[str] | None = None,
         certs_now: Mapping[str, str] | None = None, cert_paths: set[str] | None = None,
         map_keys: Mapping[str, Set[str]] | None = None) -> Plan:
    """Everything to do now. ``backends`` limits the membership diff to those backends (the agent passes
    the ones its events touched, so a change in one service costs O(that service)); ``map_keys`` the map diff to
    those entries (``plan_maps``). ``certs_now`` (what HAProxy
    serves through the crt-list; of ``cert_paths`` only, when given) given: certificates are put or removed too,
    before the maps (a redirect to HTTPS that a new certificate allows comes after the certificate)."""
    p = _Planner(observed, memory, now, policy)
    if backends is None:
        for be in desired.backends:
            if be.slotted:
                p.backend(be)
    else:
        for name in sorted(backends):
            limited = desired.backend(name)
            if limited is not None and limited.slotted:
                p.backend(limited)
    ops = p.ops
    if certs_now is not None:
        ops = ops + plan_certs(desired, certs_now, cert_paths)
    if maps_now is not None:
        ops = ops + plan_maps(desired, maps_now, map_paths or {}, applied, map_keys)
    reload = None
    if applied is None or desired.structure_key() != applied.structure_key():
        reload = Reload(structure_diff(applied, desired))
    elif desired.pools_low:
        # in the background: the new services are routable already; the reload gives them backends of their own
        reload = Reload(tuple(ReloadCause("pool-refill", f"pool {name}", f"pool {name} refilled ({free} of {size} "
                                          "spares were free)") for name, free, size in desired.pools_low))
    return Plan(tuple(ops), reload, ChainMap(p.memory, dict(memory) if not isinstance(memory, dict) else memory),
                min(p.wake) if p.wake else None, frozenset(p.wake_backends), tuple(p.waiting), p.memory)
