"""Export and import of the whole registry over a store: one read at one revision, one transaction.

``export_document`` reads every key under the registry's root at one revision; ``import_document`` plans
(``haplane.transfer.plan_import``), checks the config the result renders (the caller's ``check``), and writes
the plan in one transaction whose compares hold every touched key to the revision it was read at: a writer in
between makes the import fail whole (``Conflict``), never half-applied.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from haplane.errors import Conflict, NameTaken
from haplane.model import names as nm
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, Service
from haplane.registry.payload import table_service_from_dict, table_service_to_dict
from haplane.store import Compare, Delete, Op, Put, Store, keys
from haplane.transfer import ROOT, Document, ImportPlan, apply_to_registry, plan_import, section_of, to_document

Check = Callable[[Registry], Awaitable[None]]


@dataclass(frozen=True)
class ImportResult:
    plan: ImportPlan
    revision: int  # the store's revision after the import (the one read, for a dry run or an empty plan)
    applied: bool
    notes: tuple[str, ...] = ()


async def read_registry(store: Store) -> tuple[Registry, dict[str, str], dict[str, int]]:
    """The records compose reads, every portable key's value, and each key's mod revision, at one revision."""
    kvs, revision = await store.range(ROOT)
    values: dict[str, str] = {}
    mods: dict[str, int] = {}
    services, instances, frontends, backends = [], [], [], []
    for kv in kvs:
        section = section_of(kv.key)
        if section is None:
            continue
        values[kv.key] = kv.value
        mods[kv.key] = kv.mod_revision
        data = json.loads(kv.value)
        if section == "services":
            services.append(Service.from_dict(data))
        elif section == "instances":
            instances.append(Instance.from_dict(data))
        elif section == "frontends":
            frontends.append(FrontendSpec.from_dict(data))
        elif section == "backends":
            backends.append(BackendSpec.from_dict(data))
    registry = Registry(tuple(services), tuple(instances), tuple(frontends), tuple(backends), revision)
    return registry, values, mods


async def export_document(store: Store) -> dict[str, Any]:
    """The whole registry as one document (``haplane.transfer``), read at one revision."""
    registry, values, _mods = await read_registry(store)
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    allocations: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {}
    for key, text in values.items():
        section = section_of(key)
        what = keys.decode(key)
        if section == "tables" and what is not None:
            tables.setdefault(what.parent, {})[what.name] = table_service_to_dict(
                table_service_from_dict(json.loads(text)))
        elif section == "allocations" and what is not None:
            allocations[what.name] = json.loads(text)
        elif section == "extra":
            extra[key[len(ROOT):]] = json.loads(text)
    return to_document(registry, tables, allocations, extra)


async def import_document(store: Store, doc: Document, *, dry_run: bool = False, check: Check | None = None
                          ) -> ImportResult:
    """Make every section ``doc`` carries hold exactly its rows, in one transaction, or change nothing.

    ``check`` is given the records the registry would then hold (to run ``haproxy -c`` on their config); it
    raises to refuse. A dry run plans and checks, and writes nothing."""
    registry, values, mods = await read_registry(store)
    plan = plan_import(doc, values)
    result = apply_to_registry(registry, doc)
    lost = nm.collisions(result.services, result.backends, result.frontends)
    if lost:  # the same names the registry refuses one write at a time
        first = lost[0]
        raise NameTaken(f"{first.loser} {first.claim.field}", first.claim.space, first.claim.value, first.winner,
                        nm.describe(first.winner))
    if check is not None:
        await check(result)
    if dry_run or plan.empty:
        return ImportResult(plan, registry.revision, False, doc.notes)
    compares = [Compare(key, mods.get(key, 0)) for key in (*plan.puts, *plan.deletes)]
    ops: list[Op] = [Put(k, v) for k, v in plan.puts.items()]
    ops += [Delete(k) for k in plan.deletes]
    ops.append(Put(keys.NAMES, json.dumps({"last": "import"})))  # the registry reads the names again
    try:
        revision = await store.txn(compares, ops)
    except Conflict as exc:
        raise Conflict(exc.key) from None  # another writer touched a key the import changes: nothing was written
    return ImportResult(plan, revision, True, doc.notes)
