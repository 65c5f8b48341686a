"""The agent: keep one HAProxy in sync with the registry.

    store ──watch──▶ mirror ──compose──▶ desired ──plan──▶ runtime commands (now)  ──▶ HAProxy
                                                        └▶ reload (coalesced: at most one per reload_interval)

Membership events go straight through the Runtime API and never wait for a reload. Structural changes
are rendered, checked with ``haproxy -c``, and reloaded through the master CLI; a config HAProxy rejects is
never written where HAProxy would load it. If ``haproxy -c`` names a line owned by one service, frontend or
backend, that owner is held back (quarantined) and the rest goes ahead. A periodic resync re-reads the
store and HAProxy, so nothing drifts for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import jinja2

from haplane.agent.activity import Activity
from haplane.agent.mirror import Mirror, Touched
from haplane.compose import ComposeOptions, compose, service_backends, thalassa_backend
from haplane.errors import Compacted, HaplaneError, HAProxyError, StoreError
from haplane.model.change import Change, ReloadCause, reason_of
from haplane.model.haproxy import Config
from haplane.plan import Plan, Policy, Reload, SlotMemory, plan
from haplane.registry import PREFIX
from haplane.render import Rendered, render_config
from haplane.store.base import Event, Store
from haplane.typing import HAProxyControl

log = logging.getLogger("haplane.agent")
NEVER = float("inf")


@dataclass(frozen=True)
class AgentOptions:
    compose: ComposeOptions = field(default_factory=ComposeOptions)
    policy: Policy = field(default_factory=Policy)
    reload_interval: float = 1.0
    coalesce: float = 0.002
    resync_interval: float = 30.0


@dataclass
class AgentStatus:
    revision: int = 0  # store revision applied
    config_hash: str = ""
    store_ok: bool = True
    haproxy_ok: bool = True
    last_error: str | None = None
    last_reload: float | None = None
    reloads: int = 0
    quarantined: dict[str, str] = field(default_factory=dict)
    waiting: tuple[str, ...] = ()
    bad_records: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "config_hash": self.config_hash, "store_ok": self.store_ok,
                "haproxy_ok": self.haproxy_ok, "last_error": self.last_error, "last_reload": self.last_reload,
                "reloads": self.reloads, "quarantined": dict(self.quarantined), "waiting": list(self.waiting),
                "bad_records": dict(self.bad_records)}


class Agent:
    def __init__(self, store: Store, control: HAProxyControl, options: AgentOptions, activity: Activity,
                 template: jinja2.Template | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.control = control
        self.options = options
        self.activity = activity
        self.template = template
        self.clock = clock
        self.mirror = Mirror()
        self.desired: Config | None = None
        self.applied: Config | None = None
        self.applied_text: str | None = None
        self.memory: dict[tuple[str, str], SlotMemory] = {}
        self.status = AgentStatus()
        self.quarantine: dict[str, tuple[str, str]] = {}  # owner → (message, fingerprint of its record)
        self._events: asyncio.Queue[list[Event]] = asyncio.Queue()
        self._resync_requested = False
        self._reload_wanted: Reload | None = None
        self._reloading = False
        self._last_reload_at = -NEVER
        self._wake_at = NEVER
        self._wake_backends: set[str] = set()
        self._next_resync = NEVER
        self.ready = asyncio.Event()
        self.routable_callbacks: list[Callable[[float], None]] = []  # metrics: seconds event→applied
        self._full: Config | None = None
        self.reporter: Any = None  # haplane.agent.nodes.NodeReporter, when this node reports to the store
        self._full_key: tuple[int, frozenset[str]] | None = None
        self.event_callbacks: list[Callable[[list[Event]], None]] = []  # metrics: store events, before applying

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        await self._load_store()
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

    async def _load_store(self) -> None:
        delay = 0.2
        while True:
            try:
                kvs, rev = await self.store.range(PREFIX)
                self.mirror.load(kvs, rev)
                self.status.store_ok = True
                return
            except StoreError as exc:
                self.status.store_ok = False
                self.status.last_error = f"store: {exc}"
                log.warning("store unreachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _first_apply(self) -> None:
        self.desired = self._compose_full()
        rendered = self._render(self.desired)
        verdict = await self.control.check(rendered)
        if not verdict.ok:
            rendered = await self._quarantine_until_valid(rendered, verdict.messages, verdict.lines,
                                                          verdict.proxies)
            self.desired = rendered.config
        await self.control.start(rendered)
        self._applied(rendered)
        cause = ReloadCause("start", "haproxy", "started with the registry's configuration")
        self.activity.record(Change("reload", "haproxy", cause.words, {"revision": self.mirror.revision,
                                                                       "causes": [cause.to_dict()]}))
        await self._converge(None)
        self._next_resync = self.clock() + self.options.resync_interval

    # --- the loop --------------------------------------------------------------------------------------------

    async def _watch(self) -> None:
        delay = 0.2
        while True:
            start = self.mirror.revision + 1
            try:
                async for batch in self.store.watch(PREFIX, start):
                    self._events.put_nowait(batch)
                    if not self.status.store_ok:
                        self.status.store_ok = True
                    delay = 0.2
            except Compacted as exc:
                log.warning("watch fell behind (%s): full resync", exc)
                self._resync_requested = True
                self._events.put_nowait([])
            except StoreError as exc:
                self.status.store_ok = False
                self.status.last_error = f"store: {exc}"
                log.warning("store watch failed (%s); serving the last good config, retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._resync_requested = True
                self._events.put_nowait([])

    async def _loop(self) -> None:
        while True:
            now = self.clock()
            reload_at = (max(self._last_reload_at + self.options.reload_interval, now)
                         if self._reload_wanted else NEVER)
            deadline = min(self._wake_at, self._next_resync, reload_at)
            timeout = None if deadline == NEVER else max(0.0, deadline - now)
            batches: list[list[Event]] = []
            try:
                batches.append(await asyncio.wait_for(self._events.get(), timeout))
                if self.options.coalesce > 0:
                    await asyncio.sleep(self.options.coalesce)
                while not self._events.empty():
                    batches.append(self._events.get_nowait())
            except TimeoutError:
                pass
            try:
                await self._step(batches)
            except HAProxyError as exc:
                self.status.haproxy_ok = False
                self.status.last_error = f"haproxy: {exc}"
                log.warning("HAProxy error: %s", exc)
                await self._heal()
            except HaplaneError as exc:
                self.status.last_error = str(exc)
                log.exception("agent step failed")
                await asyncio.sleep(0.5)

    async def _step(self, batches: list[list[Event]]) -> None:
        t0 = self.clock()
        events = [e for b in batches for e in b]
        now = self.clock()
        if self._resync_requested or now >= self._next_resync:
            self._resync_requested = False
            await self._resync()
            return
        if events:
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
        if self._reload_wanted and self.clock() >= self._last_reload_at + self.options.reload_interval:
            await self._reload()

    async def _resync(self) -> None:
        """Re-read the store and HAProxy from scratch: nothing missed or drifted survives this."""
        await self._load_store()
        if not await self.control.alive():
            await self._heal()
            return
        await self._converge(None)
        self._next_resync = self.clock() + self.options.resync_interval

    async def _heal(self) -> None:
        """HAProxy is gone or not answering: restart it from the last good config and converge again."""
        if await self.control.alive():
            return
        self.activity.record(Change("restart", "haproxy", "HAProxy was not running: restarted from the last "
                                                          "good config"))
        await self.control.restart_from_last_good()
        self.memory.clear()
        self.status.haproxy_ok = True
        await self._converge(None)

    # --- compose / plan / apply ----------------------------------------------------------------------------

    def _options(self) -> ComposeOptions:
        return replace(self.options.compose, excluded=frozenset(self.quarantine))

    def _compose_full(self) -> Config:
        self._release_quarantine()
        key = (self.mirror.revision, frozenset(self.quarantine))
        if self._full_key == key and self._full is not None:
            return self._full  # nothing changed since the last full compose (e.g. the step that wanted a reload)
        self._full = compose(self.mirror.registry(), self._options())
        self._full_key = key
        return self._full

    def _compose_incremental(self, touched: Touched) -> tuple[Config, set[str]]:
        """Re-compose only the backends of touched services (and dynamic backends following them)."""
        assert self.desired is not None
        opts = self._options()
        replaced: dict[str, Any] = {}
        for name in touched.services:
            svc = self.mirror.services.get(name)
            if svc is None or f"service:{name}" in opts.excluded:
                continue
            for be in service_backends(svc, self.mirror.service_instances(name), opts):
                replaced[be.name] = be
        by_service = {s: self.mirror.service_instances(s) for s in touched.services}
        for spec in self.mirror.backends.values():
            if spec.type == "dynamic" and spec.service in touched.services and spec.name not in replaced \
                    and f"backend:{spec.name}" not in opts.excluded:
                replaced[spec.name] = thalassa_backend(spec, by_service, opts)
        if not replaced:
            return self.desired, set()
        backends = tuple(replaced.get(b.name, b) for b in self.desired.backends)
        return replace(self.desired, backends=backends), set(replaced)

    def _release_quarantine(self) -> None:
        """Give a quarantined item another chance once its record changed."""
        for owner, (_msg, fp) in list(self.quarantine.items()):
            if self._fingerprint(owner) != fp:
                del self.quarantine[owner]
                self.activity.record(Change("release", owner, "its record changed: trying it again"))
        self.status.quarantined = {o: m for o, (m, _) in self.quarantine.items()}

    def _fingerprint(self, owner: str) -> str:
        kind, _, name = owner.partition(":")
        rec: Any = None
        if kind == "service":
            rec = self.mirror.services.get(name)
        elif kind == "frontend":
            rec = self.mirror.frontends.get(name)
        elif kind == "backend":
            rec = self.mirror.backends.get(name)
        return repr(rec)

    def _map_paths(self) -> dict[str, str]:
        """Map files are named by the path HAProxy loads them from (ComposeOptions.host_map)."""
        return {path: path for path, _ in (self.desired.maps if self.desired else ())}

    def _render(self, config: Config) -> Rendered:
        return render_config(config, self.template)

    async def _converge(self, touched: Touched | None, timers: set[str] | None = None) -> None:
        """Bring HAProxy to the desired state: runtime commands now, a reload if the structure changed.
        ``touched`` None means a full pass (after start, reload or resync)."""
        if touched is None:
            self.desired = self._compose_full()
            limit: set[str] | None = None
        elif touched.structural:
            # A reload follows: plan runtime changes only for the services the events touched (the reload
            # and the full pass after it take care of the rest), so a new service among thousands does not
            # wait for a diff of every backend first.
            self.desired = self._compose_full()
            opts = self._options()
            # a changed Thalassa backend too: a dynamic backend switched to another version keeps the same
            # slots in the rendered config (no reload), so its members change through the Runtime API only
            limit = set(touched.backends)
            for name in touched.services:
                svc = self.mirror.services.get(name)
                if svc is not None:
                    limit |= {be.name for be in service_backends(svc, self.mirror.service_instances(name), opts)}
        else:
            self.desired, limit = self._compose_incremental(touched)
            if timers:
                limit = limit | timers
            if not limit:
                self._set_revision()
                return
        assert self.desired is not None
        observed = await self.control.servers(limit)
        maps_now = None
        if self.desired.maps and (touched is None or touched.structural):
            maps_now = await self._maps_now()
        p = plan(self.desired, observed, self.memory, self.applied, self.clock(), self.options.policy,
                 maps_now=maps_now, map_paths=self._map_paths(), backends=limit)
        if p.reload is None and touched is not None and touched.structural and limit is not None:
            # a record changed but the structure did not (a dynamic backend now follows another version): no
            # reload will bring the rest along, so every backend converges through the runtime now
            observed = await self.control.servers(None)
            p = plan(self.desired, observed, self.memory, self.applied, self.clock(), self.options.policy,
                     maps_now=maps_now, map_paths=self._map_paths(), backends=None)
        await self._apply(p)
        if p.reload is not None:
            self._reload_wanted = p.reload
        self._set_revision()

    async def _maps_now(self) -> dict[str, dict[str, str]]:
        paths = self._map_paths()
        current = await self.control.maps(paths.values())
        return {name: current.get(path, {}) for name, path in paths.items()}

    def _set_revision(self) -> None:
        self.status.revision = self.mirror.revision

    async def _apply(self, p: Plan) -> None:
        if p.ops:
            results = await self.control.execute(p.ops)
            failed = False
            for res in results:
                if res.ok:
                    self.activity.record(res.op.change, "ok", command=res.command, op=res.op.verb)
                else:
                    failed = True
                    self.activity.record(res.op.change, "failed", command=res.command, op=res.op.verb,
                                         answer=res.answer)
            if failed:
                self._resync_requested = True  # re-read HAProxy before trusting our memory again
            else:
                self.memory.update(p.memory)
        else:
            self.memory.update(p.memory)
        self.status.waiting = p.waiting
        if p.wake_at is not None:
            self._wake_at = min(self._wake_at, p.wake_at)
            self._wake_backends |= p.wake_backends

    # --- reloads -----------------------------------------------------------------------------------------------

    async def _quarantine_until_valid(self, rendered: Rendered, messages: tuple[str, ...], lines: tuple[int, ...],
                                      proxies: tuple[str, ...]) -> Rendered:
        """Hold back the owners of the lines (and proxies) HAProxy rejects, until the rest passes. Raises
        ConfigCheckFailed when the fault is in nothing that can be held back (globals, the main frontend, a
        template)."""
        from haplane.errors import ConfigCheckFailed

        for _ in range(5):
            owners = rendered.owners(lines, proxies) - {"", "frontend:http"}
            if not owners:
                self.activity.record(Change("check-failed", "haproxy", "haproxy -c rejected the config; the "
                                            "last good config stays in force", {"messages": list(messages)}),
                                     "failed")
                raise ConfigCheckFailed(messages, lines)
            for owner in owners:
                msg = "; ".join(messages)
                self.quarantine[owner] = (msg, self._fingerprint(owner))
                self.activity.record(Change("quarantine", owner, "haproxy -c rejected its lines: held back, the "
                                            "rest is applied", {"messages": list(messages)}), "quarantined")
            self.status.quarantined = {o: m for o, (m, _) in self.quarantine.items()}
            rendered = self._render(compose(self.mirror.registry(), self._options()))
            verdict = await self.control.check(rendered)
            if verdict.ok:
                return rendered
            messages, lines, proxies = verdict.messages, verdict.lines, verdict.proxies
        raise ConfigCheckFailed(messages, lines)

    @property
    def idle(self) -> bool:
        """Nothing queued, no reload pending or running (for tests and `haplane plan`)."""
        return self._events.empty() and self._reload_wanted is None and not self._reloading

    async def _reload(self) -> None:
        self._reloading = True
        try:
            await self._do_reload()
        finally:
            self._reloading = False

    async def _do_reload(self) -> None:
        causes = self._reload_wanted.causes if self._reload_wanted else ()
        reason = reason_of(causes)
        self._reload_wanted = None
        t0 = self.clock()
        self.desired = self._compose_full()
        config = self.desired
        if self.applied is not None and config.structure_key() == self.applied.structure_key():
            return  # the change that asked for it was undone in the meantime
        rendered = self._render(config)
        t_render = self.clock()
        verdict = await self.control.check(rendered)
        t_check = self.clock()
        if not verdict.ok:
            try:
                rendered = await self._quarantine_until_valid(rendered, verdict.messages, verdict.lines,
                                                              verdict.proxies)
            except HaplaneError as exc:
                self.status.last_error = str(exc)
                return
            self.desired = config = rendered.config
            if self.applied is not None and config.structure_key() == self.applied.structure_key():
                return
        text = rendered.text
        diff = "".join(difflib.unified_diff((self.applied_text or "").splitlines(True), text.splitlines(True),
                                            "running", "new", n=1))
        self._last_reload_at = t_reload = self.clock()
        structured = [c.to_dict() for c in causes]
        try:
            count = await self.control.reload(rendered)
        except HAProxyError as exc:
            self.status.last_error = f"reload: {exc}"
            self.activity.record(Change("reload-failed", "haproxy", f"{reason}: reload failed, the last good "
                                        "config stays in force", {"error": str(exc), "diff": diff[:20000],
                                                                  "causes": structured}),
                                 "failed")
            return
        self._applied(rendered)
        self.status.reloads = count
        self.status.last_reload = time.time()
        timings = {"compose_render": round((t_render - t0) * 1000, 1),
                   "check": round((t_check - t_render) * 1000, 1),
                   "reload": round((self.clock() - t_reload) * 1000, 1)}
        self.activity.record(Change("reload", "haproxy", reason, {"diff": diff[:20000], "check": "valid",
                                                                  "reloads": count, "timings_ms": timings,
                                                                  "causes": structured}))
        # slots of new backends were rendered filled; everything else converges through the runtime
        await self._converge(None)

    def _applied(self, rendered: Rendered) -> None:
        config, text = rendered.config, rendered.text
        self.applied = config
        self.applied_text = text
        self.status.config_hash = hashlib.sha256(text.encode()).hexdigest()[:16]
        for be in config.backends:
            for s in be.servers:
                key = (be.name, s.name)
                if key not in self.memory and s.instance is not None:
                    self.memory[key] = SlotMemory(s.instance, self.clock(), None, True)
