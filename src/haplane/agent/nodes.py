"""Where every agent says how it is doing: one record per HAProxy node in the store.

Each agent writes ``/haplane-nodes/{node}`` (outside the ``/haplane/`` prefix the agents watch, so reports
never wake the other agents) about once a second while something changes, and keeps it alive otherwise:
the applied store revision, a hash of its desired model that does not depend on the node (two nodes with
the same hash route the same way), whether it is idle, its store and HAProxy health, the last error,
quarantined items, reloads. The record is bound to a lease of ``ttl`` seconds, so a dead node's record
disappears by itself.

Who calls what: ``NodeReporter.run()`` — the agent, for as long as it runs; ``read_nodes(store)`` — the
API (``GET /nodes``), ``haplane status`` and the tests, to see every node with its lag.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from haplane.errors import NotFound, StoreError
from haplane.model.haproxy import Config
from haplane.store.base import Put, Store
from haplane.store.keys import NODES, node_key
from haplane.typing import NodeSource

log = logging.getLogger("haplane.agent.nodes")


def model_hash(config: Config | None) -> str:
    """A fingerprint of how a node routes, without what differs between nodes by design (bind addresses
    and ports, global/control lines with local paths, the paths of map files): ``Config.routing_key``, computed
    once per config and carried over through a membership change (the reporter asks every second; at 10,000
    services a fresh one takes seconds)."""
    return "" if config is None else config.routing_key()


class NodeReporter:
    def __init__(self, store: Store, node: str, agent: NodeSource, ttl: float = 10.0, interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.node = node
        self.agent = agent
        self.ttl = ttl
        self.interval = interval
        self.clock = clock
        self._lease = 0
        self._last: dict[str, Any] | None = None
        self._written_at = 0.0

    def document(self) -> dict[str, Any]:
        st = self.agent.status
        return {"node": self.node, "revision": st.revision, "model_hash": model_hash(self.agent.desired),
                "config_hash": st.config_hash, "idle": bool(self.agent.idle), "store_ok": st.store_ok,
                "haproxy_ok": st.haproxy_ok, "last_error": st.last_error, "last_reload": st.last_reload,
                "reloads": st.reloads, "quarantined": dict(st.quarantined), "held": dict(st.held)}

    async def report(self) -> bool:
        """Write the record if it changed (or its lease is gone), else keep the lease alive. True if written."""
        doc = self.document()
        now = self.clock()
        if self._lease:
            try:
                await self.store.keepalive(self._lease)
            except NotFound:
                self._lease = 0
        if self._lease and doc == self._last and now - self._written_at < self.ttl / 2:
            return False
        if not self._lease:
            self._lease = await self.store.grant_lease(self.ttl)
        await self.store.txn([], [Put(node_key(self.node), json.dumps({**doc, "updated_at": now}, sort_keys=True),
                                      lease=self._lease)])
        self._last, self._written_at = doc, now
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.report()
            except StoreError as exc:  # the store is down: the agent says so in its own status
                log.debug("node report failed: %s", exc)
                self._lease = 0 if isinstance(exc, NotFound) else self._lease
            await asyncio.sleep(self.interval)


async def read_nodes(store: Store, now: float | None = None) -> list[dict[str, Any]]:
    """Every node's last report, with ``lag`` (revisions behind the most advanced node) and ``age``
    (seconds since it reported), sorted by node name."""
    kvs, _rev = await store.range(NODES)
    nodes = []
    for kv in kvs:
        try:
            doc = json.loads(kv.value)
        except ValueError:
            continue
        if isinstance(doc, dict):
            nodes.append(doc)
    newest = max((int(n.get("revision", 0)) for n in nodes), default=0)
    now = time.time() if now is None else now
    for n in nodes:
        n["lag"] = newest - int(n.get("revision", 0))
        n["age"] = round(max(0.0, now - float(n.get("updated_at", now))), 3)
    return sorted(nodes, key=lambda n: str(n.get("node")))
