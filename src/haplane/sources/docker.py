"""Docker discovery (Cosmonaut's job, event-driven): the running containers of one Docker host as instances.

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

Which containers: the keyword (default ``asteroid``, case-insensitive) in the container's name, or the label
``haplane.enable=true``. What they are: Cosmonaut's env vars ``SERVICE_NAME``, ``CONFIG_MODE``, ``PREDICATE``,
``COOKIE``, ``PORT`` and the labels ``haplane.service``, ``haplane.mode``, ``haplane.predicate``,
``haplane.cookie``, ``haplane.port``, ``haplane.version``, ``haplane.weight``, ``haplane.zone``, ``haplane.tls``,
``haplane.hsts``; a label wins
over the env var. A container with a wrong or missing value is skipped with a warning naming it and the value
(once per distinct problem); the others carry on.

Instance ids: ``<container name>.<host>``, where host is the source name without its ``docker-`` prefix
(default: this machine's short host name), so the same compose project on two hosts pushing to one registry
gives two instances, not one fought over.

Where they are: the label ``haplane.address`` if set; else, for ``--network host``, the host address setting
(default 127.0.0.1); else the container's address on its first network with one; else the published host
port of ``PORT`` on the host address (or the binding's own HostIp). Only a running, unpaused container is an
instance; one with a HEALTHCHECK is routable only while ``healthy``: while ``starting`` or ``unhealthy`` it
is pushed with ``healthy=false``, so it keeps its slot (in maintenance) and comes back without a reload.

Services: containers define their service too, but only the fields they state (mode, predicate, cookie,
port; a predicate implies its mode, Cosmonaut's default ``host``). Those fields replace the stored ones; the
others (balance, health check, or a cookie nobody's container names) stay as the API made them. Containers
of one service that disagree: the one started last wins, with a warning naming both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from haplane.backoff import backoff_delay
from haplane.errors import MISSING, ConfigurationError, ValidationError
from haplane.model.records import Instance, Service
from haplane.sources.base import Sink

log = logging.getLogger("haplane.sources.docker")

EVENTS = ("start", "die", "stop", "kill", "destroy", "health_status", "rename", "update", "pause", "unpause",
          "restart", "oom")
LABEL = "haplane."
ENV_KEYS = {"service": "SERVICE_NAME", "mode": "CONFIG_MODE", "predicate": "PREDICATE", "cookie": "COOKIE",
            "port": "PORT"}
DEFAULT_SOCKET = "/var/run/docker.sock"

__all__ = ["WATCH_HELP", "ContainerView", "DockerSource", "configure_watch", "container_view", "docker_host",
           "docker_socket_reachable", "source_from_args"]


# --- where the daemon is: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, as the docker CLI reads them ------


def docker_host(env: Mapping[str, str] | None = None) -> str:
    """The daemon's address as the docker CLI reads it: ``DOCKER_HOST``, else the default unix socket."""
    env = os.environ if env is None else env
    return env.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def _target(settings_or_env: Any = None) -> tuple[str, Mapping[str, str]]:
    """(host, env) from a Settings-like object (its ``docker_host``, else the environment), a mapping of
    environment variables, or None (the process environment)."""
    if settings_or_env is None:
        return docker_host(os.environ), os.environ
    if isinstance(settings_or_env, Mapping):
        return docker_host(settings_or_env), settings_or_env
    return getattr(settings_or_env, "docker_host", None) or docker_host(os.environ), os.environ


def _flag(env: Mapping[str, str], key: str) -> bool:
    return env.get(key, "") not in ("", "0", "false", "False")


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext | None:
    """TLS for a ``tcp://`` daemon, as the docker CLI does it: ``DOCKER_TLS_VERIFY`` (verify the daemon
    against ``ca.pem``) or ``DOCKER_TLS`` (encrypt, verify nothing), with the client certificate
    ``cert.pem``/``key.pem`` if present; all in ``DOCKER_CERT_PATH`` (default ``~/.docker``)."""
    verify = _flag(env, "DOCKER_TLS_VERIFY")
    if not (verify or _flag(env, "DOCKER_TLS")):
        return None
    certs = Path(env.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    if verify:
        ca = certs / "ca.pem"
        if not ca.is_file():
            raise ConfigurationError(f"DOCKER_TLS_VERIFY is set but the CA certificate {ca} is missing "
                                     "(set DOCKER_CERT_PATH to the folder holding ca.pem, cert.pem, key.pem)")
        ctx = ssl.create_default_context(cafile=str(ca))
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = certs / "cert.pem", certs / "key.pem"
    if cert.is_file() and key.is_file():
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"DOCKER_CERT_PATH {certs}: cannot load cert.pem/key.pem: {exc}") from None
    return ctx


def _endpoint(host: str, env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """(base_url, transport keyword arguments) for httpx."""
    url = urlparse(host)
    if url.scheme == "unix":
        if not url.path:
            raise ConfigurationError(f"DOCKER_HOST {host!r}: a unix:// address needs a socket path")
        return "http://docker", {"uds": url.path}
    if url.scheme in ("tcp", "http", "https"):
        if not url.hostname:
            raise ConfigurationError(f"DOCKER_HOST {host!r}: a tcp:// address needs a host")
        ctx = tls_context(env)
        scheme = "https" if ctx is not None or url.scheme == "https" else "http"
        port = url.port or (2376 if scheme == "https" else 2375)
        shown = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        return f"{scheme}://{shown}:{port}", {"verify": ctx if ctx is not None else True}
    raise ConfigurationError(f"DOCKER_HOST {host!r}: only unix:// and tcp:// addresses are supported")


def _client(host: str, env: Mapping[str, str], timeout: float | None = 10.0) -> httpx.AsyncClient:
    base, kw = _endpoint(host, env)
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(**kw), base_url=base, timeout=timeout,
                             trust_env=False)


def docker_socket_reachable(settings_or_env: Any = None) -> bool:
    """Does a Docker daemon answer ``/_ping`` where the watcher would look (``settings.docker_host``, else
    ``DOCKER_HOST``, else the default socket)? Cheap (1 s at most); never raises."""
    try:
        host, env = _target(settings_or_env)
        base, kw = _endpoint(host, env)
        with httpx.Client(transport=httpx.HTTPTransport(**kw), base_url=base, timeout=1.0,
                          trust_env=False) as c:
            return c.get("/_ping").status_code == 200
    except (httpx.HTTPError, OSError, ConfigurationError):
        return False


# --- one container -> one instance (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerView:
    """What one container means for the registry: an instance and the service fields it states, or why it is
    skipped. ``started`` orders containers that disagree about their service (the latest wins)."""

    name: str
    instance: Instance | None = None
    service: Service | None = None
    stated: Mapping[str, Any] = field(default_factory=dict)  # the service fields the container names
    skipped: str | None = None  # a warning: wrong or missing value
    selected: bool = True
    started: tuple[str, str] = ("", "")
    stop_signal: int | None = None  # Config.StopSignal, as a number


TERMINATING = {int(signal.SIGINT), int(signal.SIGQUIT), int(signal.SIGKILL), int(signal.SIGTERM)}


def signal_number(raw: Any) -> int | None:
    """``15``, ``SIGTERM`` or ``TERM`` as 15; None when unknown or empty."""
    text = str(raw or "").strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        return None


def _env(config: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for item in config.get("Env") or []:
        key, sep, value = str(item).partition("=")
        if sep:
            out[key] = value
    return out


_STARTED = re.compile(r"^([0-9T:-]+)(?:\.([0-9]+))?")


def _started_key(raw: Any) -> tuple[str, str]:
    """State.StartedAt (RFC 3339 with up to 9 fraction digits, trailing zeros trimmed) as a sortable key."""
    m = _STARTED.match(str(raw or ""))
    return (m.group(1), (m.group(2) or "").ljust(9, "0")) if m else ("", "")


def container_view(info: Mapping[str, Any], keyword: str, host_address: str = "127.0.0.1",
                   qualifier: str | None = None) -> ContainerView:
    """Turn ``GET /containers/{id}/json`` into a ContainerView. Pure: the unit tests feed it recorded JSON.
    ``qualifier`` (the host) is appended to the container name to make the instance id."""
    name = str(info.get("Name", "")).lstrip("/") or str(info.get("Id", ""))[:12]
    config = info.get("Config") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    if not (keyword.lower() in name.lower() or labels.get(LABEL + "enable", "").strip().lower() == "true"):
        return ContainerView(name, selected=False)
    state = info.get("State") or {}
    started = _started_key(state.get("StartedAt"))
    stop_signal = signal_number(config.get("StopSignal")) or int(signal.SIGTERM)
    if not state.get("Running") or state.get("Paused") or state.get("Restarting"):
        return ContainerView(name, started=started, stop_signal=stop_signal)  # selected, not an instance now
    env = _env(config)

    def value(key: str) -> str | None:
        if LABEL + key in labels:
            return labels[LABEL + key].strip()
        env_key = ENV_KEYS.get(key)
        raw = env.get(env_key) if env_key else None
        return raw.strip() if raw is not None else None

    def source_of(key: str) -> str:
        return f"label {LABEL}{key}" if LABEL + key in labels else f"env {ENV_KEYS.get(key, '?')}"

    where = f"container {name}"
    try:
        svc_name = value("service")
        if not svc_name:
            raise ValidationError(f"{where}: label {LABEL}service / env SERVICE_NAME", MISSING, "is missing")
        stated: dict[str, Any] = {}
        for key in ("mode", "predicate", "cookie", "tls"):
            raw = value(key)
            if raw:
                stated[key] = {"true": "on", "false": "off"}.get(raw.lower(), raw) if key == "tls" else raw
        hsts = value("hsts")
        if hsts:
            if not hsts.isdigit():
                raise ValidationError(f"{where}: label {LABEL}hsts", hsts, "is not a number of seconds")
            stated["hsts"] = int(hsts)
        if "predicate" in stated:
            stated.setdefault("mode", "host")  # the predicate's meaning depends on it; Cosmonaut's default
        port_raw = value("port")
        if port_raw:
            if not port_raw.isdigit():
                raise ValidationError(f"{where}: {source_of('port')}", port_raw, "is not a port number")
            stated["port"] = int(port_raw)
        try:
            service = Service.from_dict({"name": svc_name, **stated}, where)
        except ValidationError as exc:  # name the label or env var the bad value came from
            key = exc.field.rsplit(".", 1)[-1]
            if key in ENV_KEYS or key in ("name", "tls", "hsts"):
                key = "service" if key == "name" else key
                raise ValidationError(f"{where}: {source_of(key)}", exc.value, exc.rule) from None
            raise
        address = labels.get(LABEL + "address", "").strip() or None
        port = service.port
        network = str((info.get("HostConfig") or {}).get("NetworkMode", ""))
        settings = info.get("NetworkSettings") or {}
        if not address and network == "host":
            address = host_address
        if not address:
            for net in (settings.get("Networks") or {}).values():
                if net and net.get("IPAddress"):
                    address = str(net["IPAddress"])
                    break
        if not address and port is not None:
            published = (settings.get("Ports") or {}).get(f"{port}/tcp") or []
            if published:
                host_ip = published[0].get("HostIp") or ""
                address = host_address if host_ip in ("", "0.0.0.0", "::") else host_ip
                port = int(published[0]["HostPort"])
        if not address:
            raise ValidationError(f"{where}: address", MISSING, "cannot be found (no network address, no "
                                                            f"{LABEL}address label, no published PORT)")
        if port is None:
            raise ValidationError(f"{where}: label {LABEL}port / env PORT", MISSING, "is missing")
        health = (state.get("Health") or {}).get("Status")
        inst_doc: dict[str, Any] = {"id": f"{name}.{qualifier}" if qualifier else name, "service": service.name,
                                    "address": address, "port": port, "healthy": health in (None, "", "healthy")}
        for key in ("version", "zone"):
            if value(key):
                inst_doc[key] = value(key)
        if value("weight"):
            raw = value("weight") or ""
            if not raw.isdigit():
                raise ValidationError(f"{where}: label {LABEL}weight", raw, "is not a whole number")
            inst_doc["weight"] = int(raw)
        try:
            instance = Instance.from_dict(inst_doc, where)
        except ValidationError as exc:
            key = exc.field.rsplit(".", 1)[-1]
            if key in ("version", "zone", "weight", "address"):
                raise ValidationError(f"{where}: label {LABEL}{key}", exc.value, exc.rule) from None
            raise
    except ValidationError as exc:
        return ContainerView(name, skipped=str(exc), started=started, stop_signal=stop_signal)
    return ContainerView(name, instance, service, stated, started=started, stop_signal=stop_signal)


# --- the watcher ---------------------------------------------------------------------------------------------


class _SinkFailed(Exception):
    """The sink refused or could not take a push (the registry or its API is away)."""


class DockerSource:
    """The containers of one Docker host, pushed as the source ``name`` (default ``docker-<hostname>``)."""

    def __init__(self, host: str | None = None, keyword: str = "asteroid", name: str | None = None,
                 host_address: str = "127.0.0.1", debounce: float = 0.002, backoff_cap: float = 10.0,
                 forget_after: float = 60.0, env: Mapping[str, str] | None = None, leave_grace: float = 30.0) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.host = host or docker_host(self.env)
        _endpoint(self.host, self.env)  # bad settings fail here, not in the retry loop
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
    def from_settings(cls, settings: Any) -> DockerSource:
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
        async with _client(self.host, self.env) as api, _client(self.host, self.env, timeout=None) as sc, \
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
                        try:
                            item = await asyncio.wait_for(queue.get(), max(0.0, wake - loop.time()))
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


# --- haplane watch docker -----------------------------------------------------------------------------------

WATCH_HELP = "turn the containers of a Docker host into instances (events, with a full resync on reconnect)"
WATCH_DESCRIPTION = f"""\
{WATCH_HELP}.

Which containers: a name containing the keyword (any case; default asteroid), or the label haplane.enable=true.
What they are (a label wins over the env var):
  label haplane.service   env SERVICE_NAME  the service (required)
  label haplane.port      env PORT          the port the container listens on (required)
  label haplane.mode      env CONFIG_MODE   host or path routing (default host)
  label haplane.predicate env PREDICATE     the host name or path prefix requests are routed by
  label haplane.cookie    env COOKIE        a sticky-session cookie
  label haplane.tls       HTTPS for its host: on (default), off, redirect (308 to HTTPS), auto (an ACME
                          certificate, then redirect); true/false as Traefik's tls=true
  label haplane.hsts      Strict-Transport-Security max-age in seconds, on HTTPS answers
  label haplane.version, haplane.weight, haplane.zone, and haplane.address (where to reach it; default: the
  host address for --network host, else its network address, else the published PORT)
A container with a HEALTHCHECK is routed only while healthy; a stopped, killed, paused or dying one leaves at
once. A container with a bad value is skipped with a warning naming it and the value.

  DOCKER_HOST=unix:///var/run/docker.sock haplane watch docker
  docker run -d --name web-asteroid-1 -e SERVICE_NAME=web -e PREDICATE=web.example.com -e PORT=8080 IMAGE
"""


def configure_watch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--docker-host", metavar="URL",
                   help="the daemon, unix:///path or tcp://host:port (default: setting docker_host, else "
                        f"DOCKER_HOST, else unix://{DEFAULT_SOCKET}); DOCKER_TLS_VERIFY and DOCKER_CERT_PATH "
                        "apply to tcp:// as for the docker CLI")
    p.add_argument("--keyword", metavar="WORD", help="pick containers whose name contains WORD, any case "
                                                     "(default: setting docker_keyword, asteroid); the label "
                                                     "haplane.enable=true also picks")
    p.add_argument("--source", metavar="NAME", help="the source id (default: docker-<hostname>)")
    p.add_argument("--host-address", metavar="ADDR",
                   help="this host's address, for --network host containers and published ports "
                        "(default: setting docker_host_address, 127.0.0.1)")
    p.add_argument("--forget-after", type=float, metavar="SECONDS",
                   help="with the daemon unreachable this long, withdraw its instances until it is back; 0 keeps "
                        "them (default: setting docker_forget_after, 60)")


def source_from_args(args: argparse.Namespace, settings: Any) -> DockerSource:
    def pick(arg: Any, setting: str, default: Any) -> Any:
        return arg if arg is not None else getattr(settings, setting, default)

    return DockerSource(host=args.docker_host or getattr(settings, "docker_host", None) or None,
                        keyword=pick(args.keyword, "docker_keyword", "asteroid"),
                        name=args.source or getattr(settings, "docker_source", None) or None,
                        host_address=pick(args.host_address, "docker_host_address", "127.0.0.1"),
                        forget_after=pick(args.forget_after, "docker_forget_after", 60.0))
