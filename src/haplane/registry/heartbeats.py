"""Heartbeats: an instance registered with a ``ttl`` renews its lease. Nothing is written but the lease's
expiry: no revision, no watch event, no agent wakes. Concurrent heartbeats in this process share one read of
their records (``get_many``) and one renewal of their leases (``keepalive_many``), through a ``Batcher``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from haplane.batching import Batcher
from haplane.errors import NotFound, ValidationError
from haplane.registry.core import RegistryCore
from haplane.store.keys import instance_key


@dataclass(frozen=True, slots=True)
class Renewal:
    """The outcome of one heartbeat: ``renewed`` (then ``ttl`` is the instance's), ``not-found``, ``no-ttl``
    (registered without a TTL: nothing to renew) or ``expired`` (its lease ran out: register it again)."""

    service: str
    id: str
    status: str
    ttl: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "id": self.id, "status": self.status, "ttl": self.ttl}


class Heartbeats(RegistryCore):
    @cached_property
    def _heartbeats(self) -> Batcher[None, tuple[str, str], Renewal]:
        return Batcher(self._heartbeat_batch, max_items=1000)

    async def heartbeat(self, service: str, iid: str) -> Renewal:
        """Renew the lease of an instance registered with a ``ttl``. Nothing is written but the lease's expiry:
        no revision, no watch event, no agent wakes. Concurrent heartbeats in this process share one read of
        their records and one renewal of their leases (``heartbeat_many``, through a ``Batcher``).
        ``NotFound`` for an unknown instance or an expired lease; ``ValidationError`` for one without a TTL."""
        renewal = await self._heartbeats.submit(None, (service, iid))
        if renewal.status == "not-found":
            raise NotFound("instance", f"{service}/{iid}")
        if renewal.status == "no-ttl":
            raise ValidationError("ttl", None, f"instance {service}/{iid} has no TTL to renew")
        if renewal.status == "expired":
            raise NotFound("lease", f"of instance {service}/{iid} (it expired; register it again)")
        return renewal

    async def heartbeat_many(self, targets: Sequence[tuple[str, str]]) -> list[Renewal]:
        """Renew the leases of many instances at once (a watcher or sidecar renewing what it runs): one read of
        their records (``get_many``) and one renewal of their distinct leases (``keepalive_many``). Each target
        gets its own outcome: ``renewed``, ``not-found``, ``no-ttl`` or ``expired``; one bad target never stops
        the others."""
        keys = [instance_key(service, iid) for service, iid in targets]
        kvs = await self.store.get_many(keys) if keys else []
        leases = sorted({kv.lease for kv in kvs if kv is not None and kv.lease})
        gone = await self.store.keepalive_many(leases) if leases else set()
        out = []
        for (service, iid), kv in zip(targets, kvs, strict=True):
            if kv is None:
                out.append(Renewal(service, iid, "not-found"))
            elif not kv.lease:
                out.append(Renewal(service, iid, "no-ttl"))
            elif kv.lease in gone:
                out.append(Renewal(service, iid, "expired"))
            else:
                ttl = json.loads(kv.value).get("ttl")
                out.append(Renewal(service, iid, "renewed", float(ttl) if isinstance(ttl, int | float) else None))
        return out

    async def _heartbeat_batch(self, _group: None, targets: Sequence[tuple[str, str]]) -> list[Renewal]:
        return await self.heartbeat_many(targets)
