"""Instance writes (the API's PUT, PATCH and DELETE of one instance): each takes or frees a slot in the same
transaction that writes the instance.

Registrations batch: concurrent writes of one service's instances in this process are one store transaction
(``_write_instances`` through a ``haplane.batching.Batcher``: the records and the allocation record read in one
``get_many``, the writes applied in order against one allocation, one ``commit``). Each write keeps its own
guarantees: acknowledged only once that transaction is durable; a stale ``If-Match`` fails alone (412);
without ``If-Match`` a race lost to another process is read again and retried, never a 409.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from haplane.batching import Batcher
from haplane.errors import Conflict, NotFound, PreconditionFailed, TxnTooLarge, ValidationError
from haplane.model.records import Instance
from haplane.registry.core import MAX_RETRIES, dumps, guard_write, parse
from haplane.registry.reads import Reads
from haplane.registry.slots import SlotAllocation, SlotTaker, moved
from haplane.store.base import Compare, Delete, Op, Put
from haplane.store.keys import alloc_key, instance_key

log = logging.getLogger("haplane.registry")
WriteResult = tuple[Instance, int, bool] | int  # a put's (stored instance, revision, created); a delete's revision


@dataclass(frozen=True, slots=True)
class _Write:
    """One caller's instance write waiting for its batch: a put (``inst``) or a delete (``inst`` None)."""

    iid: str
    inst: Instance | None
    if_match: int | None


class InstanceWrites(Reads):
    @cached_property
    def _writes(self) -> Batcher[str, _Write, WriteResult]:
        """Concurrent instance writes of one service in this process share one store transaction."""
        return Batcher(self._write_instances, max_items=500, distinct=lambda w: w.iid)

    async def put_instance(self, inst: Instance, if_match: int | None = None) -> tuple[Instance, int, bool]:
        """Create or replace an instance; returns (the stored instance, revision, created). A new instance gets
        the lowest free slot of its service; an existing one keeps its slot, unless it moved (another address
        or port): then it gets a new slot and the old one drains and rests. HAProxy keeps a keep-alive client on
        its connection to a server slot's old address after ``set server addr``; a new slot is the only way
        every client follows the move. ``ttl`` binds it to a store lease (renewed by ``heartbeat``).

        Registrations batch: concurrent writes of one service's instances in this process are written in one
        store transaction (``_write_instances``), so 50 clients registering into one service cost a few
        transactions, not 50 serialised ones. Each write keeps its own guarantees: it is acknowledged only once
        that transaction is durable; with ``if_match`` a stale revision is ``PreconditionFailed`` (412) for that
        write alone; without it, losing a race to another process is retried here, never the caller's 409."""
        result = await self._writes.submit(inst.service, _Write(inst.id, inst, if_match))
        assert not isinstance(result, int)
        return result

    async def patch_instance(self, service: str, iid: str, changes: dict[str, Any], if_match: int | None = None
                             ) -> tuple[Instance, int]:
        """Change some fields of an instance and keep the others (HTTP PATCH; ``put_instance`` replaces).
        ``changes`` are fields as in ``Instance.to_dict``, validated like a whole instance once merged; ``null``
        clears an optional field. Server-owned fields (slot, lease, source) cannot be changed. With ``if_match``
        the change applies only to that revision (else 412); without it, a change that raced another writer is
        merged into the newer record and tried again."""
        for name in ("slot", "lease", "source", "registered", "updated"):
            if name in changes:
                raise ValidationError(name, changes[name], "is set by the registry, not by the caller")
        for name, same in (("service", service), ("id", iid)):
            if name in changes and changes[name] != same:
                raise ValidationError(name, changes[name], f"differs from the name in the URL ({same!r})")
        for _ in range(MAX_RETRIES):
            inst, rev = await self.get_instance(service, iid)
            guard_write(instance_key(service, iid), rev, if_match)
            new = Instance.from_dict({**inst.to_dict(), **changes}, "", service=service, id=iid)
            new = replace(new, source=inst.source)
            try:
                stored, new_rev, _ = await self.put_instance(new, if_match=rev)
            except PreconditionFailed:
                if if_match is not None:
                    raise
                continue
            return stored, new_rev
        raise Conflict(instance_key(service, iid))

    async def delete_instance(self, service: str, iid: str, if_match: int | None = None) -> int:
        """Remove an instance; its slot rests for ``slot_cooldown`` while the agents drain it. Batched with the
        service's other writes, like ``put_instance``."""
        result = await self._writes.submit(service, _Write(iid, None, if_match))
        assert isinstance(result, int)
        return result

    async def _write_instances(self, service: str, writes: Sequence[_Write]) -> list[WriteResult | BaseException]:
        """A batch of one service's writes; when the store refuses its transaction as too large (etcd takes 128
        operations by default, DynamoDB 100 items), the batch is written as two halves, and later batches are
        kept under the size that was refused (nothing of a refused transaction was written)."""
        try:
            return await self._write_batch(service, writes)
        except TxnTooLarge as exc:
            if len(writes) < 2:
                raise
            half = len(writes) // 2
            if self._writes.max_items > half:
                log.info("the store refused a transaction of %d writes to service %s (%s): batches of a "
                         "service's writes are now at most %d", len(writes), service, exc.setting, half)
                self._writes.max_items = half
        return [*await self._write_instances(service, writes[:half]),
                *await self._write_instances(service, writes[half:])]

    async def _write_batch(self, service: str, writes: Sequence[_Write]) -> list[WriteResult | BaseException]:
        """One batch of one service's instance writes (distinct ids) in one store transaction: read every
        record and the allocation record in one round trip, apply the writes in order against one allocation,
        commit once. A write whose ``if_match`` is stale fails alone (``PreconditionFailed``) and the others go
        on; when another process wins the compare-and-swap, the batch is read again and retried."""
        results: dict[int, WriteResult | BaseException] = {}
        granted: dict[tuple[str, float], int] = {}  # (id, ttl) -> a lease granted in an earlier round
        akey = alloc_key(service)
        for _ in range(MAX_RETRIES):
            todo = [i for i in range(len(writes)) if i not in results]
            if not todo:
                break
            kvs = await self.store.get_many([akey, *(instance_key(service, writes[i].iid) for i in todo)])
            alloc = SlotAllocation(kvs[0], self.slot_cooldown, self.clock(), self.min_slots)
            taker = SlotTaker(self.store, service, alloc)
            compares: list[Compare] = []
            ops: list[Op] = []
            done: dict[int, tuple[Instance, bool] | None] = {}  # index -> (new, created), or None for a delete

            for i, current in zip(todo, kvs[1:], strict=True):
                w = writes[i]
                key = instance_key(service, w.iid)
                if w.inst is None and current is None:  # a delete of nothing: 404, with or without If-Match
                    results[i] = NotFound("instance", f"{service}/{w.iid}")
                    continue
                try:
                    compare = guard_write(key, current, w.if_match)
                except PreconditionFailed as stale:
                    results[i] = stale
                    continue
                if w.inst is None:  # a delete
                    assert current is not None
                    alloc.free(int(json.loads(current.value).get("slot", 0)))
                    compares.append(compare)
                    ops.append(Delete(key))
                    done[i] = None
                    continue
                inst = w.inst
                if current is not None:
                    old = parse(current, Instance.from_dict)
                    # slot, lease and source are the registry's: a caller's PUT replaces the rest, not them
                    new = replace(inst, slot=old.slot, source=inst.source if inst.source is not None else old.source)
                    if moved(old, inst):
                        new = replace(new, slot=await taker.take())
                        alloc.free(old.slot)
                    lease = old.lease
                    if inst.ttl is not None and (lease == 0 or old.ttl != inst.ttl):
                        lease = -1  # granted below
                    elif inst.ttl is None:
                        lease = 0
                    now = int(self.clock() * 1000)  # Thalassa's meta.registered and lastKnown
                    new = replace(new, lease=lease, registered=old.registered or now, updated=now)
                else:
                    now = int(self.clock() * 1000)
                    new = replace(inst, slot=await taker.take(), lease=-1 if inst.ttl is not None else 0,
                                  registered=now, updated=now)
                compares.append(compare)
                done[i] = (new, current is None)
            # leases for the TTL'd ones that need a new one, granted together (one group commit in SQLite)
            need = [(i, (writes[i].iid, float(item[0].ttl))) for i, item in done.items()
                    if item is not None and item[0].lease == -1 and item[0].ttl is not None]
            missing = [k for _, k in need if k not in granted]
            for k, lease in zip(missing, await asyncio.gather(*(self.store.grant_lease(t) for _, t in missing)),
                                strict=True):
                granted[k] = lease
            for i, k in need:
                item = done[i]
                assert item is not None
                done[i] = (replace(item[0], lease=granted[k]), item[1])
            for i, item in done.items():
                if item is not None:
                    ops.append(Put(instance_key(service, writes[i].iid), dumps(item[0].to_dict()),
                                   lease=item[0].lease))
            if alloc.changed:
                compares.append(Compare(akey, alloc.key_rev))
                ops.append(Put(akey, alloc.dump()))
            if not ops:
                continue
            try:
                rev = await self.commit(compares, ops)
            except Conflict as exc:
                # another writer won: a write that named its revision learns it is stale; the rest are retried
                for i in done:
                    w = writes[i]
                    if w.if_match is not None and exc.key == instance_key(service, w.iid):
                        results[i] = PreconditionFailed(exc.key, w.if_match, exc.actual)
                continue
            except NotFound as exc:
                if exc.kind != "lease":
                    raise
                granted.clear()  # a lease granted in an earlier round expired meanwhile: grant again
                continue
            for i, item in done.items():
                results[i] = rev if item is None else (item[0], rev, item[1])
        return [results.get(i, Conflict(instance_key(service, writes[i].iid))) for i in range(len(writes))]
