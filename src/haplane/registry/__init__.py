"""The registry: typed operations over a Store, the write side of haplane. The API, the sources (through
``sources.base.StoreSink``) and ``haplane generate`` write through here; the agent only watches the store
(``store.keys.ROOT``) and never imports this package.

One room per job, all sharing ``core.RegistryCore`` (the store, the clock, the one If-Match check
``guard_write`` and the one door to the store, ``commit``):

    core.py         RegistryCore, guard_write, commit, dumps, parse; this process's turns per key
    reads.py        Reads: snapshot (the records at one revision), get/list of each record, service_port
    records.py      RecordWrites: services, Thalassa frontends and backends (put, patch, delete)
    slots.py        SlotAllocation (pure slot rules), SlotTaker (one batch's slots), SlotReads
    instances.py    InstanceWrites: put, patch, delete of one instance; concurrent writes of one service
                    batched into one transaction
    heartbeats.py   Heartbeats: lease renewals, batched; Renewal
    source_sets.py  SourceSets: replace_source, a source's whole set in one transaction, bound to a lease
    payload.py      PURE: a Lambda-Registry payload, parsed and merged into its table
    tables.py       LambdaTables: apply_payload, the table in the store (``POST /generate``)
    transfer.py     export_document / import_document: the whole registry at one revision, in one transaction
                    (the document itself is ``haplane.transfer``, PURE)

The key layout is ``haplane.store.keys``.
"""

from __future__ import annotations

from haplane.registry.core import MAX_RETRIES, RegistryCore, guard_write
from haplane.registry.heartbeats import Heartbeats, Renewal
from haplane.registry.instances import InstanceWrites
from haplane.registry.reads import Reads
from haplane.registry.records import RecordWrites
from haplane.registry.source_sets import SourceSets
from haplane.registry.tables import LambdaTables

__all__ = ["MAX_RETRIES", "RegistryCore", "RegistryStore", "Renewal", "guard_write"]


class RegistryStore(InstanceWrites, RecordWrites, Heartbeats, SourceSets, LambdaTables, Reads):
    """Every registry operation on one store. Holds none of the registry's data (the store does); in this
    process, the batches and turns of writers that would otherwise race each other.

    ``RegistryStore(store, slot_cooldown=30.0, min_slots=8, clock=time.time)``: ``slot_cooldown`` (seconds)
    should match the agents' drain timeout, so a freed slot is not reused sooner."""
