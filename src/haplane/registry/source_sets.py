"""Source sets: every instance a source (a Docker host, an AutoScaling group, a Consul service) owns, replaced
as a whole in one transaction (``replace_source``). A watcher that reconnects sends its full view, and whatever
it no longer reports vanishes; with a ``ttl`` the set is bound to one lease per source (its record under
``store.keys.source_key``), so a dead watcher's instances expire by themselves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from haplane.errors import Conflict, Invalid, NotFound, TxnTooLarge, ValidationError
from haplane.model import values as v
from haplane.model.change import Change
from haplane.model.records import Instance
from haplane.registry.core import MAX_RETRIES, dumps, parse
from haplane.registry.slots import SlotAllocation, SlotReads, moved
from haplane.store.base import KV, Compare, Delete, Op, Put
from haplane.store.keys import INSTANCES, alloc_key, instance_key, source_key


def keep_operator(new: Instance, stored: Instance) -> Instance:
    """``new`` (a source's view of an instance) with what the operator set on the stored one: its admin state
    (drain, maint) and a pinned weight. A source never states these, so its next push must not undo them."""
    if stored.weight_override is not None:
        new = replace(new, weight=stored.weight_override, weight_override=stored.weight_override)
    return replace(new, state=stored.state)


class SourceSets(SlotReads):
    async def replace_source(self, source: str, instances: Sequence[Instance], ttl: float | None = None
                             ) -> tuple[int, list[Change]]:
        """Make the instances owned by ``source`` exactly ``instances``, in one transaction: a watcher that
        reconnects sends its full view, and whatever it no longer reports vanishes.

        With ``ttl`` the whole set is bound to one lease per source, renewed by every call: if the source
        stops calling (its watcher died with its host), its instances expire by themselves."""
        source = v.name(source, "source")
        if ttl is not None:
            ttl = v.seconds(ttl, "ttl", 1, 86400)
        keys = [instance_key(inst.service, inst.id) for inst in instances]
        seen: set[str] = set()
        twice = []
        for n, key in enumerate(keys):
            if key in seen:
                twice.append(ValidationError(f"instances[{n}]", f"{instances[n].service}/{instances[n].id}",
                                             "appears twice in the set"))
            seen.add(key)
        if twice:
            raise Invalid(twice, "instances")
        for _ in range(MAX_RETRIES):
            lease, lease_put = (0, None) if ttl is None else await self._source_lease(source, ttl)
            kvs, _rev = await self.store.range(INSTANCES)
            current: dict[str, tuple[Instance, KV]] = {}
            used: dict[str, set[int]] = {}
            for kv in kvs:  # every instance's slot; only this source's own are read back into models
                doc = json.loads(kv.value)
                used.setdefault(str(doc.get("service")), set()).add(int(doc.get("slot", 0) or 0))
                if doc.get("source") == source:
                    current[kv.key] = (Instance.from_dict(doc), kv)
            compares: list[Compare] = []
            ops: list[Op] = []
            changes: list[Change] = []
            wanted: set[str] = set(keys)
            allocs: dict[str, SlotAllocation] = {}
            # the new ones: registered by hand or by another source, or not at all; read in one round trip
            fresh = [key for key in keys if key not in current]
            others = dict(zip(fresh, await self.store.get_many(fresh), strict=True)) if fresh else {}

            for inst, key in zip(instances, keys, strict=True):
                old = current.get(key)
                if old is not None:
                    new = keep_operator(replace(inst, source=source, lease=lease, ttl=ttl, slot=old[0].slot,
                                                 registered=old[0].registered, updated=old[0].updated), old[0])
                    if new == old[0]:
                        continue
                    if moved(old[0], new):  # a new slot, the old one drains (see put_instance)
                        alloc = await self._allocation_once(inst.service, allocs, compares)
                        svc_used = used.setdefault(inst.service, set())
                        new = replace(new, slot=alloc.take(svc_used))
                        alloc.free(old[0].slot)
                    compares.append(Compare(key, old[1].mod_revision))
                    changes.append(Change("instance-update", f"{inst.service}/{inst.id}", f"{source} updated it"))
                else:
                    other = others.get(key)
                    if other is not None:
                        taken = parse(other, Instance.from_dict)  # registered by hand or by another source
                        new = keep_operator(replace(inst, source=source, lease=lease, ttl=ttl, slot=taken.slot,
                                                     registered=taken.registered), taken)
                        compares.append(Compare(key, other.mod_revision))
                    else:
                        alloc = await self._allocation_once(inst.service, allocs, compares)
                        new = replace(inst, source=source, lease=lease, ttl=ttl,
                                      slot=alloc.take(used.setdefault(inst.service, set())))
                        compares.append(Compare(key, 0))
                    changes.append(Change("instance-add", f"{inst.service}/{inst.id}", f"{source} reports it"))
                now = int(self.clock() * 1000)  # Thalassa's meta.registered and lastKnown
                new = replace(new, registered=new.registered or now, updated=now)
                ops.append(Put(key, dumps(new.to_dict()), lease=new.lease))
            for key, (inst, kv) in current.items():
                if key not in wanted:
                    compares.append(Compare(key, kv.mod_revision))
                    ops.append(Delete(key))
                    (await self._allocation_once(inst.service, allocs, compares)).free(inst.slot)
                    changes.append(Change("instance-remove", f"{inst.service}/{inst.id}",
                                          f"{source} no longer reports it"))
            ops.extend(Put(alloc_key(svc), a.dump()) for svc, a in allocs.items())
            if lease_put is not None:
                ops.append(lease_put)
            try:
                rev = await self.commit(compares, ops)
            except Conflict:
                continue
            except TxnTooLarge as exc:  # a source's set is one transaction or nothing: never half of it
                raise TxnTooLarge("instances", exc.count, exc.limit, exc.setting,
                                  f"{exc.what} for {len(instances)} instances") from None
            return rev, changes
        raise Conflict(source_key(source))

    async def _source_lease(self, source: str, ttl: float) -> tuple[int, Put | None]:
        """The lease binding ``source``'s instances: the current one, kept alive, or a new one (then the
        returned Put records it, to be written in the same transaction as the instances)."""
        key = source_key(source)
        kv = await self.store.get(key)
        if kv is not None:
            rec = json.loads(kv.value)
            lease = int(rec.get("lease", 0))
            if lease and float(rec.get("ttl", 0)) == ttl:
                try:
                    await self.store.keepalive(lease)
                    return lease, None
                except NotFound:
                    pass  # expired: its instances are gone already; start again with a new lease
        lease = await self.store.grant_lease(ttl)
        return lease, Put(key, dumps({"lease": lease, "ttl": ttl}), lease=lease)
