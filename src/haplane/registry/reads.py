"""The registry's reads: the records compose reads (``snapshot``, at one revision) and each record with the
revision a caller sends back as ``If-Match``."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from haplane.errors import NotFound, ValidationError
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, Service
from haplane.registry.core import RegistryCore, parse
from haplane.store import keys

SERVICE_PORT_TTL = 1.0  # seconds a service's default port is taken from this process's copy

T = TypeVar("T")
log = logging.getLogger(__name__)
REPORTED_MAX = 1000  # (key, revision) pairs already said, per process


class Reads(RegistryCore):
    async def snapshot(self) -> Registry:
        """Everything compose needs, read at one revision."""
        kvs, rev = await self.store.range(keys.ROOT)
        services: list[Service] = []
        instances: list[Instance] = []
        frontends: list[FrontendSpec] = []
        backends: list[BackendSpec] = []
        for kv in kvs:
            what = keys.decode(kv.key)
            kind = what.kind if what is not None else None
            try:
                if kind == "service":
                    services.append(parse(kv, Service.from_dict))
                elif kind == "instance":
                    instances.append(parse(kv, Instance.from_dict))
                elif kind == "frontend":
                    frontends.append(parse(kv, FrontendSpec.from_dict))
                elif kind == "backend":
                    backends.append(parse(kv, BackendSpec.from_dict))
            except (ValidationError, ValueError) as exc:  # stored before today's rules (or by hand): left out
                self._left_out(kv.key, kv.mod_revision, exc)
        return Registry(tuple(services), tuple(instances), tuple(frontends), tuple(backends), rev)

    def _left_out(self, key: str, revision: int, exc: Exception) -> None:
        """A stored record that does not pass today's checks is left out of every list and of the config (the
        agent leaves it out too), said once per revision at WARNING; it stays readable alone, to fix or delete."""
        reported: set[tuple[str, int]] = self.__dict__.setdefault("_reported", set())
        if (key, revision) in reported:
            return
        if len(reported) >= REPORTED_MAX:
            reported.clear()
        reported.add((key, revision))
        log.warning("stored record %s (revision %d) is left out: %s; write it again or delete it", key, revision,
                    exc)

    async def _get(self, key: str, kind: str, name: str, parse_doc: Callable[[dict[str, Any]], T]) -> tuple[T, int]:
        kv = await self.store.get(key)
        if kv is None:
            raise NotFound(kind, name)
        return parse(kv, parse_doc), kv.mod_revision

    async def get_service(self, name: str) -> tuple[Service, int]:
        return await self._get(keys.service_key(name), "service", name, Service.from_dict)

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
        kvs, _ = await self.store.range(keys.SERVICES)
        return [(parse(kv, Service.from_dict), kv.mod_revision) for kv in kvs]

    async def get_instance(self, service: str, iid: str) -> tuple[Instance, int]:
        return await self._get(keys.instance_key(service, iid), "instance", f"{service}/{iid}", Instance.from_dict)

    async def list_instances(self, service: str | None = None) -> list[tuple[Instance, int]]:
        prefix = keys.INSTANCES if service is None else keys.instances_of(service)
        kvs, _ = await self.store.range(prefix)
        return [(parse(kv, Instance.from_dict), kv.mod_revision) for kv in kvs]

    async def get_frontend(self, name: str) -> tuple[FrontendSpec, int]:
        return await self._get(keys.frontend_key(name), "frontend", name, FrontendSpec.from_dict)

    async def get_backend(self, name: str) -> tuple[BackendSpec, int]:
        return await self._get(keys.backend_key(name), "backend", name, BackendSpec.from_dict)

    async def followed_services(self) -> set[str]:
        """The services dynamic backends follow (Thalassa's name + version): their instances have a home even
        without a service record. Read from the stored documents as they are, not through ``BackendSpec``."""
        kvs, _ = await self.store.range(keys.BACKENDS)
        docs = [json.loads(kv.value) for kv in kvs]
        return {str(d["name"]) for d in docs if isinstance(d, dict) and d.get("type") == "dynamic" and d.get("name")}
