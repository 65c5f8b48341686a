"""An in-memory mirror of the registry, kept current from store watch events.

The agent composes from this instead of re-reading the store, so one instance event costs the parse of one
JSON document, and re-composing only the backends it touches."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from haplane.errors import HaplaneError
from haplane.model.names import Claim, Names, backend_claims, frontend_claims, owner, service_claims
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, RegistryCert, Service
from haplane.store import keys
from haplane.store.base import KV, Event
from haplane.tls.records import Certificate, CertificateKey, Challenge, bundle_of


class _Certs:
    """The certificate, key and challenge records, and what is served of them: a certificate is served once both
    halves are there and pass the registry's checks again (a pair that does not is reported in ``bad``)."""

    def __init__(self) -> None:
        self.records: dict[str, Certificate] = {}
        self.keys: dict[str, CertificateKey] = {}
        self.served: dict[str, RegistryCert] = {}
        self.challenges: dict[str, str] = {}  # token → key authorization

    def put(self, key: str, what: keys.Key, data: object, bad: dict[str, str]) -> bool:
        """Take a certificate, its private key or an ACME challenge (``what``: ``key`` decoded); False for a key
        that is none of them."""
        if what.kind == "certificate":
            cert = Certificate.from_dict(data)
            self.records[cert.name] = cert
            self._pair(cert.name, bad)
        elif what.kind == "private_key":
            k = CertificateKey.from_dict(data)
            self.keys[k.name] = k
            self._pair(k.name, bad)
        elif what.kind == "acme_challenge":
            ch = Challenge.from_dict(data)
            self.challenges[ch.token] = ch.key_authorization
            bad.pop(key, None)
        else:
            return False
        return True

    def delete(self, what: keys.Key, bad: dict[str, str]) -> bool:
        if what.kind == "certificate":
            self.records.pop(what.name, None)
        elif what.kind == "private_key":
            self.keys.pop(what.name, None)
        elif what.kind == "acme_challenge":
            self.challenges.pop(what.name, None)
            return True
        else:
            return False
        self._pair(what.name, bad)
        return True

    def _pair(self, name: str, bad: dict[str, str]) -> None:
        import time

        cert, key = self.records.get(name), self.keys.get(name)
        where = keys.certificate_key(name)
        self.served.pop(name, None)
        bad.pop(where, None)
        if cert is None or key is None:
            return  # the other half arrives in the same transaction's events, or the pair was deleted
        try:
            bundle = bundle_of(cert, key, time.time())
        except HaplaneError as exc:
            bad[where] = str(exc)
            return
        if bundle is None:
            bad[where] = "its key record belongs to another certificate (key_sha256 differs)"
            return
        i = bundle.info
        self.served[name] = RegistryCert(name, bundle.pem, i.sha1, i.hosts, i.not_after)


@dataclass
class Touched:
    """What a batch of events changed."""

    services: set[str] = field(default_factory=set)  # services whose instances (or record) changed
    structural: bool = False  # a service, frontend or backend record changed
    backends: set[str] = field(default_factory=set)  # Thalassa backends whose record changed
    keys: int = 0
    certs: set[str] = field(default_factory=set)  # certificates (or keys) that changed: runtime, no reload
    maps: bool = False  # an ACME challenge changed: a runtime map entry
    # the service records that changed, each with the record it had before the batch (None: it is new)
    before: dict[str, Service | None] = field(default_factory=dict)
    others: bool = False  # a Thalassa frontend or backend record changed (not a service record alone)


class Mirror:
    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self.instances: dict[str, dict[str, Instance]] = {}
        self.frontends: dict[str, FrontendSpec] = {}
        self.backends: dict[str, BackendSpec] = {}
        self.revision = 0
        self.bad: dict[str, str] = {}  # key → why it could not be read (never silently dropped)
        self.certs = _Certs()
        # the names the service, backend and frontend records claim (fallback backends left out: they are claimed
        # only where an agent focuses), kept current record by record: who else holds a service's name or route
        self.names = Names()

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
                        tuple(self.frontends.values()), tuple(self.backends.values()), self.revision,
                        certificates=tuple(self.certs.served.values()),
                        challenges=tuple(sorted(self.certs.challenges.items())))

    def service_instances(self, service: str) -> list[Instance]:
        return list(self.instances.get(service, {}).values())

    def instance(self, service: str, iid: str) -> Instance | None:
        return self.instances.get(service, {}).get(iid)

    def fingerprint(self, owner: str) -> str:
        """A fingerprint of the record behind an owner ("service:x", "frontend:y", "backend:z", "instance:x/i1",
        "certificate:c"): it changes when the record does (quarantine and runtime holds give the owner another
        chance then)."""
        kind, _, name = owner.partition(":")
        rec: object = None
        if kind == "service":
            rec = self.services.get(name)
        elif kind == "frontend":
            rec = self.frontends.get(name)
        elif kind == "backend":
            rec = self.backends.get(name)
        elif kind == "instance":
            service, _, iid = name.partition("/")
            rec = self.instance(service, iid)
        elif kind == "certificate":
            rec = self.certs.served.get(name)
        return repr(rec)

    def _put(self, key: str, value: str, touched: Touched) -> None:
        try:
            data = json.loads(value)  # first: a key under the watched prefix that is not JSON is reported
            what = keys.decode(key)
            if what is None or not what.record:
                if what is not None and self.certs.put(key, what, data, self.bad):  # certificate, key, challenge
                    self._touch_cert(what, touched)
                return
            if what.kind == "instance":
                inst = Instance.from_dict(data)
                self.instances.setdefault(inst.service, {})[inst.id] = inst
                touched.services.add(inst.service)
            elif what.kind == "service":
                svc = Service.from_dict(data)
                touched.before.setdefault(svc.name, self.services.get(svc.name))
                self.services[svc.name] = svc
                self.names.hold(owner("service", svc.name), _routed_claims(svc))
                touched.structural = True
                touched.services.add(svc.name)  # its backends converge with the change (a spare it takes)
            elif what.kind == "frontend":
                fe = FrontendSpec.from_dict(data)
                self.frontends[fe.name] = fe
                self.names.hold(owner("frontend", fe.name), frontend_claims(fe))
                touched.structural = touched.others = True
            else:
                be = BackendSpec.from_dict(data)
                self.backends[be.name] = be
                self.names.hold(owner("backend", be.name), backend_claims(be))
                touched.structural = touched.others = True
                touched.backends.add(be.name)
            self.bad.pop(key, None)
        except (HaplaneError, ValueError, KeyError, TypeError) as exc:
            # a record written by a newer or broken writer must not stop the agent; it is reported
            self.bad[key] = str(exc)

    @staticmethod
    def _touch_cert(what: keys.Key, touched: Touched) -> None:
        if what.kind == "acme_challenge":
            touched.maps = True
        else:
            touched.certs.add(what.name)

    def _delete(self, key: str, touched: Touched) -> None:
        self.bad.pop(key, None)
        what = keys.decode(key)
        if what is None:
            return
        if self.certs.delete(what, self.bad):
            self._touch_cert(what, touched)
            return
        if what.kind == "instance":
            by_id = self.instances.get(what.parent)
            if by_id is not None and by_id.pop(what.name, None) is not None:
                touched.services.add(what.parent)
                if not by_id:
                    del self.instances[what.parent]
        elif what.kind == "service":
            touched.before.setdefault(what.name, self.services.pop(what.name, None))
            self.names.release(owner("service", what.name))
            touched.structural = True
            touched.services.add(what.name)  # the spare it held, if any, is freed with the change
        elif what.kind == "frontend":
            self.frontends.pop(what.name, None)
            self.names.release(owner("frontend", what.name))
            touched.structural = touched.others = True
        elif what.kind == "backend":
            self.backends.pop(what.name, None)
            self.names.release(owner("backend", what.name))
            touched.structural = touched.others = True
            touched.backends.add(what.name)


def _routed_claims(svc: Service) -> tuple[Claim, ...]:
    """A service's claims where no agent focuses: its backend's name and its route (not its fallback backend)."""
    return tuple(c for c in service_claims(svc) if not (c.space == "backend" and c.value != svc.name))
