"""The Docker watcher: the running containers of one Docker host, pushed as one source set.

How it runs (``DockerSource.run(sink)``):
1. subscribe to the daemon's container events (``GET /events``, a stream of JSON lines) *first*, so nothing
   that happens during step 2 is missed;
2. list and inspect every running container, and push the whole view (one source-owned set, replacing
   everything this source pushed before: whatever stopped while we were away vanishes);
3. on each event (start, die, stop, kill, destroy, health_status, rename, update, pause, unpause, restart,
   oom) re-inspect that container and push the whole view again. Events arriving within ``debounce``
   seconds of the first one are one push; the window does not slide, so a steady stream never delays a push
   by more than ``debounce``;
   A container signalled to stop (the ``kill`` event of ``docker stop``/``docker kill`` with SIGTERM, SIGKILL,
   SIGINT, SIGQUIT or the container's own STOPSIGNAL) leaves at that event, before it dies: no new requests
   reach a container that is shutting down, and removal does not wait for Docker's ``die``. It is looked at
   again on its next start, at a resync, or after ``leave_grace`` seconds (default 30) if it still runs;
4. if the daemon goes away, the stream breaks or the sink refuses a push: retry with capped exponential
   back-off (from 0.2 s again after every loss), then go to 1.

The daemon away: the last pushed view stays for ``forget_after`` seconds (default 60): containers usually
outlive a daemon restart or crash (live-restore, restart policies), and HAProxy's own checks catch the dead
ones meanwhile. Past that the source pushes an empty set (it can vouch for nothing it cannot see) and
logs it; the resync after reconnecting brings back whatever still runs. ``forget_after=0`` keeps the view
until the daemon is back. Either way the resync after a reconnect drops every container that no longer runs.

Services: containers define their service too, but only the fields they state (mode, predicate, cookie,
port; a predicate implies its mode, Cosmonaut's default ``host``). Those fields replace the stored ones; the
others (balance, health check, or a cookie nobody's container names) stay as the API made them. Containers
of one service that disagree: the one started last wins, with a warning naming both.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx

from haplane.backoff import backoff_delay
from haplane.errors import ConfigurationError
from haplane.model.records import Instance
from haplane.sources.base import Sink
from haplane.sources.docker.containers import TERMINATING, ContainerView, container_view, signal_number
from haplane.sources.docker.daemon import client, docker_host, endpoint

if TYPE_CHECKING:
    from haplane.settings import Settings

log = logging.getLogger("haplane.sources.docker")

EVENTS = ("start", "die", "stop", "kill", "destroy", "health_status", "rename", "update", "pause", "unpause",
          "restart", "oom")


class _SinkFailed(Exception):
    """The sink refused or could not take a push (the registry or its API is away)."""


class DockerSource:
    """The containers of one Docker host, pushed as the source ``name`` (default ``docker-<hostname>``)."""

    def __init__(self, host: str | None = None, keyword: str = "asteroid", name: str | None = None,
                 host_address: str = "127.0.0.1", debounce: float = 0.002, backoff_cap: float = 10.0,
                 forget_after: float = 60.0, env: Mapping[str, str] | None = None, leave_grace: float = 30.0) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.host = host or docker_host(self.env)
        endpoint(self.host, self.env)  # bad settings fail here, not in the retry loop
        self.keyword = keyword or "asteroid"
        self.name = name or f"docker-{socket.gethostname().split('.')[0].lower()}"
        self.qualifier = self.name.removeprefix("docker-") or self.name
        self.host_address = host_address
        self.debounce = debounce
        self.backoff_cap = backoff_cap
        self.forget_after = forget_after
        self.leave_grace = leave_grace
        self._leaving: dict[str, float] = {}  # container id -> when to look again (signalled to stop)
        self.views: dict[str, ContainerView] = {}  # container id -> view
        self.connected = asyncio.Event()
        self.pushes = 0
        self.reconnects = 0
        self._pushed: dict[tuple[str, str], Instance] | None = None  # what the sink holds from us
        self._warned: dict[str, str] = {}
        self._conflicts: set[tuple[str, str, str]] = set()
        self._attempt = 0
        self._down_since: float | None = None
        self._sink_was_down = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerSource:
        return cls(host=getattr(settings, "docker_host", None) or None,
                   keyword=getattr(settings, "docker_keyword", "asteroid"),
                   name=getattr(settings, "docker_source", None) or None,
                   host_address=getattr(settings, "docker_host_address", "127.0.0.1"),
                   forget_after=getattr(settings, "docker_forget_after", 60.0))

    async def run(self, sink: Sink) -> None:
        """Watch until cancelled. Raises only for bad settings (ConfigurationError); an unreachable daemon or
        sink is retried with back-off."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._session(sink)
            except asyncio.CancelledError:
                raise
            except ConfigurationError:
                raise
            except Exception as exc:  # the watcher must outlive any upstream failure
                sink_failed = self._sink_was_down = isinstance(exc, _SinkFailed)
                cause = exc.__cause__ if sink_failed and exc.__cause__ else exc
                what = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
                if self.connected.is_set() or self._attempt == 0:
                    self.connected.clear()
                    self._attempt = 0
                    if sink_failed:
                        log.warning("docker %s: pushing to the registry failed (%s); retrying with back-off",
                                    self.name, what)
                    elif isinstance(exc, httpx.HTTPError | OSError | json.JSONDecodeError):
                        log.warning("docker %s: lost the daemon at %s (%s); retrying with back-off",
                                    self.name, self.host, what)
                    else:
                        log.exception("docker %s: unexpected failure; retrying with back-off", self.name)
                else:
                    log.debug("docker %s: attempt %d failed: %s", self.name, self._attempt, what)
                if self._down_since is None:
                    self._down_since = loop.time()
                self._attempt += 1
                delay = backoff_delay(self._attempt, 0.1, self.backoff_cap)
                if not sink_failed:
                    delay = await self._maybe_forget(sink, delay)
                await asyncio.sleep(delay)

    async def _maybe_forget(self, sink: Sink, delay: float) -> float:
        """Past ``forget_after`` without the daemon, withdraw what we pushed; returns how long to sleep."""
        if not self.forget_after or self._down_since is None or not self._pushed:
            return delay
        left = self._down_since + self.forget_after - asyncio.get_running_loop().time()
        if left > 0:
            return min(delay, left)
        log.warning("docker %s: daemon at %s unreachable for %.0f s: withdrawing its %d instance(s) until it "
                    "is back", self.name, self.host, self.forget_after, len(self._pushed))
        self.views = {}
        try:
            await self._push(sink, "daemon unreachable")
        except _SinkFailed as exc:
            log.warning("docker %s: could not withdraw the instances: %s", self.name, exc.__cause__ or exc)
        return delay

    async def _session(self, sink: Sink) -> None:
        filters = json.dumps({"type": ["container"], "event": list(EVENTS)})
        async with client(self.host, self.env) as api, client(self.host, self.env, timeout=None) as sc, \
                sc.stream("GET", "/events", params={"filters": filters}) as stream:
            stream.raise_for_status()
            await self._resync(api, sink)
            if self._attempt:
                self.reconnects += 1
                log.info("docker %s: %s back after %d attempt(s); resynced", self.name,
                         "the registry is" if self._sink_was_down else f"the daemon at {self.host} is", self._attempt)
            self._attempt = 0
            self._down_since = None
            self.connected.set()
            log.info("docker %s: watching %s: %d container(s) selected, %d instance(s)", self.name, self.host,
                     sum(1 for v in self.views.values() if v.selected), len(self._pushed or {}))
            queue: asyncio.Queue[str | BaseException] = asyncio.Queue()

            async def read() -> None:
                try:
                    async for line in stream.aiter_lines():
                        queue.put_nowait(line)
                    queue.put_nowait(httpx.ReadError("the daemon closed the event stream"))
                except (httpx.HTTPError, OSError) as exc:
                    queue.put_nowait(exc)

            reader = asyncio.create_task(read())
            loop = asyncio.get_running_loop()
            try:
                pending: dict[str, str] = {}  # container id -> last event
                deadline = 0.0
                while True:
                    wake = deadline if pending else min(self._leaving.values(), default=None)
                    if wake is not None:
                        try:  # asyncio.timeout: 3.11's wait_for loses a stop that lands as an event arrives
                            async with asyncio.timeout(max(0.0, wake - loop.time())):
                                item = await queue.get()
                        except TimeoutError:
                            now = loop.time()
                            for gone in [c for c, t in self._leaving.items() if t <= now]:
                                del self._leaving[gone]  # signalled long ago but still here? look again
                                pending.setdefault(gone, "still running after a stop signal?")
                            if pending:
                                await self._refresh(api, pending, sink)
                            pending = {}
                            continue
                    else:
                        item = await queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    if not item.strip():
                        continue
                    event = json.loads(item)
                    cid = str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
                    if cid:
                        action = str(event.get("status") or event.get("Action") or "?")
                        log.debug("docker event %s %s", action, cid[:12])
                        self._note_leaving(cid, action, event, loop.time())
                        if not pending:
                            deadline = loop.time() + self.debounce
                        pending[cid] = action
            finally:
                reader.cancel()

    def _note_leaving(self, cid: str, action: str, event: Mapping[str, Any], now: float) -> None:
        """A container signalled to stop (``docker stop`` / ``kill``: the ``kill`` event with SIGTERM, SIGKILL,
        SIGINT, SIGQUIT or its own STOPSIGNAL) leaves at once, before it dies: no new requests while it shuts
        down, and no waiting for the daemon (an inspect right then waits on the container's lock). It is looked
        at again on its next start, or after ``leave_grace`` seconds if it is somehow still running."""
        if action == "kill":
            sig = signal_number(((event.get("Actor") or {}).get("Attributes") or {}).get("signal"))
            view = self.views.get(cid)
            if sig is not None and (sig in TERMINATING or (view is not None and sig == view.stop_signal)):
                self._leaving[cid] = now + self.leave_grace
        elif action in ("start", "unpause", "restart"):
            self._leaving.pop(cid, None)

    def _apply_leaving(self, cid: str, view: ContainerView | None) -> ContainerView | None:
        if view is not None and cid in self._leaving and view.instance is not None:
            return replace(view, instance=None, service=None)
        return view

    async def _inspect(self, api: httpx.AsyncClient, cid: str) -> ContainerView | None:
        if cid in self._leaving and cid in self.views:  # known to be going: no need to ask (nor wait)
            return self._apply_leaving(cid, self.views[cid])
        resp = await api.get(f"/containers/{cid}/json")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return self._apply_leaving(cid, container_view(resp.json(), self.keyword, self.host_address, self.qualifier))

    async def _resync(self, api: httpx.AsyncClient, sink: Sink) -> None:
        self._leaving.clear()  # marks from before a reconnect are stale: the daemon's answers now are the truth
        resp = await api.get("/containers/json", params={"all": "false"})
        resp.raise_for_status()
        ids = [str(c["Id"]) for c in resp.json()]
        found = await asyncio.gather(*(self._inspect(api, cid) for cid in ids))
        self.views = {cid: view for cid, view in zip(ids, found, strict=True) if view is not None}
        await self._push(sink, "resync")

    async def _refresh(self, api: httpx.AsyncClient, events: Mapping[str, str], sink: Sink) -> None:
        cids = list(events)
        found = await asyncio.gather(*(self._inspect(api, cid) for cid in cids))
        changed = False
        for cid, view in zip(cids, found, strict=True):
            if self.views.get(cid) != view:
                changed = True
            if view is None:
                self.views.pop(cid, None)
            else:
                self.views[cid] = view
        if changed:
            names = sorted({self.views[c].name if c in self.views else c[:12] for c in cids})
            await self._push(sink, ", ".join(f"{n}" for n in names[:5]) + (" ..." if len(names) > 5 else "")
                             + f" ({'/'.join(sorted(set(events.values())))})")

    def instances(self) -> list[Instance]:
        """The instances of the current view, warning (once per problem) about skipped containers."""
        out = {}
        for view in self.views.values():
            if view.skipped:
                if self._warned.get(view.name) != view.skipped:
                    log.warning("docker %s: skipping %s", self.name, view.skipped)
                    self._warned[view.name] = view.skipped
            else:
                self._warned.pop(view.name, None)
            if view.instance is not None:
                out[(view.instance.service, view.instance.id)] = view.instance
        return [out[k] for k in sorted(out)]

    def definitions(self) -> list[dict[str, Any]]:
        """Per service, the fields its running containers state (partial documents for ``Sink.define``); the
        latest-started container wins a disagreement."""
        by_service: dict[str, list[ContainerView]] = {}
        for view in self.views.values():
            if view.instance is not None and view.service is not None:
                by_service.setdefault(view.service.name, []).append(view)
        out = []
        for svc in sorted(by_service):
            views = sorted(by_service[svc], key=lambda v: (v.started, v.name))
            winner = views[-1]
            for other in views[:-1]:
                if dict(other.stated) != dict(winner.stated):
                    key = (svc, other.name, winner.name)
                    if key not in self._conflicts:
                        self._conflicts.add(key)
                        log.warning("docker %s: containers %s and %s define service %s differently (%s vs %s); "
                                    "%s, started last, wins", self.name, other.name, winner.name, svc,
                                    dict(other.stated), dict(winner.stated), winner.name)
            out.append({"name": svc, **winner.stated})
        return out

    async def _push(self, sink: Sink, why: str) -> None:
        instances = self.instances()
        new = {(i.service, i.id): i for i in instances}
        try:
            defs = self.definitions()
            if defs:
                await sink.define(defs)
            await sink.replace(self.name, instances)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _SinkFailed(str(exc)) from exc
        old, self._pushed = self._pushed, new
        self.pushes += 1
        if old is None:
            log.info("docker %s: %d instance(s) (%s): %s", self.name, len(new), why,
                     ", ".join(_show(i) for i in instances) or "none")
            return
        diff = [f"+{_show(new[k])}" for k in sorted(new.keys() - old.keys())]
        diff += [f"-{k[0]}/{k[1]}" for k in sorted(old.keys() - new.keys())]
        diff += [f"~{_show(new[k])}" for k in sorted(new.keys() & old.keys()) if new[k] != old[k]]
        if diff:
            log.info("docker %s: %s (%s; %d instance(s))", self.name, " ".join(diff), why, len(new))


def _show(inst: Instance) -> str:
    return f"{inst.service}/{inst.id}@{inst.endpoint}" + ("" if inst.healthy else " (not healthy)")
