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
from haplane.model.records import Instance

log = logging.getLogger("haplane.sources")


class Sink(Protocol):
    async def replace(self, source: str, instances: Sequence[Instance]) -> None:
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

    async def close(self) -> None:
        await self.registry.store.close()


class ApiSink:
    """Writes to a remote registry's API: ``PUT /sources/{source}/instances`` with a bearer token and a
    ``ttl``; the set is re-sent every ``ttl/3`` seconds, so a dead watcher's instances expire by themselves."""

    def __init__(self, base_url: str, token: str | None, ttl: float = 30.0, verify: bool | str = True) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=10.0, verify=verify)
        self._last: dict[str, list[dict[str, Any]]] = {}
        self._refresher: asyncio.Task[None] | None = None

    async def replace(self, source: str, instances: Sequence[Instance]) -> None:
        body = [i.to_dict() for i in instances]
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


async def backoff(attempt: int, base: float = 0.2, cap: float = 10.0) -> None:
    await asyncio.sleep(min(cap, base * (2 ** min(attempt, 10))))
