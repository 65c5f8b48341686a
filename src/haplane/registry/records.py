"""Writes of the records an operator names: services, and Thalassa's frontends and backends. Each is one
compare-and-swap on its key: conditional on the caller's ``If-Match`` revision when given (``guard_write``;
stale is 412, also when the race is lost at commit), else the last writer wins (a lost race is read again and
retried here, never a 409 for a caller who asked for no condition).

Each also checks the names the record takes in haproxy.cfg (``haplane.model.names``: backend and frontend
names, hosts, path prefixes, binds) against every other record's: a name another owner holds is ``NameTaken``
(409, naming the holder). The check and the write are one transaction: every such write also rewrites the
names' guard (``store.keys.NAMES``) on the condition that it is still at the revision the names were read at,
so of two writers that both found a name free, one wins and the other reads again and is refused. This
process's writers take turns on the names (they would only race each other); the names are kept between writes
as of the guard's revision, and read again (three ranges) only when another process moved it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from haplane.errors import Conflict, NameTaken, NotFound, PreconditionFailed, ValidationError
from haplane.model import names as nm
from haplane.model.records import BackendSpec, FrontendSpec, Service
from haplane.registry.core import MAX_RETRIES, dumps, guard_write
from haplane.registry.reads import Reads
from haplane.store.base import Compare, Delete, Op, Put
from haplane.store.keys import (
    BACKENDS,
    FRONTENDS,
    NAMES,
    SERVICES,
    alloc_key,
    backend_key,
    frontend_key,
    instances_of,
    service_key,
)


class RecordWrites(Reads):
    async def put_service(self, svc: Service, if_match: int | None = None) -> tuple[int, bool]:
        """Create or replace a service; returns (revision, created)."""
        self._ports.pop(svc.name, None)
        try:
            return await self._put_doc(service_key(svc.name), svc, if_match)
        finally:
            self._ports.pop(svc.name, None)

    async def patch_service(self, name: str, changes: dict[str, Any], if_match: int | None = None
                            ) -> tuple[Service, int]:
        """Change some fields of a service and keep the others (HTTP PATCH; ``put_service`` replaces)."""
        if "name" in changes and changes["name"] != name:
            raise ValidationError("name", changes["name"], "cannot be changed by a PATCH")
        for _ in range(MAX_RETRIES):
            svc, rev = await self.get_service(name)
            guard_write(service_key(name), rev, if_match)
            new = Service.from_dict({**svc.to_dict(), **changes}, "", name=name)
            try:
                new_rev, _ = await self.put_service(new, if_match=rev)
            except PreconditionFailed:
                if if_match is not None:
                    raise
                continue
            return new, new_rev
        raise Conflict(service_key(name))

    async def delete_service(self, name: str, if_match: int | None = None) -> int:
        """Delete a service and all its instances (and its allocation record) in one transaction."""
        self._ports.pop(name, None)
        return await self._delete_doc("service", service_key(name), name, if_match,
                                      [Delete(instances_of(name), prefix=True), Delete(alloc_key(name))])

    async def put_frontend(self, spec: FrontendSpec, if_match: int | None = None, *,
                           unchanged_since: int | None = None) -> tuple[int, bool]:
        """Create or replace a frontend. ``unchanged_since``: the revision the caller read it at (0: it did not
        exist); the write applies only if it is still there, else ``PreconditionFailed`` (the caller reads
        again: it kept fields of what it read)."""
        return await self._put_doc(frontend_key(spec.name), spec, if_match, unchanged_since)

    async def put_backend(self, spec: BackendSpec, if_match: int | None = None, *,
                          unchanged_since: int | None = None) -> tuple[int, bool]:
        """Create or replace a backend; ``unchanged_since`` as for ``put_frontend``."""
        return await self._put_doc(backend_key(spec.name), spec, if_match, unchanged_since)

    async def delete_frontend(self, name: str, if_match: int | None = None) -> int:
        return await self._delete_doc("frontend", frontend_key(name), name, if_match)

    async def delete_backend(self, name: str, if_match: int | None = None) -> int:
        return await self._delete_doc("backend", backend_key(name), name, if_match)

    async def names(self) -> tuple[int, nm.Names]:
        """The names every record takes, and the guard's revision they are current at (0: no guard yet)."""
        guard = await self.store.get(NAMES)
        rev = guard.mod_revision if guard is not None else 0
        if self._names is not None and self._names[0] == rev and rev:
            return self._names
        index = nm.Names()
        for kind, prefix in (("service", SERVICES), ("backend", BACKENDS), ("frontend", FRONTENDS)):
            kvs, _ = await self.store.range(prefix)
            for kv in kvs:
                index.hold(*nm.stored_claims(kind, kv.key[len(prefix):], json.loads(kv.value), self.fallback_names))
        self._names = (rev, index)
        return self._names

    async def _put_doc(self, key: str, record: Service | BackendSpec | FrontendSpec, if_match: int | None,
                       unchanged_since: int | None = None) -> tuple[int, bool]:
        """Create or replace one record whose names are free; returns (revision, created). A record that keeps
        the names it holds (a service's port, health, TLS; a backend's members) is written without reading the
        names: it takes nothing new, and its own key's compare keeps it from landing on a changed record."""
        who, claims = nm.claims_of(record, self.fallback_names)
        kind, _, name = who.partition(":")
        async with self._doc_lock(NAMES):
            for _ in range(MAX_RETRIES):
                current = await self.store.get(key)
                same = current is not None and nm.stored_claims(kind, name, json.loads(current.value),
                                                                self.fallback_names)[1] == claims
                guard: tuple[int, nm.Names] | None = None if same else await self.names()
                compare = guard_write(key, current, if_match)
                if unchanged_since is not None and compare.mod_revision != unchanged_since:
                    raise PreconditionFailed(key, unchanged_since, compare.mod_revision)
                compares, ops = [compare], [Put(key, dumps(record.to_dict()))]
                if guard is not None:
                    taken = guard[1].taken(who, claims)
                    if taken is not None:
                        claim, holder = taken
                        raise NameTaken(claim.field, claim.space, claim.value, holder, nm.describe(holder))
                    compares.append(Compare(NAMES, guard[0]))
                    ops.append(Put(NAMES, dumps({"last": who})))
                try:
                    rev = await self.commit(compares, ops)
                except Conflict as exc:
                    if exc.key == NAMES:
                        continue  # another process wrote a record meanwhile: check the names again
                    if if_match is not None or unchanged_since is not None:
                        raise PreconditionFailed(key, if_match or unchanged_since, exc.actual) from None
                    continue
                if guard is not None:
                    guard[1].hold(who, claims)
                    self._names = (rev, guard[1])
                return rev, current is None
        raise Conflict(key)

    async def _delete_doc(self, kind: str, key: str, name: str, if_match: int | None, also: Sequence[Op] = ()
                          ) -> int:
        """Delete one record (and ``also``), freeing its names; ``NotFound`` once it is gone."""
        who = nm.owner(kind, name)
        async with self._doc_lock(NAMES):
            for _ in range(MAX_RETRIES):
                guard_rev, names = await self.names()
                current = await self.store.get(key)
                if current is None:
                    raise NotFound(kind, name)
                compare = guard_write(key, current, if_match)
                try:
                    rev = await self.commit([compare, Compare(NAMES, guard_rev)],
                                            [Delete(key), *also, Put(NAMES, dumps({"last": who}))])
                except Conflict as exc:
                    if exc.key == NAMES:
                        continue
                    if if_match is not None:
                        raise PreconditionFailed(key, if_match, exc.actual) from None
                    continue
                names.release(who)
                self._names = (rev, names)
                return rev
        raise Conflict(key)
