"""Docker discovery (Cosmonaut's job, event-driven): the running containers of one Docker host as instances.

How it runs (``DockerSource.run(sink)``):
1. subscribe to the daemon's container events (``GET /events``, a stream of JSON lines) *first*, so nothing
   that happens during step 2 is missed;
2. list and inspect every container, and push the whole view (one source-owned set, replacing everything this
   source pushed before: whatever stopped while we were away vanishes);
3. on each event (start, die, stop, kill, destroy, health_status, rename, update, pause, unpause) re-inspect
   that one container and push the whole view again; a burst within ``debounce`` seconds is one push;
4. if the daemon goes away or the stream breaks: retry with capped exponential back-off, then go to 1.
   While the daemon is unreachable the last pushed view stays (containers usually survive a daemon restart
   with live-restore or a restart policy); the resync after reconnecting removes whatever did not.

Which containers: the keyword (default ``asteroid``, case-insensitive) in the container's name, or the
label ``haplane.enable=true``. What they are: Cosmonaut's env vars ``SERVICE_NAME``, ``CONFIG_MODE``,
``PREDICATE``, ``COOKIE``, ``PORT`` and the labels ``haplane.service``, ``haplane.mode``,
``haplane.predicate``, ``haplane.cookie``, ``haplane.port``, ``haplane.version``, ``haplane.weight``,
``haplane.zone``; a label wins over the env var. A container with a wrong or missing value is skipped with a
warning naming it and the value; the others carry on.

Where they are: the label ``haplane.address`` if set; else, for ``--network host``, the host address setting
(default 127.0.0.1); else the container's address on its first network with one; else a published port of
``PORT`` on the host address. Only a running, unpaused container is an instance; one with a HEALTHCHECK is
routable only while healthy (an unhealthy one stays in its slot, in maintenance).

Services: containers also define their service (mode, predicate, cookie, port). The definition of the
container seen last wins, and it replaces a definition made through the API for the same name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx

from haplane.errors import ConfigurationError, ValidationError
from haplane.model.records import Instance, Service
from haplane.sources.base import Sink, backoff

log = logging.getLogger("haplane.sources.docker")

EVENTS = ("start", "die", "stop", "kill", "destroy", "health_status", "rename", "update", "pause", "unpause",
          "restart", "oom")
LABEL = "haplane."
ENV_KEYS = {"service": "SERVICE_NAME", "mode": "CONFIG_MODE", "predicate": "PREDICATE", "cookie": "COOKIE",
            "port": "PORT"}
DEFAULT_SOCKET = "/var/run/docker.sock"

__all__ = ["WATCH_HELP", "DockerSource", "configure_watch", "container_view", "docker_host",
           "docker_socket_reachable", "source_from_args"]


def docker_host(env: Mapping[str, str] | None = None) -> str:
    """The daemon's address as the docker CLI reads it: ``DOCKER_HOST``, else the default unix socket."""
    env = os.environ if env is None else env
    return env.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def _client(host: str, timeout: float | None = 10.0) -> httpx.AsyncClient:
    url = urlparse(host)
    if url.scheme == "unix":
        transport = httpx.AsyncHTTPTransport(uds=url.path)
        return httpx.AsyncClient(transport=transport, base_url="http://docker", timeout=timeout)
    if url.scheme in ("tcp", "http"):
        return httpx.AsyncClient(base_url=f"http://{url.netloc}", timeout=timeout, trust_env=False)
    raise ConfigurationError(f"DOCKER_HOST {host!r}: only unix:// and tcp:// are supported")


def docker_socket_reachable(env: Mapping[str, str] | None = None) -> bool:
    """Is a Docker daemon answering at DOCKER_HOST (or the default socket)? Cheap; never raises."""
    host = docker_host(env)
    url = urlparse(host)
    try:
        if url.scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(url.path)
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.")
        if url.scheme in ("tcp", "http"):
            with socket.create_connection((url.hostname or "127.0.0.1", url.port or 2375), timeout=1.0):
                return True
    except OSError:
        return False
    return False


@dataclass(frozen=True)
class ContainerView:
    """What one container means for the registry: an instance and its service, or why it is skipped."""

    name: str
    instance: Instance | None = None
    service: Service | None = None
    skipped: str | None = None  # a warning: wrong or missing value
    selected: bool = True


def _env(config: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for item in config.get("Env") or []:
        key, sep, value = str(item).partition("=")
        if sep:
            out[key] = value
    return out


def container_view(info: Mapping[str, Any], keyword: str, host_address: str = "127.0.0.1") -> ContainerView:
    """Turn ``GET /containers/{id}/json`` into a ContainerView. Pure: the unit tests feed it recorded JSON."""
    name = str(info.get("Name", "")).lstrip("/") or str(info.get("Id", ""))[:12]
    config = info.get("Config") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    if not (keyword.lower() in name.lower() or labels.get(LABEL + "enable", "").lower() == "true"):
        return ContainerView(name, selected=False)
    state = info.get("State") or {}
    if not state.get("Running") or state.get("Paused") or state.get("Restarting"):
        return ContainerView(name)  # selected, but not an instance now
    env = _env(config)

    def value(key: str) -> str | None:
        if LABEL + key in labels:
            return labels[LABEL + key]
        env_key = ENV_KEYS.get(key)
        return env.get(env_key) if env_key else None

    where = f"container {name}"
    try:
        svc_name = value("service")
        if not svc_name:
            raise ValidationError(f"{where}: haplane.service / SERVICE_NAME", svc_name or "", "is missing")
        svc_doc: dict[str, Any] = {"name": svc_name}
        for key in ("mode", "predicate", "cookie"):
            if value(key):
                svc_doc[key] = value(key)
        port_raw = value("port")
        if port_raw:
            if not port_raw.isdigit():
                raise ValidationError(f"{where}: haplane.port / PORT", port_raw, "is not a port number")
            svc_doc["port"] = int(port_raw)
        service = Service.from_dict(svc_doc, where)
        address = labels.get(LABEL + "address")
        port = service.port
        network = (info.get("HostConfig") or {}).get("NetworkMode", "")
        if not address and network == "host":
            address = host_address
        if not address:
            for net in ((info.get("NetworkSettings") or {}).get("Networks") or {}).values():
                if net and net.get("IPAddress"):
                    address = net["IPAddress"]
                    break
        if not address and port is not None:
            published = ((info.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
            if published:
                host_ip = published[0].get("HostIp") or ""
                address = host_address if host_ip in ("", "0.0.0.0", "::") else host_ip
                port = int(published[0]["HostPort"])
        if not address:
            raise ValidationError(f"{where}: address", None, "cannot be found (no network address, no "
                                                            "haplane.address label, no published PORT)")
        if port is None:
            raise ValidationError(f"{where}: haplane.port / PORT", None, "is missing")
        health = (state.get("Health") or {}).get("Status")
        inst_doc: dict[str, Any] = {"id": name, "service": service.name, "address": address, "port": port,
                                    "healthy": health in (None, "healthy")}
        for key in ("version", "zone"):
            if value(key):
                inst_doc[key] = value(key)
        if value("weight"):
            raw = value("weight") or ""
            if not raw.isdigit():
                raise ValidationError(f"{where}: haplane.weight", raw, "is not a whole number")
            inst_doc["weight"] = int(raw)
        instance = Instance.from_dict(inst_doc, where)
    except ValidationError as exc:
        return ContainerView(name, skipped=str(exc))
    return ContainerView(name, instance, service)


class DockerSource:
    """The containers of one Docker host, pushed as the source ``name`` (default ``docker-<hostname>``)."""

    def __init__(self, host: str | None = None, keyword: str = "asteroid", name: str | None = None,
                 host_address: str = "127.0.0.1", debounce: float = 0.002, backoff_cap: float = 10.0) -> None:
        self.host = host or docker_host()
        self.keyword = keyword
        self.name = name or f"docker-{socket.gethostname().split('.')[0].lower()}"
        self.host_address = host_address
        self.debounce = debounce
        self.backoff_cap = backoff_cap
        self.views: dict[str, ContainerView] = {}  # container id -> view
        self.connected = asyncio.Event()
        self.pushes = 0
        self._warned: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> DockerSource:
        return cls(host=getattr(settings, "docker_host", None) or None,
                   keyword=getattr(settings, "docker_keyword", "asteroid"),
                   name=getattr(settings, "docker_source", None) or None,
                   host_address=getattr(settings, "docker_host_address", "127.0.0.1"))

    async def run(self, sink: Sink) -> None:
        attempt = 0
        while True:
            try:
                await self._session(sink)
                attempt = 0
            except (httpx.HTTPError, OSError, json.JSONDecodeError) as exc:
                self.connected.clear()
                if attempt == 0:
                    log.warning("Docker daemon at %s unreachable (%s): retrying with back-off; the last "
                                "view stays until a resync", self.host, exc or type(exc).__name__)
                attempt += 1
                await backoff(attempt, base=0.1, cap=self.backoff_cap)

    async def _session(self, sink: Sink) -> None:
        filters = json.dumps({"type": ["container"], "event": list(EVENTS)})
        async with _client(self.host) as api, _client(self.host, timeout=None) as stream_client, \
                stream_client.stream("GET", "/events", params={"filters": filters}) as stream:
            stream.raise_for_status()
            await self._resync(api, sink)
            self.connected.set()
            log.info("watching Docker at %s as source %s: %d container(s) selected", self.host, self.name,
                     sum(1 for v in self.views.values() if v.selected))
            queue: asyncio.Queue[str | BaseException] = asyncio.Queue()

            async def read() -> None:
                try:
                    async for line in stream.aiter_lines():
                        queue.put_nowait(line)
                    queue.put_nowait(httpx.ReadError("the daemon closed the event stream"))
                except (httpx.HTTPError, OSError) as exc:
                    queue.put_nowait(exc)

            reader = asyncio.create_task(read())
            try:
                pending: set[str] = set()
                while True:
                    try:
                        item = await (asyncio.wait_for(queue.get(), self.debounce) if pending else queue.get())
                    except TimeoutError:
                        await self._refresh(api, pending, sink)
                        pending = set()
                        continue
                    if isinstance(item, BaseException):
                        raise item
                    if not item.strip():
                        continue
                    event = json.loads(item)
                    cid = event.get("id") or (event.get("Actor") or {}).get("ID")
                    if cid:
                        log.debug("docker event %s %s", event.get("status") or event.get("Action"), cid[:12])
                        pending.add(cid)
            finally:
                reader.cancel()

    async def _inspect(self, api: httpx.AsyncClient, cid: str) -> ContainerView | None:
        resp = await api.get(f"/containers/{cid}/json")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return container_view(resp.json(), self.keyword, self.host_address)

    async def _resync(self, api: httpx.AsyncClient, sink: Sink) -> None:
        resp = await api.get("/containers/json", params={"all": "false"})
        resp.raise_for_status()
        views: dict[str, ContainerView] = {}
        for c in resp.json():
            view = await self._inspect(api, c["Id"])
            if view is not None:
                views[c["Id"]] = view
        self.views = views
        await self._push(sink, "resync")

    async def _refresh(self, api: httpx.AsyncClient, cids: set[str], sink: Sink) -> None:
        before = {cid: self.views.get(cid) for cid in cids}
        for cid in cids:
            view = await self._inspect(api, cid)
            if view is None:
                self.views.pop(cid, None)
            else:
                self.views[cid] = view
        if any(self.views.get(cid) != old for cid, old in before.items()):
            await self._push(sink, f"{len(cids)} event(s)")

    def instances(self) -> list[Instance]:
        out = {}
        for view in self.views.values():
            if view.skipped and self._warned.get(view.name) != view.skipped:
                log.warning("skipping %s", view.skipped)
                self._warned[view.name] = view.skipped
            if view.instance is not None:
                out[(view.instance.service, view.instance.id)] = view.instance
        return [out[k] for k in sorted(out)]

    def services(self) -> list[Service]:
        out = {v.service.name: v.service for v in self.views.values() if v.service is not None and v.instance}
        return [out[k] for k in sorted(out)]

    async def _push(self, sink: Sink, why: str) -> None:
        instances = self.instances()
        await sink.define(self.services())
        await sink.replace(self.name, instances)
        self.pushes += 1
        log.info("docker %s: %d instance(s) (%s)", self.name, len(instances), why)


# --- haplane watch docker -----------------------------------------------------------------------------------

WATCH_HELP = "turn the containers of a Docker host into instances (events, with a full resync on reconnect)"


def configure_watch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--docker-host", metavar="URL", help="the daemon (default: DOCKER_HOST, else "
                                                        f"unix://{DEFAULT_SOCKET})")
    p.add_argument("--keyword", metavar="WORD", help="pick containers whose name contains WORD, any case "
                                                     "(default: asteroid); label haplane.enable=true also picks")
    p.add_argument("--source", metavar="NAME", help="the source id (default: docker-<hostname>)")
    p.add_argument("--host-address", metavar="ADDR", default="127.0.0.1",
                   help="this host's address, for --network host containers and published ports "
                        "(default: 127.0.0.1)")


def source_from_args(args: argparse.Namespace, settings: Any) -> DockerSource:
    return DockerSource(host=args.docker_host, keyword=args.keyword or getattr(settings, "docker_keyword",
                                                                                "asteroid"),
                        name=args.source, host_address=args.host_address)

