"""One Consul watcher for many services, as Thalassa subscribed to every name its backends named.

``ConsulFollower`` decides which Consul services to follow, and follows each with its own ``ConsulSource`` task
(blocking queries on ``/v1/health/service/NAME``, one source-owned set ``consul-NAME`` each):

- by default, every service a dynamic backend names (``{"type": "dynamic", "name": "api", ...}``), read every
  ``interval`` seconds from where the sink writes (the local store, or a remote API's ``GET /backends``), or from
  ``names`` when given;
- with a tag, every service Consul's catalog lists with that tag (``GET /v1/catalog/services``, a blocking query
  too).

A service no longer wanted has its task stopped and its set emptied (its instances leave). A failure to read
the wanted names keeps the current ones (back-off, logged): following goes on with what is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from haplane.backoff import backoff_delay
from haplane.errors import HaplaneError, SourceUnavailable
from haplane.sources.base import Sink
from haplane.sources.consul import ConsulSource

log = logging.getLogger("haplane.sources.consul")

Names = Callable[[], Awaitable[set[str]]]


class ConsulFollower:
    def __init__(self, make: Callable[[str], ConsulSource], *, names: Names | None = None, tag: str | None = None,
                 address: str = "http://127.0.0.1:8500", token: str | None = None, datacenter: str | None = None,
                 interval: float = 2.0, wait: float = 60.0, max_backoff: float = 30.0,
                 verify: ssl.SSLContext | bool = True) -> None:
        if names is not None and tag is not None:
            raise ValueError("follow either the backends' names or a tag")
        self.make = make
        self.names = names
        self.tag = tag
        self.address = (address if address.startswith(("http://", "https://")) else "http://" + address).rstrip("/")
        self.token = token
        self.datacenter = datacenter
        self.interval = interval
        self.wait = wait
        self.max_backoff = max_backoff
        self.verify = verify  # the TLS context of the services' sources (ConsulSource.verify)
        self.name = f"consul-tag-{tag}" if tag else "consul-backends"
        self.following: dict[str, tuple[ConsulSource, asyncio.Task[None]]] = {}
        self._index = 0

    async def run(self, sink: Sink) -> None:
        failures = 0
        try:
            while True:
                try:
                    wanted = await self._wanted(sink)
                    failures = 0
                except (HaplaneError, OSError) as exc:
                    failures += 1
                    delay = backoff_delay(failures - 1, 0.2, self.max_backoff)
                    log.warning("consul: cannot read which services to follow (%s); following %s, again in %.1fs",
                                exc, sorted(self.following) or "none", delay)
                    await asyncio.sleep(delay)
                    continue
                await self._follow(wanted, sink)
                # backends: poll; a tag: the next blocking query waits for a change (a short pause keeps a server
                # that answers at once from being hammered)
                await asyncio.sleep(self.interval if self.tag is None else 0.05)
        finally:
            for _source, task in self.following.values():
                task.cancel()
            for _source, task in self.following.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _follow(self, wanted: set[str], sink: Sink) -> None:
        for service in sorted(wanted - set(self.following)):
            source = self.make(service)
            log.info("consul: following service %s (set %s)", service, source.name)
            self.following[service] = (source, asyncio.create_task(source.run(sink), name=f"consul-{service}"))
        for service in sorted(set(self.following) - wanted):
            source, task = self.following.pop(service)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            log.info("consul: no longer following service %s: its instances leave", service)
            await sink.replace(source.name, [])
        for service, (_source, task) in list(self.following.items()):
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("consul: following %s stopped (%s); starting again", service, task.exception())
                del self.following[service]

    async def _wanted(self, sink: Sink) -> set[str]:
        if self.names is not None:
            return await self.names()
        if self.tag is not None:
            return await self._tagged()
        return await sink.followed_services()

    async def _tagged(self) -> set[str]:
        """Every service of Consul's catalog carrying the tag (a blocking query on its index)."""
        import httpx

        params: dict[str, Any] = {"index": self._index, "wait": f"{int(self.wait)}s"} if self._index else {}
        if self.datacenter:
            params["dc"] = self.datacenter
        headers = {"X-Consul-Token": self.token} if self.token else {}
        try:
            async with httpx.AsyncClient(timeout=self.wait + 10, verify=self.verify, trust_env=False) as client:
                r = await client.get(f"{self.address}/v1/catalog/services", params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"consul {self.address}: {exc}") from None
        if r.status_code != 200:
            raise SourceUnavailable(f"consul {self.address}: /v1/catalog/services answered {r.status_code}")
        try:
            index = int(r.headers.get("X-Consul-Index", "0"))
            data = r.json()
        except ValueError as exc:
            raise SourceUnavailable(f"consul {self.address}: bad /v1/catalog/services answer: {exc}") from None
        if not isinstance(data, dict):
            raise SourceUnavailable(f"consul {self.address}: /v1/catalog/services is not an object")
        self._index = index if index >= self._index else 0  # an index going backwards: start again
        if self._index <= 0:
            self._index = 1
        return {name for name, tags in data.items() if isinstance(tags, list) and self.tag in tags}
