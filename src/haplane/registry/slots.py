"""Slot allocation: which HAProxy server slot an instance of a service takes. ``SlotAllocation`` (the rules)
and ``moved`` are pure; ``SlotTaker`` takes the slots of one batch of writes; ``SlotReads`` reads a service's
allocation record for the writes that take or free a slot (``instances.py``, ``source_sets.py``).

Every instance of a service holds one slot (server ``s{slot}`` of the service's backend), kept for as long as it
lives at the same address, so membership changes are Runtime API commands, not reloads. The service's
allocation record (``store.keys.alloc_key``) remembers which slots were freed when, and which are held; every
allocation and every removal rewrites it (compare-and-swap), which serialises them.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from haplane.compose import slot_count
from haplane.model.records import Instance
from haplane.registry.core import RegistryCore, dumps
from haplane.store.base import KV, Compare, Store
from haplane.store.keys import alloc_key, instances_of


class SlotAllocation:
    """A service's slot bookkeeping: which slots were freed when. A slot freed less than ``cooldown``
    seconds ago is not handed out again, so the agent can drain the instance that had it without making the
    newcomer wait (a rolling deploy would otherwise put every new instance in the slot still draining).

    ``held`` lists the slots handed out and not freed through the registry. A held slot that no instance uses
    any more lost its instance to a lease expiry (the store deleted the key; the registry was not asked): it
    starts its rest when the registry first notices, like a slot freed by a delete. While ``known`` (the record
    carries ``held``), a registration picks its slot from the record alone, without reading every sibling; it
    reads them (and so notices expiries) only when the pick would grow the backend."""

    def __init__(self, kv: KV | None, cooldown: float, now: float, min_slots: int = 8) -> None:
        self.min_slots = min_slots
        self.key_rev = kv.mod_revision if kv else 0
        freed: dict[str, float] = {}
        held: list[int] = []
        self.known = False  # an older record without "held", or none: read the siblings once
        if kv is not None:
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                doc = json.loads(kv.value)
                freed = {str(k): float(t) for k, t in doc.get("freed", {}).items()}
                held = [int(h) for h in doc.get("held", [])]
                self.known = "held" in doc
        self.freed = {int(k): t for k, t in freed.items() if now - t < cooldown}
        self.held = set(held)
        self.now = now
        self.changed = False  # taken or freed since read: the record must be written
        # The ``used`` set ``take`` last adopted (the caller's, grown by each take), the highest slot in it, and a
        # cursor below which every slot is used or resting. While one ``used`` set is in play nothing leaves
        # it and a slot leaves ``freed`` only into it, so the blocked slots only grow and the cursor only
        # moves up: a batch of takes costs one walk, not one walk through every sibling's slot per take.
        self._used: set[int] | None = None
        self._top = 0
        self._cursor = 1

    def _adopt(self, used: set[int]) -> None:
        if used is self._used:
            return
        for gone in self.held - used:  # its instance expired with its lease: let the agents drain it
            self.freed.setdefault(gone, self.now)
        self.held = set(used)
        self.known = True
        self._used, self._top, self._cursor = used, max(used, default=0), 1

    def _lowest(self, used: set[int]) -> int:
        if used is not self._used:
            blocked = used | self.freed.keys()
            blocked.discard(0)
            top = max(blocked, default=0)
            if len(blocked) == top:  # 1..top all blocked (the usual case): no walk through thousands of slots
                return top + 1
            slot = 1
            while slot in blocked:
                slot += 1
            return slot
        slot = self._cursor
        while slot in used or slot in self.freed:
            slot += 1
        self._cursor = slot
        return slot

    def _grows(self, slot: int, used: set[int]) -> bool:
        """Would taking ``slot`` need more server slots than the backend has (a reload)?"""
        top = self._top if used is self._used else max(used, default=0)
        return slot_count(slot, self.min_slots) > slot_count(top, self.min_slots)

    def would_grow(self, used: set[int]) -> bool:
        return self._grows(self._lowest(used), used)

    def take(self, used: set[int]) -> int:
        """The lowest slot neither used nor resting; but if taking it would grow the backend's slot count (a
        reload) while a slot rests, the one resting longest (its drain is the most likely finished).
        ``used``: the slots the service's instances hold (read from the store), or ``held`` itself; it grows
        by the slot taken (pass the same set again for the next take of a batch)."""
        self._adopt(used)
        slot = self._lowest(used)
        if slot > self._top and self._grows(slot, used):
            resting = [s for s in self.freed if s not in used]
            if resting:
                slot = min(resting, key=lambda s: (self.freed[s], s))
        self.freed.pop(slot, None)
        used.add(slot)
        self.held.add(slot)
        self._top = max(self._top, slot)
        self.changed = True
        return slot

    def free(self, slot: int) -> None:
        if slot > 0:
            self.freed[slot] = self.now
            self.held.discard(slot)
            self.changed = True

    def dump(self) -> str:
        doc: dict[str, Any] = {"freed": {str(k): t for k, t in sorted(self.freed.items())}}
        if self.known:
            doc["held"] = sorted(self.held)
        return dumps(doc)


class SlotTaker:
    """Slots for one batch of one service's writes: the allocation record's held slots, read from the instances
    themselves (once) when the record may be stale and it matters (an old record; the pick would grow the
    backend, so expiries are worth finding)."""

    def __init__(self, store: Store, service: str, alloc: SlotAllocation) -> None:
        self.store, self.service, self.alloc = store, service, alloc
        self.used: set[int] | None = None
        self.taken: set[int] = set()
        self.reread = False

    async def take(self) -> int:
        if self.used is None:
            self.used = set(self.alloc.held)
        if not self.reread and (not self.alloc.known or self.alloc.would_grow(self.used)):
            siblings, _ = await self.store.range(instances_of(self.service))
            self.used = {json.loads(kv.value).get("slot", 0) for kv in siblings} | self.taken
            self.reread = True
        slot = self.alloc.take(self.used)
        self.taken.add(slot)
        return slot


def moved(old: Instance, new: Instance) -> bool:
    """Did the instance move (another address or port)? Then it takes a new slot and its old one drains and
    rests: HAProxy 2.6 keeps a keep-alive client on its connection to a slot's old address after ``set server
    addr``, so a new slot is the only way every client follows the move."""
    return (old.address, old.port) != (new.address, new.port)


class SlotReads(RegistryCore):
    """Reads of a service's allocation record, for the writes that take or free a slot."""

    async def _allocation(self, service: str) -> SlotAllocation:
        return SlotAllocation(await self.store.get(alloc_key(service)), self.slot_cooldown, self.clock(),
                              self.min_slots)

    async def _allocation_once(self, service: str, allocs: dict[str, SlotAllocation], compares: list[Compare]
                               ) -> SlotAllocation:
        """The service's allocation record, read once per transaction (and compared at commit)."""
        if service not in allocs:
            allocs[service] = await self._allocation(service)
            compares.append(Compare(alloc_key(service), allocs[service].key_rev))
        return allocs[service]
