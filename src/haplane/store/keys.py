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
    /haplane-nodes/{node}                 an agent's report (agent/nodes.py)              kind "node"
    /haplane-election/{name}              an election's leader (election.py)              kind "election"

Who writes what: the registry (``haplane.registry``) every key under ``ROOT``; each agent its own node
report; an ``Election`` its key. Who reads: the agent's mirror (records), the registry (everything under
``ROOT``), metrics (instances), the API through the registry, ``read_nodes`` (node reports).
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
NODES = "/haplane-nodes/"
ELECTIONS = "/haplane-election/"

KeyKind: TypeAlias = Literal["service", "instance", "frontend", "backend", "table", "alloc", "source", "node",
                             "election"]

# the folder right under ROOT -> the kind of key it holds
_UNDER_ROOT: dict[str, KeyKind] = {"services": "service", "instances": "instance", "frontends": "frontend",
                                   "backends": "backend", "tables": "table", "alloc": "alloc", "sources": "source"}
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
    return None


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
