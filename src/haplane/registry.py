"""The registry: typed operations over a Store. The API, the sources and ``haplane generate`` write through
here; the agent watches ``store.keys.ROOT`` and never imports this module.

The key layout is ``haplane.store.keys``. The allocation record of a service is rewritten (compare-and-swap)
by every allocation and removal, which serialises them.

Every write is one store transaction guarded by compare-and-swap, retried on a conflict where the
operation is a pure function of what it read (allocation, /generate), and surfaced as ``Conflict`` where
the caller gave an ``If-Match`` revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from haplane.batching import Batcher
from haplane.compose import TableService, slot_count
from haplane.errors import Conflict, Invalid, NotFound, PreconditionFailed, ValidationError
from haplane.generate import merge, parse_payload, table_service_from_dict, table_service_to_dict
from haplane.model import values as v
from haplane.model.change import Change
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, Service
from haplane.store.base import KV, Compare, Delete, Op, Put, Store
from haplane.store.keys import (
    ALLOC,
    BACKENDS,
    FRONTENDS,
    INSTANCES,
    ROOT,
    SERVICES,
    SOURCES,
    TABLES,
    decode,
    instance_key,
    service_key,
    source_key,
)

MAX_RETRIES = 50
SERVICE_PORT_TTL = 1.0  # seconds a service's default port is taken from this process's copy

T = TypeVar("T")


def dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _decode(kv: KV, parse: Callable[[dict[str, Any]], T]) -> T:
    return parse(json.loads(kv.value))


class _Alloc:
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

    def _lowest(self, used: set[int]) -> int:
        blocked = used | self.freed.keys()
        blocked.discard(0)
        top = max(blocked, default=0)
        if len(blocked) == top:  # 1..top all blocked (the usual case): no walk through thousands of slots
            return top + 1
        slot = 1
        while slot in blocked:
            slot += 1
        return slot

    def _grows(self, slot: int, used: set[int]) -> bool:
        """Would taking ``slot`` need more server slots than the backend has (a reload)?"""
        return slot_count(slot, self.min_slots) > slot_count(max(used, default=0), self.min_slots)

    def would_grow(self, used: set[int]) -> bool:
        return self._grows(self._lowest(used), used)

    def take(self, used: set[int]) -> int:
        """The lowest slot neither used nor resting; but if taking it would grow the backend's slot count (a
        reload) while a slot rests, the one resting longest (its drain is the most likely finished).
        ``used``: the slots the service's instances hold (read from the store), or ``held`` itself."""
        for gone in self.held - used:  # its instance expired with its lease: let the agents drain it
            self.freed.setdefault(gone, self.now)
        self.held = set(used)
        self.known = True
        slot = self._lowest(used)
        resting = [s for s in self.freed if s not in used]
        if resting and slot > max(used, default=0) and self._grows(slot, used):
            slot = min(resting, key=lambda s: (self.freed[s], s))
        self.freed.pop(slot, None)
        used.add(slot)
        self.held.add(slot)
        return slot

    def free(self, slot: int) -> None:
        if slot > 0:
            self.freed[slot] = self.now
            self.held.discard(slot)

    def dump(self) -> str:
        doc: dict[str, Any] = {"freed": {str(k): t for k, t in sorted(self.freed.items())}}
        if self.known:
            doc["held"] = sorted(self.held)
        return dumps(doc)


class _Taker:
    """Slots for one batch of one service: the allocation record's held slots, read from the instances
    themselves (once) when the record may be stale and it matters, as ``RegistryStore._used`` does for one."""

    def __init__(self, reg: RegistryStore, service: str, alloc: _Alloc) -> None:
        self.reg, self.service, self.alloc = reg, service, alloc
        self.used: set[int] | None = None
        self.taken: set[int] = set()
        self.reread = False

    async def take(self) -> int:
        if self.used is None:
            self.used = set(self.alloc.held)
        if not self.reread and (not self.alloc.known or self.alloc.would_grow(self.used)):
            siblings, _ = await self.reg.store.range(f"{INSTANCES}{self.service}/")
            self.used = {json.loads(kv.value).get("slot", 0) for kv in siblings} | self.taken
            self.reread = True
        slot = self.alloc.take(self.used)
        self.taken.add(slot)
        return slot


@dataclass(frozen=True, slots=True)
class _Write:
    """One caller's instance write waiting for its batch: a put (``inst``) or a delete (``inst`` None)."""

    iid: str
    inst: Instance | None
    if_match: int | None


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


def _table_row(key: str) -> str:
    """The service a key under a table's prefix stores."""
    what = decode(key)
    if what is None or what.kind != "table":
        raise ValueError(f"{key!r} is not a table's key")
    return what.name


def _moved(old: Instance, new: Instance) -> bool:
    return (old.address, old.port) != (new.address, new.port)


def _keep_operator(new: Instance, stored: Instance) -> Instance:
    """``new`` (a source's view of an instance) with what the operator set on the stored one: its admin state
    (drain, maint) and a pinned weight. A source never states these, so its next push must not undo them."""
    if stored.weight_override is not None:
        new = replace(new, weight=stored.weight_override, weight_override=stored.weight_override)
    return replace(new, state=stored.state)


class RegistryStore:
    """Registry operations on one store. Holds no state of its own besides the store.

    ``slot_cooldown`` (seconds) should match the agents' drain timeout: a freed slot is not reused sooner."""

    def __init__(self, store: Store, slot_cooldown: float = 30.0, min_slots: int = 8,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.slot_cooldown = slot_cooldown
        self.min_slots = min_slots
        self.clock = clock
        # Writers of one service in this process share a store transaction (a group commit): they would all
        # compare-and-swap the same allocation record, and retrying each other's conflicts costs far more.
        self._doc_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # key -> (lock, [holders and waiters])
        self._ports: dict[str, tuple[int | None, float]] = {}  # service -> (default port, when read)
        self._heartbeats: Batcher[None, tuple[str, str], Renewal] = Batcher(self._heartbeat_batch, max_items=1000)
        self._writes: Batcher[str, _Write, tuple[Instance, int, bool] | int] = Batcher(
            self._write_instances, max_items=500, distinct=lambda w: w.iid)

    async def _alloc_once(self, service: str, allocs: dict[str, _Alloc], compares: list[Compare]) -> _Alloc:
        """The service's allocation record, read once per transaction (and compared at commit)."""
        if service not in allocs:
            allocs[service] = await self._alloc(service)
            compares.append(Compare(ALLOC + service, allocs[service].key_rev))
        return allocs[service]

    async def _alloc(self, service: str) -> _Alloc:
        return _Alloc(await self.store.get(ALLOC + service), self.slot_cooldown, self.clock(), self.min_slots)

    # --- reads -------------------------------------------------------------------------------------------

    async def snapshot(self) -> Registry:
        """Everything compose needs, read at one revision."""
        kvs, rev = await self.store.range(ROOT)
        services, instances, frontends, backends = [], [], [], []
        for kv in kvs:
            what = decode(kv.key)
            kind = what.kind if what is not None else None
            if kind == "service":
                services.append(_decode(kv, Service.from_dict))
            elif kind == "instance":
                instances.append(_decode(kv, Instance.from_dict))
            elif kind == "frontend":
                frontends.append(_decode(kv, FrontendSpec.from_dict))
            elif kind == "backend":
                backends.append(_decode(kv, BackendSpec.from_dict))
        return Registry(tuple(services), tuple(instances), tuple(frontends), tuple(backends), rev)

    async def get_service(self, name: str) -> tuple[Service, int]:
        kv = await self.store.get(service_key(name))
        if kv is None:
            raise NotFound("service", name)
        return _decode(kv, Service.from_dict), kv.mod_revision

    async def service_port(self, name: str) -> int | None:
        """The service's default port for its instances, from a copy at most ``SERVICE_PORT_TTL`` old (one
        registration after another need not read the service each time; this process's own service writes
        refresh it at once; another process's change of the port is seen within that time). ``NotFound`` for an
        unknown service."""
        now = self.clock()
        cached = self._ports.get(name)
        if cached is not None and now - cached[1] < SERVICE_PORT_TTL:
            return cached[0]
        svc, _ = await self.get_service(name)
        self._ports[name] = (svc.port, now)
        if len(self._ports) > 10_000:
            self._ports.clear()
        return svc.port

    async def list_services(self) -> list[tuple[Service, int]]:
        kvs, _ = await self.store.range(SERVICES)
        return [(_decode(kv, Service.from_dict), kv.mod_revision) for kv in kvs]

    async def list_instances(self, service: str | None = None) -> list[tuple[Instance, int]]:
        prefix = INSTANCES if service is None else f"{INSTANCES}{service}/"
        kvs, _ = await self.store.range(prefix)
        return [(_decode(kv, Instance.from_dict), kv.mod_revision) for kv in kvs]

    async def get_instance(self, service: str, iid: str) -> tuple[Instance, int]:
        kv = await self.store.get(instance_key(service, iid))
        if kv is None:
            raise NotFound("instance", f"{service}/{iid}")
        return _decode(kv, Instance.from_dict), kv.mod_revision

    # --- services ----------------------------------------------------------------------------------------

    async def put_service(self, svc: Service, if_match: int | None = None) -> tuple[int, bool]:
        """Create or replace a service; returns (revision, created)."""
        self._ports.pop(svc.name, None)
        try:
            return await self._put_doc(service_key(svc.name), svc.to_dict(), if_match)
        finally:
            self._ports.pop(svc.name, None)

    async def delete_service(self, name: str, if_match: int | None = None) -> int:
        """Delete a service and all its instances in one transaction."""
        self._ports.pop(name, None)
        return await self._delete_doc("service", service_key(name), name, if_match,
                                      [Delete(f"{INSTANCES}{name}/", prefix=True), Delete(ALLOC + name)])

    async def _delete_doc(self, kind: str, key: str, name: str, if_match: int | None, also: Sequence[Op] = ()
                          ) -> int:
        """Delete one document (and ``also``), conditionally with ``if_match`` (412 when stale), else retried
        when another writer changed it meanwhile; ``NotFound`` once it is gone."""
        async with self._doc_lock(key):
            for _ in range(MAX_RETRIES):
                current = await self.store.get(key)
                if current is None:
                    raise NotFound(kind, name)
                if if_match is not None and current.mod_revision != if_match:
                    raise PreconditionFailed(key, if_match, current.mod_revision)
                try:
                    return await self.store.txn([Compare(key, current.mod_revision)], [Delete(key), *also])
                except Conflict as exc:
                    if if_match is not None:
                        raise PreconditionFailed(key, if_match, exc.actual) from None
        raise Conflict(key)

    # --- instances ---------------------------------------------------------------------------------------

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
            if if_match is not None and rev != if_match:
                raise PreconditionFailed(instance_key(service, iid), if_match, rev)
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

    async def patch_service(self, name: str, changes: dict[str, Any], if_match: int | None = None
                            ) -> tuple[Service, int]:
        """Change some fields of a service and keep the others (HTTP PATCH; ``put_service`` replaces)."""
        if "name" in changes and changes["name"] != name:
            raise ValidationError("name", changes["name"], "cannot be changed by a PATCH")
        for _ in range(MAX_RETRIES):
            svc, rev = await self.get_service(name)
            if if_match is not None and rev != if_match:
                raise PreconditionFailed(service_key(name), if_match, rev)
            new = Service.from_dict({**svc.to_dict(), **changes}, "", name=name)
            try:
                new_rev, _ = await self.put_service(new, if_match=rev)
            except PreconditionFailed:
                if if_match is not None:
                    raise
                continue
            return new, new_rev
        raise Conflict(service_key(name))

    async def delete_instance(self, service: str, iid: str, if_match: int | None = None) -> int:
        """Remove an instance; its slot rests for ``slot_cooldown`` while the agents drain it. Batched with the
        service's other writes, like ``put_instance``."""
        result = await self._writes.submit(service, _Write(iid, None, if_match))
        assert isinstance(result, int)
        return result

    async def _write_instances(self, service: str, writes: Sequence[_Write]
                               ) -> list[tuple[Instance, int, bool] | int | BaseException]:
        """One batch of one service's instance writes (distinct ids) in one store transaction: read every
        record and the allocation record in one round trip, apply the writes in order against one allocation,
        commit once. A write whose ``if_match`` is stale fails alone (``PreconditionFailed``) and the others go
        on; when another process wins the compare-and-swap, the batch is read again and retried."""
        results: dict[int, tuple[Instance, int, bool] | int | BaseException] = {}
        granted: dict[tuple[str, float], int] = {}  # (id, ttl) -> a lease granted in an earlier round
        akey = ALLOC + service
        for _ in range(MAX_RETRIES):
            todo = [i for i in range(len(writes)) if i not in results]
            if not todo:
                break
            kvs = await self.store.get_many([akey, *(instance_key(service, writes[i].iid) for i in todo)])
            alloc = _Alloc(kvs[0], self.slot_cooldown, self.clock(), self.min_slots)
            before = alloc.dump()
            taker = _Taker(self, service, alloc)
            compares: list[Compare] = []
            ops: list[Op] = []
            done: dict[int, tuple[Instance, bool] | None] = {}  # index -> (new, created), or None for a delete

            for i, current in zip(todo, kvs[1:], strict=True):
                w = writes[i]
                key = instance_key(service, w.iid)
                if w.if_match is not None and (current is None or current.mod_revision != w.if_match):
                    results[i] = PreconditionFailed(key, w.if_match, current.mod_revision if current else 0)
                    continue
                if w.inst is None:  # a delete
                    if current is None:
                        results[i] = NotFound("instance", f"{service}/{w.iid}")
                        continue
                    alloc.free(int(json.loads(current.value).get("slot", 0)))
                    compares.append(Compare(key, current.mod_revision))
                    ops.append(Delete(key))
                    done[i] = None
                    continue
                inst = w.inst
                if current is not None:
                    old = _decode(current, Instance.from_dict)
                    # slot, lease and source are the registry's: a caller's PUT replaces the rest, not them
                    new = replace(inst, slot=old.slot, source=inst.source if inst.source is not None else old.source)
                    if _moved(old, inst):
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
                compares.append(Compare(key, current.mod_revision if current else 0))
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
            if alloc.dump() != before:
                compares.append(Compare(akey, alloc.key_rev))
                ops.append(Put(akey, alloc.dump()))
            if not ops:
                continue
            try:
                rev = await self.store.txn(compares, ops)
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

    # --- heartbeats: a lease renewed, nothing else ----------------------------------------------------------

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

    async def _source_lease(self, source: str, ttl: float) -> tuple[int, Put | None]:
        """The lease binding ``source``'s instances: the current one, kept alive, or a new one (then the
        returned Put records it, to be written in the same transaction as the instances)."""
        key = f"{SOURCES}{source}"
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
            allocs: dict[str, _Alloc] = {}
            # the new ones: registered by hand or by another source, or not at all; read in one round trip
            fresh = [key for key in keys if key not in current]
            others = dict(zip(fresh, await self.store.get_many(fresh), strict=True)) if fresh else {}

            for inst, key in zip(instances, keys, strict=True):
                old = current.get(key)
                if old is not None:
                    new = _keep_operator(replace(inst, source=source, lease=lease, ttl=ttl, slot=old[0].slot,
                                                 registered=old[0].registered, updated=old[0].updated), old[0])
                    if new == old[0]:
                        continue
                    if _moved(old[0], new):  # a new slot, the old one drains (see put_instance)
                        alloc = await self._alloc_once(inst.service, allocs, compares)
                        svc_used = used.setdefault(inst.service, set())
                        new = replace(new, slot=alloc.take(svc_used))
                        alloc.free(old[0].slot)
                    compares.append(Compare(key, old[1].mod_revision))
                    changes.append(Change("instance-update", f"{inst.service}/{inst.id}", f"{source} updated it"))
                else:
                    other = others.get(key)
                    if other is not None:
                        taken = _decode(other, Instance.from_dict)  # registered by hand or by another source
                        new = _keep_operator(replace(inst, source=source, lease=lease, ttl=ttl, slot=taken.slot,
                                                     registered=taken.registered), taken)
                        compares.append(Compare(key, other.mod_revision))
                    else:
                        alloc = await self._alloc_once(inst.service, allocs, compares)
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
                    (await self._alloc_once(inst.service, allocs, compares)).free(inst.slot)
                    changes.append(Change("instance-remove", f"{inst.service}/{inst.id}",
                                          f"{source} no longer reports it"))
            ops.extend(Put(ALLOC + svc, a.dump()) for svc, a in allocs.items())
            if lease_put is not None:
                ops.append(lease_put)
            try:
                rev = await self.store.txn(compares, ops) if ops else await self.store.revision()
            except Conflict:
                continue
            return rev, changes
        raise Conflict(source_key(source))

    # --- Thalassa frontends and backends -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _doc_lock(self, key: str) -> AsyncIterator[None]:
        """This process's writers of ``key`` take turns; the lock is dropped when nobody holds or waits for it."""
        entry = self._doc_locks.setdefault(key, (asyncio.Lock(), [0]))
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if not entry[1][0]:
                self._doc_locks.pop(key, None)

    async def _put_doc(self, key: str, doc: dict[str, Any], if_match: int | None) -> tuple[int, bool]:
        """Create or replace one document. With ``if_match`` the write is conditional: a stale revision, read
        now or lost in a race at commit, is ``PreconditionFailed`` (412). Without it the last writer wins: a race
        lost to another writer is read again and retried here, never a 409 for a caller who asked for no
        condition. Writers of one key in this process take turns (they would only race each other)."""
        async with self._doc_lock(key):
            for _ in range(MAX_RETRIES):
                current = await self.store.get(key)
                if if_match is not None and (current is None or current.mod_revision != if_match):
                    raise PreconditionFailed(key, if_match, current.mod_revision if current else 0)
                try:
                    rev = await self.store.txn([Compare(key, current.mod_revision if current else 0)],
                                               [Put(key, dumps(doc))])
                except Conflict as exc:
                    if if_match is not None:
                        raise PreconditionFailed(key, if_match, exc.actual) from None
                    continue
                return rev, current is None
        raise Conflict(key)

    async def put_frontend(self, spec: FrontendSpec, if_match: int | None = None) -> tuple[int, bool]:
        return await self._put_doc(FRONTENDS + spec.name, spec.to_dict(), if_match)

    async def put_backend(self, spec: BackendSpec, if_match: int | None = None) -> tuple[int, bool]:
        return await self._put_doc(BACKENDS + spec.name, spec.to_dict(), if_match)

    async def get_frontend(self, name: str) -> tuple[FrontendSpec, int]:
        kv = await self.store.get(FRONTENDS + name)
        if kv is None:
            raise NotFound("frontend", name)
        return _decode(kv, FrontendSpec.from_dict), kv.mod_revision

    async def get_backend(self, name: str) -> tuple[BackendSpec, int]:
        kv = await self.store.get(BACKENDS + name)
        if kv is None:
            raise NotFound("backend", name)
        return _decode(kv, BackendSpec.from_dict), kv.mod_revision

    async def delete_frontend(self, name: str, if_match: int | None = None) -> int:
        return await self._delete_doc("frontend", FRONTENDS + name, name, if_match)

    async def delete_backend(self, name: str, if_match: int | None = None) -> int:
        return await self._delete_doc("backend", BACKENDS + name, name, if_match)

    # --- Lambda-Registry tables ------------------------------------------------------------------------------

    async def generate(self, data: Any) -> tuple[list[TableService], list[Change], int]:
        """Apply a Lambda-Registry payload to its table in one compare-and-swap transaction (retried if
        another writer got there first); returns the table's services after it."""
        payload = parse_payload(data)
        prefix = f"{TABLES}{payload.table}/"
        for _ in range(MAX_RETRIES):
            kvs, _ = await self.store.range(prefix)
            stored = {_table_row(kv.key): table_service_from_dict(json.loads(kv.value)) for kv in kvs}
            revs = {kv.key: kv.mod_revision for kv in kvs}
            new, changes = merge(payload, stored)
            compares = [Compare(k, r) for k, r in revs.items()]
            ops: list[Op] = []
            for name, ts in new.items():
                key = prefix + name
                if key not in revs:
                    compares.append(Compare(key, 0))
                if stored.get(name) != ts:
                    ops.append(Put(key, dumps(table_service_to_dict(ts))))
            ops.extend(Delete(prefix + name) for name in stored if name not in new)
            try:
                rev = await self.store.txn(compares, ops) if ops else await self.store.revision()
            except Conflict:
                continue
            return list(new.values()), changes, rev
        raise Conflict(prefix)
