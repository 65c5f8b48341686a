"""The Source contract, and the sinks a source pushes into.

A source owns a set of instances, named by its ``source`` id (e.g. ``docker-host1``, ``aws-web-asg``).
Whenever its view changes, and at start and after every reconnect, it pushes its *whole* view to a sink:
the sink replaces, in one transaction, every instance that source owns. A missed event can then never leave
a stale instance behind for longer than the next push.

Who calls what:
- ``Source.run(sink)`` — the CLI (``haplane watch ...``) or ``haplane up``; runs until cancelled, never
  raises for a flaky upstream (it backs off and resyncs), only for bad settings.
- ``Sink.replace(source, instances)`` — the source, with its full view.
- ``Sink.followed_services()`` — a source that follows what dynamic backends name (``consul_follow``).
- ``Sink.close()`` — the CLI at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from haplane.errors import HaplaneError, SourceUnavailable
from haplane.model.records import Instance, Service

if TYPE_CHECKING:
    from haplane.registry import RegistryStore

log = logging.getLogger("haplane.sources")


class Sink(Protocol):
    async def replace(self, source: str, instances: Sequence[Instance]) -> None:
        ...

    async def define(self, services: Sequence[Definition]) -> None:
        """Create or update the services a source describes (Docker labels, Cosmonaut's env vars). A
        ``Service`` replaces the stored definition; a mapping (``{"name": ..., <fields>}``) sets only the
        fields it names and keeps the others as stored (an operator's balance or health check survives).
        A definition equal to the stored one writes nothing."""
        ...

    async def followed_services(self) -> set[str]:
        """The services the dynamic backends name, read where this sink writes (the store, or the API's
        ``GET /backends``); ``SourceUnavailable`` when that cannot be read now."""
        ...

    async def close(self) -> None:
        ...


class Source(Protocol):
    name: str  # the source id its instances carry

    async def run(self, sink: Sink) -> None:
        ...


class StoreSink:
    """Writes straight into a local store (the source runs on the HAProxy host)."""

    def __init__(self, registry: RegistryStore) -> None:
        self.registry = registry

    async def replace(self, source: str, instances: Sequence[Instance]) -> None:
        await self.registry.replace_source(source, instances)
        if instances:
            await self._what_waits(source, instances)

    async def _what_waits(self, source: str, instances: Sequence[Instance]) -> None:
        """Say at once (and again whenever it changes) when pushed instances wait for an undefined service."""

        from haplane.overview import waiting_message

        defined = {s.name for s, _ in await self.registry.list_services()}
        undefined = {i.service for i in instances} - defined
        if undefined:
            undefined -= await self.registry.followed_services()  # dynamic backends follow these
        counts: dict[str, int] = {}
        for inst in instances:
            if inst.service in undefined:
                counts[inst.service] = counts.get(inst.service, 0) + 1
        report_waiting(self, source, [waiting_message(svc, n) for svc, n in sorted(counts.items())])

    async def define(self, services: Sequence[Definition]) -> None:
        from haplane.errors import Conflict, NameTaken, NotFound

        for definition in services:
            for _ in range(5):
                try:
                    current, rev = await self.registry.get_service(definition_name(definition))
                except NotFound:
                    current, rev = None, None
                svc = merge_service(current, definition)
                if current == svc:
                    break
                try:
                    await self.registry.put_service(svc, if_match=rev)
                except NotFound:  # deleted between the read and the write: create it
                    continue
                except NameTaken as exc:  # another record holds its name, host or path: say so, leave it
                    log.warning("service %s is not defined by this source: %s", svc.name, exc)
                    break
                except Conflict:  # someone else wrote it meanwhile: merge onto theirs
                    continue
                log.info("service %s %s by a source: %s", svc.name, "defined" if current is None else "updated",
                         _service_diff(current, svc))
                break

    async def followed_services(self) -> set[str]:
        return await self.registry.followed_services()

    async def close(self) -> None:
        await self.registry.store.close()


def _error_kind(resp: Any) -> str | None:
    """The ``error`` of an API error answer, or None when it is not one."""
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


class ApiSink:
    """Writes to a remote registry's API: ``PUT /sources/{source}/instances`` with a bearer token and a
    ``ttl``; the set is re-sent every ``ttl/3`` seconds, so a dead watcher's instances expire by themselves."""

    def __init__(self, base_url: str, token: str | None, ttl: float = 30.0, verify: bool | str = True) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        import socket

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.AsyncHTTPTransport(verify=verify,
                                             socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=10.0, transport=transport)
        self._last: dict[str, list[dict[str, Any]]] = {}
        self._defined: dict[str, dict[str, Any]] = {}
        self._refresher: asyncio.Task[None] | None = None

    async def define(self, services: Sequence[Definition]) -> None:
        import httpx

        for definition in services:
            name = definition_name(definition)
            wanted = definition.to_dict() if isinstance(definition, Service) else dict(definition)
            if self._defined.get(name) == wanted:
                continue
            try:
                for _ in range(5):
                    resp = await self.client.get(f"/services/{name}")
                    if resp.status_code == 404:
                        current, etag = None, None
                    elif resp.status_code >= 400:
                        raise HaplaneError(f"registry API: GET /services/{name}: {resp.status_code} {resp.text}")
                    else:
                        doc = {k: v for k, v in resp.json().items() if k != "revision"}
                        current, etag = Service.from_dict(doc, f"service {name}"), resp.headers.get("etag")
                    svc = merge_service(current, definition)
                    if svc == current:
                        break
                    headers = {"If-Match": etag} if etag else {}
                    resp = await self.client.put(f"/services/{name}", headers=headers,
                                                 json={k: v for k, v in svc.to_dict().items() if v is not None})
                    if resp.status_code == 409 and _error_kind(resp) == "NameTaken":
                        log.warning("service %s is not defined by this source: %s", name, resp.json().get("detail"))
                        break  # another record holds its name, host or path
                    if resp.status_code in (409, 412) or (etag and resp.status_code == 404):
                        continue  # someone else wrote it meanwhile: merge onto theirs
                    if resp.status_code >= 400:
                        raise HaplaneError(f"registry API refused service {name}: {resp.status_code} {resp.text}")
                    log.info("service %s %s through %s: %s", name, "defined" if current is None else "updated",
                             self.base_url, _service_diff(current, svc))
                    break
            except httpx.HTTPError as exc:
                raise SourceUnavailable(f"registry API {self.base_url}: {exc}") from None
            self._defined[name] = wanted

    async def replace(self, source: str, instances: Sequence[Instance]) -> None:
        body = [wire_instance(i) for i in instances]
        self._last[source] = body
        await self._send(source, body)
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh())

    async def _send(self, source: str, body: list[dict[str, Any]]) -> None:
        import httpx

        try:
            resp = await self.client.put(f"/sources/{source}/instances",
                                         json={"instances": body, "ttl": self.ttl})
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"registry API {self.base_url}: {exc}") from None
        if resp.status_code >= 400:
            raise HaplaneError(f"registry API refused the set for {source}: {resp.status_code} {resp.text}")
        try:
            waiting = resp.json().get("waiting") or []
        except (ValueError, AttributeError):
            waiting = []
        report_waiting(self, source, [str(m) for m in waiting])

    async def _refresh(self) -> None:
        failing: set[str] = set()
        while True:
            await asyncio.sleep(max(1.0, self.ttl / 3))
            for source, body in list(self._last.items()):
                try:
                    await self._send(source, body)
                except HaplaneError as exc:
                    (log.debug if source in failing else log.warning)(
                        "could not renew %s's instances (retrying every %.0f s): %s", source, max(1.0, self.ttl / 3),
                        exc)
                    failing.add(source)
                else:
                    if source in failing:
                        log.info("renewed %s's instances again", source)
                        failing.discard(source)

    async def followed_services(self) -> set[str]:
        import httpx

        try:
            resp = await self.client.get("/backends")
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"registry API: GET /backends: {exc}") from None
        if resp.status_code != 200:
            raise SourceUnavailable(f"registry API: GET /backends answered {resp.status_code}")
        docs = resp.json()
        return {str(d["name"]) for d in docs if isinstance(d, dict) and d.get("type") == "dynamic" and d.get("name")}

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self.client.aclose()


Definition: TypeAlias = Service | Mapping[str, Any]


def definition_name(definition: Definition) -> str:
    return definition.name if isinstance(definition, Service) else str(definition["name"])


def merge_service(current: Service | None, definition: Definition) -> Service:
    """The service a source's definition makes of the stored one: a ``Service`` replaces it; a mapping sets
    the fields it names onto it (onto the defaults if there is none). Raises ValidationError naming the field."""
    if isinstance(definition, Service):
        return definition
    name = definition_name(definition)
    base = {k: v for k, v in current.to_dict().items() if v is not None} if current is not None else {}
    doc = {**base, **{k: v for k, v in definition.items() if k != "name"}, "name": name}
    if current is not None and "mode" in definition and definition["mode"] != current.mode \
            and "predicate" not in definition:
        doc.pop("predicate", None)  # a predicate means something else in the other mode
    return Service.from_dict(doc, f"service {name}")


def _service_diff(old: Service | None, new: Service) -> str:
    if old is None:
        return ", ".join(f"{k}={v}" for k, v in new.to_dict().items() if v is not None and k != "name")
    a, b = old.to_dict(), new.to_dict()
    return ", ".join(f"{k} {a[k]!r} -> {b[k]!r}" for k in b if a[k] != b[k])


DEFINE_FIELDS = ("mode", "predicate", "port", "cookie", "balance")


def parse_define(text: str, service: str) -> dict[str, Any]:
    """A watcher's ``--define mode=host,predicate=shop.example.com[,port=8080,cookie=SRV,balance=leastconn]`` as
    the definition of its service (the fields it names; the others stay as stored). Checked now: a bad field
    or value is a ValidationError naming it, before anything runs."""
    from haplane.errors import ValidationError

    fields: dict[str, Any] = {"name": service}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in DEFINE_FIELDS:
            raise ValidationError("--define", part, "must be FIELD=VALUE with FIELD one of " + ", ".join(DEFINE_FIELDS))
        fields[key] = int(value) if key == "port" and value.strip().isascii() and value.strip().isdigit() else value
    merge_service(None, fields)  # validates every field as the registry will
    return fields


def report_waiting(sink: object, source: str, messages: list[str]) -> None:
    """Log what of a source's set waits for an undefined service, once each time that changes."""
    said: dict[str, list[str]] = sink.__dict__.setdefault("_waiting_said", {})
    if said.get(source, []) == messages:
        return
    for message in messages:
        log.warning("source %s: %s", source, message)
    if said.get(source) and not messages:
        log.info("source %s: nothing waits for a service any more", source)
    said[source] = messages


def wire_instance(inst: Instance) -> dict[str, Any]:
    """What a source sends for an instance: the fields the registry does not own (not slot, lease, source)."""
    d = {"service": inst.service, "id": inst.id, "address": inst.address, "port": inst.port,
         "weight": inst.weight, "version": inst.version, "zone": inst.zone, "group": inst.group,
         "state": inst.state, "healthy": inst.healthy, "hostname": inst.hostname, "pid": inst.pid}
    return {k: v for k, v in d.items() if v is not None}

