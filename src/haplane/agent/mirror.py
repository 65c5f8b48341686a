"""An in-memory mirror of the registry, kept current from store watch events.

The agent composes from this instead of re-reading the store, so one instance event costs the parse of one
JSON document, and re-composing only the backends it touches."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from haplane.errors import HaplaneError
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, Service
from haplane.registry import BACKENDS, FRONTENDS, INSTANCES, SERVICES
from haplane.store.base import KV, Event


@dataclass
class Touched:
    """What a batch of events changed."""

    services: set[str] = field(default_factory=set)  # services whose instances changed
    structural: bool = False  # a service, frontend or backend record changed
    backends: set[str] = field(default_factory=set)  # Thalassa backends whose record changed
    keys: int = 0


class Mirror:
    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self.instances: dict[str, dict[str, Instance]] = {}
        self.frontends: dict[str, FrontendSpec] = {}
        self.backends: dict[str, BackendSpec] = {}
        self.revision = 0
        self.bad: dict[str, str] = {}  # key → why it could not be read (never silently dropped)

    def load(self, kvs: Iterable[KV], revision: int) -> None:
        self.__init__()  # type: ignore[misc]
        for kv in kvs:
            self._put(kv.key, kv.value, Touched())
        self.revision = revision

    def apply(self, events: Iterable[Event]) -> Touched:
        touched = Touched()
        for ev in events:
            touched.keys += 1
            if ev.type == "put" and ev.value is not None:
                self._put(ev.key, ev.value, touched)
            else:
                self._delete(ev.key, touched)
            self.revision = max(self.revision, ev.revision)
        return touched

    def registry(self) -> Registry:
        return Registry(tuple(self.services.values()),
                        tuple(i for by_id in self.instances.values() for i in by_id.values()),
                        tuple(self.frontends.values()), tuple(self.backends.values()), self.revision)

    def service_instances(self, service: str) -> list[Instance]:
        return list(self.instances.get(service, {}).values())

    def instance(self, service: str, iid: str) -> Instance | None:
        return self.instances.get(service, {}).get(iid)

    def fingerprint(self, owner: str) -> str:
        """A fingerprint of the record behind an owner ("service:x", "frontend:y", "backend:z"): it changes
        when the record does (quarantine gives the owner another chance then)."""
        kind, _, name = owner.partition(":")
        rec: object = None
        if kind == "service":
            rec = self.services.get(name)
        elif kind == "frontend":
            rec = self.frontends.get(name)
        elif kind == "backend":
            rec = self.backends.get(name)
        return repr(rec)

    def _put(self, key: str, value: str, touched: Touched) -> None:
        try:
            data = json.loads(value)
            if key.startswith(INSTANCES):
                inst = Instance.from_dict(data)
                self.instances.setdefault(inst.service, {})[inst.id] = inst
                touched.services.add(inst.service)
            elif key.startswith(SERVICES):
                svc = Service.from_dict(data)
                self.services[svc.name] = svc
                touched.structural = True
            elif key.startswith(FRONTENDS):
                fe = FrontendSpec.from_dict(data)
                self.frontends[fe.name] = fe
                touched.structural = True
            elif key.startswith(BACKENDS):
                be = BackendSpec.from_dict(data)
                self.backends[be.name] = be
                touched.structural = True
                touched.backends.add(be.name)
            else:
                return
            self.bad.pop(key, None)
        except (HaplaneError, ValueError, KeyError, TypeError) as exc:
            # a record written by a newer or broken writer must not stop the agent; it is reported
            self.bad[key] = str(exc)

    def _delete(self, key: str, touched: Touched) -> None:
        self.bad.pop(key, None)
        if key.startswith(INSTANCES):
            service, _, iid = key[len(INSTANCES):].partition("/")
            by_id = self.instances.get(service)
            if by_id is not None and by_id.pop(iid, None) is not None:
                touched.services.add(service)
                if not by_id:
                    del self.instances[service]
        elif key.startswith(SERVICES):
            self.services.pop(key[len(SERVICES):], None)
            touched.structural = True
        elif key.startswith(FRONTENDS):
            self.frontends.pop(key[len(FRONTENDS):], None)
            touched.structural = True
        elif key.startswith(BACKENDS):
            self.backends.pop(key[len(BACKENDS):], None)
            touched.structural = True
            touched.backends.add(key[len(BACKENDS):])
