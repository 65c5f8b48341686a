"""The Source contract, and the sinks a source pushes into.

A source owns a set of instances, named by its ``source`` id (e.g. ``docker-host1``, ``aws-web-asg``).
Whenever its view changes, and at start and after every reconnect, it pushes its *whole* view to a sink:
the sink replaces, in one transaction, every instance that source owns. A missed event can then never leave
a stale instance behind for longer than the next push.

Who calls what:
- ``Source.run(sink)`` — the CLI (``haplane watch ...``) or ``haplane up``; runs until cancelled, never
  raises for a flaky upstream (it backs off and resyncs), only for bad settings.
- ``Sink.replace(source, instances)`` — the source, with its full view.
- ``Sink.close()`` — the CLI at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from haplane.errors import HaplaneError, SourceUnavailable
from haplane.model.records import Instance, Service

log = logging.getLogger("haplane.sources")


class Sink(Protocol):
    async def replace(self, source: str, instances: Sequence[Instance]) -> None:
        ...

    async def define(self, services: Sequence[Service]) -> None:
        """Create or update the services a source describes (Docker labels, Cosmonaut's env vars); a
        definition equal to the stored one writes nothing."""
        ...

    async def close(self) -> None:
        ...


class Source(Protocol):
    name: str  # the source id its instances carry

    async def run(self, sink: Sink) -> None:
        ...


class StoreSink:
    """Writes straight into a local store (the source runs on the HAProxy host)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry  # haplane.registry.RegistryStore

    async def replace(self, source: str, instances: Sequence[Instance]) -> None:
        await self.registry.replace_source(source, instances)

    async def define(self, services: Sequence[Service]) -> None:
        from haplane.errors import NotFound

        for svc in services:
            try:
                current, _rev = await self.registry.get_service(svc.name)
            except NotFound:
                current = None
            if current != svc:
                await self.registry.put_service(svc)
                log.info("service %s defined by a source: %s", svc.name, svc.to_dict())

    async def close(self) -> None:
        await self.registry.store.close()


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

    async def define(self, services: Sequence[Service]) -> None:
        import httpx

        for svc in services:
            doc = svc.to_dict()
            if self._defined.get(svc.name) == doc:
                continue
            try:
                resp = await self.client.put(f"/services/{svc.name}", json={k: v for k, v in doc.items()
                                                                             if v is not None})
            except httpx.HTTPError as exc:
                raise SourceUnavailable(f"registry API {self.base_url}: {exc}") from None
            if resp.status_code >= 400:
                raise HaplaneError(f"registry API refused service {svc.name}: {resp.status_code} {resp.text}")
            self._defined[svc.name] = doc

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

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.ttl / 3))
            for source, body in list(self._last.items()):
                try:
                    await self._send(source, body)
                except HaplaneError as exc:
                    log.warning("could not renew %s's instances: %s", source, exc)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self.client.aclose()


def wire_instance(inst: Instance) -> dict[str, Any]:
    """What a source sends for an instance: the fields the registry does not own (not slot, lease, source)."""
    d = {"service": inst.service, "id": inst.id, "address": inst.address, "port": inst.port,
         "weight": inst.weight, "version": inst.version, "zone": inst.zone, "group": inst.group,
         "state": inst.state, "healthy": inst.healthy}
    return {k: v for k, v in d.items() if v is not None}


async def backoff(attempt: int, base: float = 0.2, cap: float = 10.0) -> None:
    await asyncio.sleep(min(cap, base * (2 ** min(attempt, 10))))
