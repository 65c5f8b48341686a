"""Singleton work on one node at a time (an AWS poller, for example), through a store lease.

``Election(store, name, node, ttl).run(work)`` campaigns for ``store.keys.election_key(name)``
(``/haplane-election/{name}``, outside the prefix the agents watch): a key created only
if absent, bound to a lease of ``ttl`` seconds that the leader keeps alive every ``ttl/3``. While it leads it
runs ``work()``; when it loses the lease (keepalive fails: the store was unreachable longer than ``ttl``, or
someone revoked it) it cancels ``work`` at once and campaigns again. When the leader dies its lease expires
after at most ``ttl`` and another node takes over. Works on every Store engine (memory, sqlite, etcd...).

Who calls it: work that must not run twice at once: ``haplane watch SOURCE --elect NAME`` (a poller run on
several hosts for redundancy; only the leader runs the source) and the ACME manager (``tls/manager.py``: one
node orders certificates at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from haplane.errors import Conflict, NotFound, StoreError
from haplane.store.base import Compare, Put, Store
from haplane.store.keys import election_key

log = logging.getLogger("haplane.election")


class Election:
    def __init__(self, store: Store, name: str, node: str, ttl: float = 5.0) -> None:
        self.store = store
        self.name = name
        self.node = node
        self.ttl = ttl
        self.key = election_key(name)
        self.leading = asyncio.Event()
        self.terms = 0  # how many times this node became leader
        self._lease = 0

    async def leader(self) -> str | None:
        """The node leading now, or None."""
        kv = await self.store.get(self.key)
        return str(json.loads(kv.value)["node"]) if kv else None

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign forever; run ``work`` while leading. Returns only if ``work`` returns while leading."""
        while True:
            try:
                if await self._campaign():
                    done = await self._lead(work)
                    if done:
                        return
            except StoreError as exc:
                log.warning("election %s: store error (%s); campaigning again", self.name, exc)
            await asyncio.sleep(min(1.0, self.ttl / 5))

    async def _campaign(self) -> bool:
        lease = await self.store.grant_lease(self.ttl)
        try:
            await self.store.txn([Compare(self.key, 0)],
                                 [Put(self.key, json.dumps({"node": self.node, "since": time.time()}), lease=lease)])
        except Conflict:
            await self.store.revoke_lease(lease)
            return False
        self._lease = lease
        return True

    async def _lead(self, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        self.terms += 1
        self.leading.set()
        log.info("election %s: %s leads (term %d)", self.name, self.node, self.terms)
        task: asyncio.Task[None] = asyncio.create_task(work())
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.ttl / 3)
                if done:
                    break
                try:
                    await self.store.keepalive(self._lease)
                except (NotFound, StoreError) as exc:
                    log.warning("election %s: %s lost the lead (%s): stopping its work", self.name, self.node, exc)
                    return False
            task.result()  # work ended on its own while leading: its error, if any, goes up
            return True
        finally:
            self.leading.clear()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def resign(self) -> None:
        """Give up the lead now (a clean shutdown): another node takes over at once."""
        if self._lease:
            with contextlib.suppress(StoreError):
                await self.store.revoke_lease(self._lease)
            self._lease = 0
