"""The store's key layout: every key haplane writes, and ``decode``, the one place that reads a key back.

Values are JSON documents. Under ``ROOT`` (the prefix every agent watches) live the records compose reads and
the registry's own bookkeeping; beside it, outside what the agents watch, live the node reports and elections,
so writing them never wakes an agent.

    /haplane/services/{name}              Service                                         kind "service"
    /haplane/instances/{service}/{id}     Instance (with its slot; TTL'd ones carry a     kind "instance"
                                          store lease)
    /haplane/frontends/{name}             FrontendSpec (Thalassa)                         kind "frontend"
    /haplane/backends/{name}              BackendSpec (Thalassa)                          kind "backend"
    /haplane/tables/{table}/{service}     a Lambda-Registry table's stored service and    kind "table"
                                          its containers (``haplane generate``)
    /haplane/alloc/{service}              the service's slot allocation record:           kind "alloc"
                                          {"freed": {slot: time}, "held": [slot...]}
    /haplane/sources/{source}             a source set's lease {"lease", "ttl"}           kind "source"
    /haplane/certificates/{name}          Certificate (public: chain, hosts, validity)    kind "certificate"
    /haplane/certificate-keys/{name}      CertificateKey (the private key, apart)         kind "private_key"
    /haplane/acme/challenges/{token}      an HTTP-01 challenge every node answers         kind "acme_challenge"
    /haplane/acme/orders/{name}           an ACME order's last result and back-off        kind "acme_order"
    /haplane/acme/account                 the ACME account key and URL                    kind "acme_account"
    /haplane-nodes/{node}                 an agent's report (agent/nodes.py)              kind "node"
    /haplane-names                        the names' guard: each write of a service,      kind "names"
                                          frontend or backend rewrites it in its own
                                          transaction, so two writers that check the
                                          names (``model/names.py``) cannot both win
    /haplane-election/{name}              an election's leader (election.py)              kind "election"
    /haplane-revoked/{session}            a UI session ended by logout, until it would    kind "revoked_session"
                                          have expired (a store lease; api/auth.py)

Who writes what: the registry (``haplane.registry``) the records, tables, allocation records, source sets and
the names' guard; ``haplane.tls`` the certificates and ACME state; each agent its own node report; an
``Election`` its key; the API's logout a revoked session.
Who reads: the agent's mirror (records), the registry (everything it writes), metrics (instances), the API
through the registry and ``tls.store`` (and its own revoked sessions), ``read_nodes`` (node reports).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

ROOT = "/haplane/"
SERVICES = ROOT + "services/"
INSTANCES = ROOT + "instances/"
FRONTENDS = ROOT + "frontends/"
BACKENDS = ROOT + "backends/"
TABLES = ROOT + "tables/"
ALLOC = ROOT + "alloc/"
SOURCES = ROOT + "sources/"
CERTIFICATES = ROOT + "certificates/"
CERTIFICATE_KEYS = ROOT + "certificate-keys/"
ACME = ROOT + "acme/"
ACME_CHALLENGES = ACME + "challenges/"
ACME_ORDERS = ACME + "orders/"
ACME_ACCOUNT = ACME + "account"
NODES = "/haplane-nodes/"
NAMES = "/haplane-names"  # outside ROOT: rewriting it never wakes an agent
ELECTIONS = "/haplane-election/"
REVOKED = "/haplane-revoked/"
ACME_ELECTION = "acme"  # the Election name of the ACME manager (its key: election_key(ACME_ELECTION))

KeyKind: TypeAlias = Literal["service", "instance", "frontend", "backend", "table", "alloc", "source",
                             "certificate", "private_key", "acme_challenge", "acme_order", "acme_account", "node",
                             "election", "names", "revoked_session"]

# the folder right under ROOT -> the kind of key it holds
_UNDER_ROOT: dict[str, KeyKind] = {"services": "service", "instances": "instance", "frontends": "frontend",
                                   "backends": "backend", "tables": "table", "alloc": "alloc", "sources": "source",
                                   "certificates": "certificate", "certificate-keys": "private_key"}
_UNDER_ACME: dict[str, KeyKind] = {"challenges": "acme_challenge", "orders": "acme_order"}
_NESTED: frozenset[KeyKind] = frozenset({"instance", "table"})  # {parent}/{name}
RECORDS: frozenset[KeyKind] = frozenset({"service", "instance", "frontend", "backend"})  # what compose reads


@dataclass(frozen=True, slots=True)
class Key:
    """What a key is. ``name`` is the record's own name (a service, an instance id, a frontend, a backend, a
    table's service, a source, a node, an election); ``parent`` the service of an instance, the table of a
    table's service, else empty."""

    kind: KeyKind
    name: str
    parent: str = ""

    @property
    def record(self) -> bool:
        """One of the records compose reads (service, instance, frontend, backend)."""
        return self.kind in RECORDS


def decode(key: str) -> Key | None:
    """What ``key`` is, from its prefix alone; None for a key haplane does not write. A nested key with its
    second part missing (``/haplane/instances/web``, never written by haplane) still decodes by its prefix,
    with an empty ``name``."""
    if key.startswith(ROOT):
        if key.startswith(ACME):
            return _decode_acme(key[len(ACME):])
        folder, sep, rest = key[len(ROOT):].partition("/")
        kind = _UNDER_ROOT.get(folder)
        if kind is None or not sep:
            return None
        if kind in _NESTED:
            parent, _, name = rest.partition("/")
            return Key(kind, name, parent)
        return Key(kind, rest)
    if key.startswith(NODES):
        return Key("node", key[len(NODES):])
    if key.startswith(ELECTIONS):
        return Key("election", key[len(ELECTIONS):])
    if key == NAMES:
        return Key("names", "")
    if key.startswith(REVOKED):
        return Key("revoked_session", key[len(REVOKED):])
    return None


def _decode_acme(rest: str) -> Key | None:
    if rest == "account":
        return Key("acme_account", "")
    folder, sep, name = rest.partition("/")
    kind = _UNDER_ACME.get(folder)
    return Key(kind, name) if kind is not None and sep else None


def service_key(name: str) -> str:
    return SERVICES + name


def instance_key(service: str, iid: str) -> str:
    return f"{INSTANCES}{service}/{iid}"


def instances_of(service: str) -> str:
    """The prefix of one service's instances."""
    return f"{INSTANCES}{service}/"


def frontend_key(name: str) -> str:
    return FRONTENDS + name


def backend_key(name: str) -> str:
    return BACKENDS + name


def table_prefix(table: str) -> str:
    """The prefix of one Lambda-Registry table's services."""
    return f"{TABLES}{table}/"


def alloc_key(service: str) -> str:
    return ALLOC + service


def source_key(source: str) -> str:
    return SOURCES + source


def node_key(node: str) -> str:
    return NODES + node


def election_key(name: str) -> str:
    return ELECTIONS + name


def revoked_key(session: str) -> str:
    return REVOKED + session


def certificate_key(name: str) -> str:
    """A certificate's public record."""
    return CERTIFICATES + name


def private_key_key(name: str) -> str:
    """A certificate's private key, kept apart from its public record (never answered by the API)."""
    return CERTIFICATE_KEYS + name


def challenge_key(token: str) -> str:
    return ACME_CHALLENGES + token


def order_key(name: str) -> str:
    return ACME_ORDERS + name
