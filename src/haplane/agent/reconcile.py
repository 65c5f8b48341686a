"""The agent's loop: keep one HAProxy in sync with the registry.

    store ──watch──▶ mirror ──compose, observe, plan──▶ runtime operations (now)  ──apply──▶ HAProxy
                                                      └▶ reload (coalesced: at most one per reload_interval,
                                                                 at most reload_budget a minute)

This module is the loop alone: it watches the store, coalesces bursts of events, resyncs from scratch every
``resync_interval`` (and after a failure), heals a dead HAProxy, wakes up for ramps and drains, and decides when
to converge and when to reload. The work is done by its rooms, each with one job:

- ``planning``: compose (incrementally for an instance event or a service record that changes no structure),
  observe HAProxy, plan;
- ``apply``: run a plan's operations or a reload, and return what happened as Changes;
- ``quarantine``: hold back the owners of lines ``haproxy -c`` rejects, release them when their record changes;
- ``activity``: record every Change; ``mirror``: the store's records in memory.

Membership events go straight through the Runtime API and never wait for a reload; so do service records that
change no structure (a new service taking a pool's spare, a route moved), composed and planned alone. Structural
changes are rendered, checked with ``haproxy -c``, and reloaded through the master CLI; a config HAProxy rejects is
never written where HAProxy would load it. Readers outside the agent (API, metrics, CLI) see it through
``haplane.agent.view.AgentView``, never through its members.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable

import jinja2

from haplane.agent.activity import Activity
from haplane.agent.apply import Outcome, apply_ops, apply_ops_and_read, apply_reload, held_owner
from haplane.agent.budget import ReloadBudget
from haplane.agent.mirror import Mirror, Touched
from haplane.agent.planning import Composer, compose_observe_plan, plan_seen
from haplane.agent.quarantine import Quarantine, RuntimeHolds
from haplane.agent.seen import Seeing, SeenSlots, as_expected, expected
from haplane.agent.state import AgentOptions, AgentStatus
from haplane.backoff import backoff_delay
from haplane.compose import ComposeOptions
from haplane.errors import Compacted, HaplaneError, HAProxyError, StoreError
from haplane.model.change import Change, ReloadCause
from haplane.model.haproxy import Config
from haplane.model.observed import CheckResult
from haplane.model.records import Instance, Registry
from haplane.plan import Plan, Reload, SlotMemory
from haplane.render import Rendered, render_config
from haplane.store.base import Event, Store
from haplane.store.keys import ROOT
from haplane.typing import HAProxyControl, Reporter

__all__ = ["Agent"]

log = logging.getLogger("haplane.agent")
NEVER = float("inf")
STORE_RETRY_BASE, STORE_RETRY_CAP = 0.2, 5.0  # seconds: the first wait for a store that failed, the longest
REFILL_WAIT = 10  # reload intervals a pool refill may wait for the store to be quiet


class Agent:
    """One agent beside one HAProxy. ``run()`` until cancelled; readers use ``AgentView(agent)``."""

    def __init__(self, store: Store, control: HAProxyControl, options: AgentOptions, activity: Activity,
                 template: jinja2.Template | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.control = control
        self.options = options
        self.activity = activity
        self.template = template
        self.clock = clock
        self.mirror = Mirror()
        self.composer = Composer(self.mirror, options.compose)
        self.quarantine = Quarantine()
        self.holds = RuntimeHolds()  # items whose runtime change HAProxy refused
        self.desired: Config | None = None  # what the registry asks for now
        self.applied: Config | None = None  # what HAProxy was last started or reloaded with
        self.applied_text: str | None = None
        self.memory: dict[tuple[str, str], SlotMemory] = {}  # ramp and drain bookkeeping, per slot
        self.seen = SeenSlots()  # each backend's slots as HAProxy last answered (a membership change plans on it)
        self.status = AgentStatus()
        self.ready = asyncio.Event()  # set once HAProxy runs the registry's config
        self.reporter: Reporter | None = None  # a node report writer, when this node reports to the store
        self.routable_callbacks: list[Callable[[float], None]] = []  # seconds from a batch of events to applied
        self.event_callbacks: list[Callable[[list[Event]], None]] = []  # store events, before they are applied
        self._events: asyncio.Queue[list[Event]] = asyncio.Queue()
        self._resync_requested = False
        self._heal_requested = False
        self._exit_seen = asyncio.Event()  # set with _heal_requested: wakes the waits between the store's retries
        self._healing = False
        self._reload_wanted: Reload | None = None
        self._wanted_at = -NEVER  # when the wanted reload was first wanted
        self._events_at = -NEVER  # when the last batch of store events came
        self._reloading = False
        self._last_reload_at = -NEVER
        self.budget = ReloadBudget(options.reload_budget)
        self._held_said = False  # a reload the budget holds back was logged (once per hold)
        self._wake_at = NEVER
        self._wake_backends: set[str] = set()
        self._next_resync = NEVER
        self._failed_steps = 0  # steps that failed in a row (backoff of the resync after them)
        control.on_exit(self._haproxy_exited)

    # --- what readers may ask ----------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing queued, no reload pending or running (for tests, node reports and `haplane plan`)."""
        return (self._events.empty() and self._reload_wanted is None and not self._reloading
                and not self._heal_requested and not self._healing)

    @property
    def reload_pending(self) -> Reload | None:
        """The reload the agent waits to do (coalescing), with its causes; None when there is none."""
        return self._reload_wanted

    @property
    def revision(self) -> int:
        """The store revision the agent's mirror of the store holds (applied or about to be)."""
        return self.mirror.revision

    def registry(self) -> Registry:
        """The registry's records as the agent has them (its mirror of the store)."""
        return self.mirror.registry()

    def instance(self, service: str, iid: str) -> Instance | None:
        return self.mirror.instance(service, iid)

    def compose_options(self) -> ComposeOptions:
        """The compose options in force: the agent's, with the quarantined and held owners left out and the
        spares services hold."""
        return self.composer.options_for(self._excluded())

    def _excluded(self) -> frozenset[str]:
        return self.quarantine.excluded | self.holds.excluded

    async def preview(self) -> tuple[Config, Plan]:
        """What the agent would do if it woke up now: the desired config and the plan to it (read from HAProxy;
        nothing is applied, the agent's memory is not changed)."""
        return await compose_observe_plan(self.control, self.registry(), self.compose_options(),
                                          self.options.policy, memory=self.memory, applied=self.applied,
                                          now=self.clock())

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        await self._load_store(first=True)
        await self._first_apply()
        self.ready.set()
        watcher = asyncio.create_task(self._watch(), name="haplane-watch")
        reporter = asyncio.create_task(self.reporter.run(), name="haplane-node") if self.reporter else None
        try:
            await self._loop()
        finally:
            for task in (watcher, reporter):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _load_store(self, first: bool = False) -> None:
        """Read the whole store into the mirror, retrying with backoff until it can be read (an HAProxy that
        exits meanwhile is restarted at once). ``first`` (at start, nothing composed yet): while it cannot, HAProxy
        serves the last good config on disk."""
        failures = 0
        while True:
            try:
                kvs, rev = await self.store.range(ROOT)
                self.mirror.load(kvs, rev)
                if failures:
                    log.warning("the store can be read again (revision %d): converging", rev)
                self.status.store_ok = True
                self.status.store_error = None
                return
            except StoreError as exc:
                self.status.store_ok = False
                self.status.store_error = str(exc)
                self.status.last_error = f"store: {exc}"
                delay = backoff_delay(failures, STORE_RETRY_BASE, STORE_RETRY_CAP)
                failures += 1
                if first and failures == 1:
                    await self._serve_last_good(exc)
                log.log(logging.WARNING if failures <= 3 or delay < STORE_RETRY_CAP else logging.DEBUG,
                        "store unreachable (%s); retrying in %.1fs", exc, delay)
                await self._wait_healing(delay)

    async def _wait_healing(self, delay: float) -> None:
        """Wait ``delay`` seconds before the store's next try, healing at once an HAProxy that exits meanwhile:
        routing comes back from the last good config (converging to the registry as last read, if it was read),
        not when the store answers again."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while True:
            self._exit_seen.clear()  # before reading the flag: an exit after this line sets the event again
            if self._heal_requested:
                self._heal_requested = False
                await self._heal()
                continue
            left = until - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._exit_seen.wait()

    async def _serve_last_good(self, exc: StoreError) -> None:
        """The store cannot be read at start: serve the last good config on disk meanwhile, and say so once,
        loudly, with what to do."""
        what = (f"the store {self.store.url} cannot be read ({exc}). Repair or restore it: for SQLite, stop "
                "haplane, move the damaged file aside and restore a backup (docs/deploy.md, 'Backups'); haplane "
                "retries the store with backoff and converges once it can be read")
        try:
            served = await self.control.serve_last_good()
        except HaplaneError as err:
            served, what = False, f"{what}. HAProxy could not be started from the last good config: {err}"
        self.status.haproxy_ok = served
        if served:
            log.error("%s. Meanwhile HAProxy serves the last good config; no registry change reaches it", what)
        else:
            log.error("%s. There is no last good config to serve: HAProxy is not running", what)

    async def _first_apply(self) -> None:
        self.desired = self._compose_full()
        rendered = self._render(self.desired)
        verdict = await self.control.check(rendered)
        if not verdict.ok:  # ConfigCheckFailed when nothing can be held back: the agent cannot start
            rendered = await self._quarantine(rendered, verdict)
            self.desired = rendered.config
        await self.control.start(rendered)
        self._applied(rendered)
        cause = ReloadCause("start", "haproxy", "started with the registry's configuration")
        self.activity.record(Change("reload", "haproxy", cause.words, {"revision": self.mirror.revision,
                                                                       "causes": [cause.to_dict()]}))
        await self._converge(None)
        self._next_resync = self.clock() + self.options.resync_interval

    # --- the loop --------------------------------------------------------------------------------------------

    def _haproxy_exited(self) -> None:
        """HAProxy exited without being asked to (the control saw it): heal it at the loop's next turn, now."""
        self._heal_requested = True
        self._exit_seen.set()
        self._events.put_nowait([])

    async def _watch(self) -> None:
        failures = 0  # since the watch last delivered
        while True:
            start = self.mirror.revision + 1
            try:
                async for batch in self.store.watch(ROOT, start):
                    self._events.put_nowait(batch)
                    if not self.status.store_ok:
                        self.status.store_ok = True
                    failures = 0
            except Compacted as exc:
                log.warning("watch fell behind (%s): full resync", exc)
                self._resync_requested = True
                self._events.put_nowait([])
            except StoreError as exc:
                self.status.store_ok = False
                self.status.last_error = f"store: {exc}"
                delay = backoff_delay(failures, STORE_RETRY_BASE, STORE_RETRY_CAP)
                failures += 1
                log.warning("store watch failed (%s); serving the last good config, retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                self._resync_requested = True
                self._events.put_nowait([])

    async def _loop(self) -> None:
        while True:
            now = self.clock()
            reload_at = max(self._reload_at(now), now) if self._reload_wanted else NEVER
            deadline = min(self._wake_at, self._next_resync, reload_at)
            timeout = None if deadline == NEVER else max(0.0, deadline - now)
            batches: list[list[Event]] = []
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the item of a get() that completes
                # in the same turn as a cancel and drops the cancel, so the agent would run on, never stopping
                async with asyncio.timeout(timeout):
                    batches.append(await self._events.get())
            except TimeoutError:
                pass
            if batches:
                if self.options.coalesce > 0:
                    await asyncio.sleep(self.options.coalesce)
                while not self._events.empty():
                    batches.append(self._events.get_nowait())
            try:
                await self._step(batches)
            except HAProxyError as exc:
                self.seen.forget()
                self.status.haproxy_ok = False
                self.status.last_error = f"haproxy: {exc}"
                log.warning("HAProxy error: %s; resync in %.1fs", exc, self._resync_soon())
                await self._heal()
            except HaplaneError as exc:
                self.status.last_error = str(exc)
                log.exception("agent step failed; resync in %.1fs", self._resync_soon())
                await asyncio.sleep(0.5)
            except Exception as exc:  # a bug must not stop the loop: HAProxy keeps routing, the agent resyncs
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("agent step failed unexpectedly; resync in %.1fs", self._resync_soon())
                await asyncio.sleep(0.5)

    def _resync_soon(self) -> float:
        """After a failed step: a full resync after a backoff (0.2 s, doubling up to 5 s while steps keep
        failing), not at the next event nor in a hot loop. The delay."""
        delay = backoff_delay(self._failed_steps, STORE_RETRY_BASE, STORE_RETRY_CAP)
        self._failed_steps += 1
        self._next_resync = min(self._next_resync, self.clock() + delay)
        return delay

    async def _step(self, batches: list[list[Event]]) -> None:
        t0 = self.clock()
        events = [e for b in batches for e in b]
        if self._heal_requested:
            self._heal_requested = False
            await self._heal()
            if events:  # the events that came with the exit are in the store: a full pass takes them in
                self._resync_requested = True
        now = self.clock()
        if self._resync_requested or now >= self._next_resync:
            self._resync_requested = False
            self._wake_at, self._wake_backends = NEVER, set()  # the full pass plans every wake again
            await self._resync()  # (and a reload it asks for is not starved by the next one)
        elif events:
            self._events_at = t0
            for ecb in self.event_callbacks:
                ecb(events)
            touched = self.mirror.apply(events)
            self.status.bad_records = dict(self.mirror.bad)
            await self._converge(touched)
            for cb in self.routable_callbacks:
                cb(self.clock() - t0)
        elif now >= self._wake_at:
            self._wake_at = NEVER
            backends, self._wake_backends = self._wake_backends, set()
            await self._converge(Touched(services=set(), structural=False), timers=backends)
        if self._reload_wanted:
            now = self.clock()
            if now >= self._reload_at(now):
                await self._reload()
            else:
                self._say_held(now)

    async def _resync(self) -> None:
        """Re-read the store and HAProxy from scratch: nothing missed or drifted survives this."""
        await self._load_store()
        if not await self.control.alive():
            await self._heal()
            return
        await self._converge(None)
        self._next_resync = self.clock() + self.options.resync_interval
        self._failed_steps = 0
        self.status.haproxy_ok = True  # it answered every read and command of a full pass

    async def _heal(self) -> None:
        """HAProxy is gone or not answering: restart it from the last good config and converge again. If the
        restart fails (the ports still held, say), the next try comes half a second later."""
        if await self.control.alive():
            return
        self._healing = True
        try:
            await self._restart()
        finally:
            self._healing = False

    async def _restart(self) -> None:
        t0 = self.clock()
        try:
            await self.control.restart_from_last_good()
        except HaplaneError as exc:
            self.status.haproxy_ok = False
            self.status.last_error = f"haproxy: restart failed: {exc}"
            log.error("HAProxy could not be restarted from the last good config (%s); trying again in 0.5s", exc)
            self.activity.record(Change("restart", "haproxy", "HAProxy was not running and could not be "
                                                              "restarted from the last good config",
                                        {"error": str(exc)}), "failed")
            asyncio.get_running_loop().call_later(0.5, self._haproxy_exited)
            return
        self.memory.clear()
        self.seen.forget()
        self.status.haproxy_ok = True
        if self.applied is not None:  # else the store was never read: the last good config is all there is
            await self._converge(None)
        took = self.clock() - t0
        self.activity.record(Change("restart", "haproxy", "HAProxy was not running: restarted from the last "
                                                          "good config", {"seconds": round(took, 3)}))

    # --- converge: compose, observe, plan, apply -----------------------------------------------------------

    def _compose_full(self, to_reload: bool = False) -> Config:
        """Everything the registry asks for: new services in the spares of the pools HAProxy runs, or, for a
        config to (re)load with (``to_reload``), every service in a backend of its own."""
        for change in self.quarantine.release_changed(self.mirror.fingerprint):
            self.activity.record(change)
        self.status.quarantined = self.quarantine.messages()
        self._release_holds()
        return self.composer.full(self._excluded(), None if to_reload else self.applied)

    def _release_holds(self) -> None:
        """Try again the held items whose record changed (at every pass: an instance event releases its own)."""
        for change in self.holds.release_changed(self.mirror.fingerprint):
            self.activity.record(change)
        self.status.held = self.holds.messages()

    def _render(self, config: Config) -> Rendered:
        return render_config(config, self.template)

    async def _converge(self, touched: Touched | None, timers: set[str] | None = None) -> None:
        """Bring HAProxy to the desired state: runtime operations now, a reload if the structure changed.
        ``touched`` None means a full pass (after start, reload or resync)."""
        limit: set[str] | None
        map_keys: dict[str, set[str]] | None = None
        quick = self._service_change(touched) if touched is not None and touched.structural else None
        if touched is None:
            self.desired = self._compose_full()
            limit = None
        elif quick is not None:
            # service records alone, and no structure to change (a new service taking a pool's spare, a route
            # moved, a service gone from its spare): their backends and map entries, composed and planned alone
            self.desired, limit, map_keys = quick
        elif touched.structural:
            # A reload follows: plan runtime changes only for the services the events touched (the reload
            # and the full pass after it take care of the rest), so a new service among thousands does not
            # wait for a diff of every backend first; a changed Thalassa backend too (a dynamic backend switched
            # to another version keeps its slots in the rendered config: its members change through the runtime)
            self.desired = self._compose_full()
            limit = self.composer.touched_backends(touched, self._excluded())
        elif touched.certs or touched.maps:
            # a certificate or an ACME challenge: runtime state of the whole config (the crt-list, the maps), so
            # compose it whole; the backends the same events touched converge too
            self.desired = self._compose_full()
            limit = set(timers or ()) | self.composer.touched_backends(touched, self._excluded())
        else:
            assert self.desired is not None
            self._release_holds()
            self.desired, limit = self.composer.incremental(self.desired, touched, self._excluded())
            if timers:
                limit = limit | timers
            if not limit:
                self._set_revision()
                return
            if not timers and await self._membership(limit):
                self._set_revision()
                return
        # a certificate moves a map entry only through a tls: auto service (it redirects once covered)
        auto = bool(touched is not None and touched.certs
                    and any(s.tls == "auto" for s in self.mirror.services.values()))
        full_read = touched is None or (touched.structural and quick is None) or touched.maps or auto
        cert_paths = None
        if touched is not None and touched.certs:  # only the certificates the events named: O(1) in those loaded
            cert_paths = {f"{self.options.compose.certs_dir}/{name}.pem" for name in touched.certs}
        read_certs = touched is None or bool(touched.certs)
        _, p = await self._plan(self.desired, limit, full_read, read_certs, cert_paths, map_keys)
        if p.reload is None and touched is not None and touched.structural and limit is not None and touched.backends:
            # a Thalassa backend record changed but the structure did not (a dynamic backend now follows another
            # version): no reload will bring the rest along, so every backend converges through the runtime now. A
            # service record that changes no structure (a new service taking a pool's spare, a new host) has its
            # own backends, or the spare it holds, in ``limit`` already: no walk over every backend on its path
            _, p = await self._plan(self.desired, None, full_read, read_certs, cert_paths)
        await self._apply(p)
        if p.reload is not None:
            if self._reload_wanted is None:
                self._wanted_at = self.clock()
            self._reload_wanted = p.reload
        self._set_revision()

    async def _plan(self, desired: Config, limit: set[str] | None, read_maps: bool, read_certs: bool = False,
                    cert_paths: set[str] | None = None, map_keys: dict[str, set[str]] | None = None
                    ) -> tuple[Config, Plan]:
        return await compose_observe_plan(Seeing(self.control, self.seen), desired, self.compose_options(),
                                          self.options.policy,
                                          memory=self.memory, applied=self.applied, now=self.clock(),
                                          backends=limit, read_maps=read_maps, read_certs=read_certs,
                                          cert_paths=cert_paths, map_keys=map_keys)

    def _service_change(self, touched: Touched) -> tuple[Config, set[str], dict[str, set[str]]] | None:
        """``Composer.service_change`` for a batch of service records alone (no certificate, challenge or other
        record), when no quarantined owner or held item is released by it; None: compose the whole config."""
        if self.desired is None or touched.certs or touched.maps or touched.others:
            return None
        excluded = self._excluded()
        for change in self.quarantine.release_changed(self.mirror.fingerprint):
            self.activity.record(change)
        self.status.quarantined = self.quarantine.messages()
        self._release_holds()
        if self._excluded() != excluded:
            return None
        return self.composer.service_change(self.desired, self.applied, touched, excluded)

    def _set_revision(self) -> None:
        self.status.revision = self.mirror.revision

    def _record(self, outcome: Outcome) -> None:
        self.activity.record(outcome.change, outcome.result, **outcome.extra)

    async def _membership(self, limit: set[str]) -> bool:
        """A membership change in ONE Runtime API round trip: planned on what HAProxy last said of the backends in
        ``limit`` (``SeenSlots``), its operations sent with ``show servers state`` of those backends after them.
        The answer is what is seen from then on; when it is not what the operations should have left (HAProxy was
        changed behind the agent's back), the agent plans on it and sends what that plan finds at once. False,
        with nothing done, when a backend of ``limit`` was not seen since HAProxy last changed, or has a slot
        draining: read it first."""
        seen = self.seen.of(limit)
        if seen is None or self.desired is None:
            return False
        policy = self.options.policy
        first = plan_seen(self.desired, seen, policy, memory=self.memory, applied=self.applied, now=self.clock(),
                          backends=limit)
        outcomes, after = await apply_ops_and_read(self.control, first.ops, limit)
        self.seen.saw(after, limit)
        if first.reload is not None:
            self._reload_wanted = first.reload
        if not self._took(first, outcomes) or as_expected(after, expected(seen, first.ops)):
            return True
        # HAProxy was not as last read (changed behind the agent's back): plan on what it answered now
        log.info("HAProxy's slots in %s were not as last read: planning on them again", ", ".join(sorted(limit)))
        again = plan_seen(self.desired, after, policy, memory=self.memory, applied=self.applied, now=self.clock(),
                          backends=limit)
        await self._apply(again)
        return True

    async def _apply(self, p: Plan) -> None:
        self._took(p, await apply_ops(self.control, p.ops))

    def _took(self, p: Plan, outcomes: list[Outcome]) -> bool:
        """Record what ``p``'s operations did; hold what HAProxy refused. True if every one was taken."""
        for outcome in outcomes:
            self._record(outcome)
            if not outcome.ok:
                self._hold(outcome)
        ok = all(o.ok for o in outcomes)
        if ok:
            self.memory.update(p.memory_changes)
        else:
            self._resync_requested = True  # re-read HAProxy before trusting our memory again
            self.seen.forget()
        self.status.waiting = p.waiting
        if p.wake_at is not None:
            self._wake_at = min(self._wake_at, p.wake_at)
            self._wake_backends |= p.wake_backends
        return ok

    def _hold(self, refused: Outcome) -> None:
        """Hold the item HAProxy refused a change of (left out of the desired config, not retried until its
        record changes): one record and log line per hold, not one per attempt."""
        if refused.op is None:
            return
        owner = held_owner(refused.op, self.desired,
                           lambda name: spec.service if (spec := self.mirror.backends.get(name)) else None)
        if owner is None:
            return
        change = self.holds.hold(owner, str(refused.extra.get("answer", "")), str(refused.extra.get("command", "")),
                                 self.mirror.fingerprint)
        if change is not None:
            self.activity.record(change, "held")
            self.status.held = self.holds.messages()
            # a full pass now, without it: the rest of its slot's commands ran (HAProxy runs every command of a
            # batch), so the slot may be in service at its free address until that pass puts it back in maint
            self._resync_requested = True
            self._events.put_nowait([])

    # --- reloads -----------------------------------------------------------------------------------------------

    def _reload_at(self, now: float) -> float:
        """When the wanted reload may start: a ``reload_interval`` after the last one (bursts coalesce), and
        within the reload budget (at most ``reload_budget`` a minute). A reload that only refills pools is
        background work: it waits, besides, until the store has been quiet for a ``reload_interval`` (the instance
        written just after a new service's record is routed first, not after the reload: seconds at 1,000
        services), at most ``REFILL_WAIT`` reload intervals after it was wanted."""
        interval = self.options.reload_interval
        at = max(self._last_reload_at + interval, self.budget.next_at(now))
        wanted = self._reload_wanted
        if wanted is not None and all(c.kind == "pool-refill" for c in wanted.causes):
            at = max(at, min(self._events_at + interval, self._wanted_at + REFILL_WAIT * interval))
        return at

    def _say_held(self, now: float) -> None:
        """Say once that the budget holds a reload back (not the reload_interval's short waits)."""
        at = self.budget.next_at(now)
        if at <= now or self._held_said or self._reload_wanted is None:
            return
        self._held_said = True
        reason = self._reload_wanted.reason
        words = (f"{self.budget.per_minute} reloads in the last minute (reload_budget): the reload for "
                 f"'{reason}' waits {at - now:.1f}s; runtime changes go on meanwhile")
        log.warning("reload held back: %s", words)
        self.activity.record(Change("reload-held", "haproxy", words, {
            "budget": self.budget.per_minute, "wait_s": round(at - now, 3),
            "causes": [c.to_dict() for c in self._reload_wanted.causes]}), "pending")

    async def _quarantine(self, rendered: Rendered, verdict: CheckResult) -> Rendered:
        """The config without the owners of what ``haproxy -c`` rejected (held back until their record changes);
        ``ConfigCheckFailed`` when nothing that can be held back would do."""

        def recompose() -> Rendered:
            self.status.quarantined = self.quarantine.messages()
            return self._render(self.composer.full(self._excluded()))

        return await self.quarantine.until_valid(rendered, verdict, fingerprint=self.mirror.fingerprint,
                                                 recompose=recompose, check=self.control.check,
                                                 record=self.activity.record)

    async def _reload(self) -> None:
        self._reloading = True
        try:
            await self._do_reload()
        finally:
            self._reloading = False

    async def _do_reload(self) -> None:
        causes = self._reload_wanted.causes if self._reload_wanted else ()
        self._reload_wanted = None
        t0 = self.clock()
        self.desired = config = self._compose_full(to_reload=True)
        if self.applied is not None and config.structure_key() == self.applied.structure_key():
            # the change that asked for it was undone in the meantime; or a pool ran low only through spares
            # whose services are gone (their slots are free in HAProxy, or draining): they are free again
            self.composer.loaded()
            self.desired = self._compose_full()
            return
        rendered = self._render(config)
        t_render = self.clock()
        verdict = await self.control.check(rendered)
        t_check = self.clock()
        if not verdict.ok:
            try:
                rendered = await self._quarantine(rendered, verdict)
            except HaplaneError as exc:
                self.status.last_error = str(exc)
                return
            self.desired = config = rendered.config
            if self.applied is not None and config.structure_key() == self.applied.structure_key():
                return
        self._last_reload_at = self.clock()
        self.budget.spend(self._last_reload_at)
        self._held_said = False
        timings = {"compose_render": round((t_render - t0) * 1000, 1), "check": round((t_check - t_render) * 1000, 1)}
        count, outcome = await apply_reload(self.control, rendered, causes, self.applied_text, timings, self.clock)
        self._record(outcome)
        if count is None:
            self.status.last_error = f"reload: {outcome.change.detail.get('error')}"
            return
        self._applied(rendered)
        self.status.reloads = count
        self.status.last_reload = time.time()
        # slots of new backends were rendered filled; everything else converges through the runtime
        await self._converge(None)

    def _applied(self, rendered: Rendered) -> None:
        config, text = rendered.config, rendered.text
        self.applied = config
        self.seen.forget()  # a new worker: what the old one said of its slots may not hold
        self.composer.loaded()
        self.applied_text = text
        self.status.config_hash = hashlib.sha256(text.encode()).hexdigest()[:16]
        for be in config.backends:
            for s in be.servers:
                key = (be.name, s.name)
                if key not in self.memory and s.instance is not None:
                    self.memory[key] = SlotMemory(s.instance, self.clock(), None, True)
