"""Writes of the records an operator names: services, and Thalassa's frontends and backends. Each is one
compare-and-swap on its key: conditional on the caller's ``If-Match`` revision when given (``guard_write``;
stale is 412, also when the race is lost at commit), else the last writer wins (a lost race is read again and
retried here, never a 409 for a caller who asked for no condition). This process's writers of one key take
turns (they would only race each other)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from haplane.errors import Conflict, NotFound, PreconditionFailed, ValidationError
from haplane.model.records import BackendSpec, FrontendSpec, Service
from haplane.registry.core import MAX_RETRIES, dumps, guard_write
from haplane.registry.reads import Reads
from haplane.store.base import Delete, Op, Put
from haplane.store.keys import alloc_key, backend_key, frontend_key, instances_of, service_key


class RecordWrites(Reads):
    async def put_service(self, svc: Service, if_match: int | None = None) -> tuple[int, bool]:
        """Create or replace a service; returns (revision, created)."""
        self._ports.pop(svc.name, None)
        try:
            return await self._put_doc(service_key(svc.name), svc.to_dict(), if_match)
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

    async def put_frontend(self, spec: FrontendSpec, if_match: int | None = None) -> tuple[int, bool]:
        return await self._put_doc(frontend_key(spec.name), spec.to_dict(), if_match)

    async def put_backend(self, spec: BackendSpec, if_match: int | None = None) -> tuple[int, bool]:
        return await self._put_doc(backend_key(spec.name), spec.to_dict(), if_match)

    async def delete_frontend(self, name: str, if_match: int | None = None) -> int:
        return await self._delete_doc("frontend", frontend_key(name), name, if_match)

    async def delete_backend(self, name: str, if_match: int | None = None) -> int:
        return await self._delete_doc("backend", backend_key(name), name, if_match)

    async def _put_doc(self, key: str, doc: dict[str, Any], if_match: int | None) -> tuple[int, bool]:
        """Create or replace one document; returns (revision, created)."""
        async with self._doc_lock(key):
            for _ in range(MAX_RETRIES):
                current = await self.store.get(key)
                compare = guard_write(key, current, if_match)
                try:
                    rev = await self.commit([compare], [Put(key, dumps(doc))])
                except Conflict as exc:
                    if if_match is not None:
                        raise PreconditionFailed(key, if_match, exc.actual) from None
                    continue
                return rev, current is None
        raise Conflict(key)

    async def _delete_doc(self, kind: str, key: str, name: str, if_match: int | None, also: Sequence[Op] = ()
                          ) -> int:
        """Delete one document (and ``also``); ``NotFound`` once it is gone."""
        async with self._doc_lock(key):
            for _ in range(MAX_RETRIES):
                current = await self.store.get(key)
                if current is None:
                    raise NotFound(kind, name)
                compare = guard_write(key, current, if_match)
                try:
                    return await self.commit([compare], [Delete(key), *also])
                except Conflict as exc:
                    if if_match is not None:
                        raise PreconditionFailed(key, if_match, exc.actual) from None
        raise Conflict(key)
