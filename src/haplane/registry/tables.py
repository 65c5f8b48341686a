"""Lambda-Registry tables in the store: ``apply_payload`` merges a ``/generate`` payload into its stored table
(``payload.merge_payload``, pure) and writes the difference in one compare-and-swap transaction."""

from __future__ import annotations

import json
from typing import Any

from haplane.compose import TableService
from haplane.errors import Conflict
from haplane.model.change import Change
from haplane.registry.core import MAX_RETRIES, RegistryCore, dumps
from haplane.registry.payload import merge_payload, parse_payload, table_service_from_dict, table_service_to_dict
from haplane.store import keys
from haplane.store.base import Compare, Delete, Op, Put


def _table_service(key: str) -> str:
    """The service a key under a table's prefix stores."""
    what = keys.decode(key)
    if what is None or what.kind != "table":
        raise ValueError(f"{key!r} is not a table's key")
    return what.name


class LambdaTables(RegistryCore):
    async def apply_payload(self, data: Any) -> tuple[list[TableService], list[Change], int]:
        """Apply a Lambda-Registry payload (``{table, running, candidates}``, validated here) to its table in
        one compare-and-swap transaction, retried if another writer got there first; returns the table's
        services after it, what changed, and the revision."""
        payload = parse_payload(data)
        prefix = keys.table_prefix(payload.table)
        for _ in range(MAX_RETRIES):
            kvs, _ = await self.store.range(prefix)
            stored = {_table_service(kv.key): table_service_from_dict(json.loads(kv.value)) for kv in kvs}
            revs = {kv.key: kv.mod_revision for kv in kvs}
            new, changes = merge_payload(payload, stored)
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
                rev = await self.commit(compares, ops)
            except Conflict:
                continue
            return list(new.values()), changes, rev
        raise Conflict(prefix)
