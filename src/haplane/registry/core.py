"""What every registry operation shares: the store, the clock, the one If-Match check (``guard_write``), the one
door to the store (``RegistryCore.commit``) and this process's turns for writers of one key.

Every write of the registry is: read what it depends on, build compares and ops, ``commit`` them in one store
transaction. A compare-and-swap that loses is retried where the operation is a pure function of what it read
(slot allocation, source sets, Lambda-Registry tables, a write without ``If-Match``) and surfaced as
``PreconditionFailed`` where the caller gave an ``If-Match`` revision. Concurrent instance writes of one service
share one transaction (``instances.py``, a ``haplane.batching.Batcher``); ``commit`` is the one place a registry
write reaches the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from haplane.errors import PreconditionFailed
from haplane.model.names import Names
from haplane.store.base import KV, Compare, Op, Store

MAX_RETRIES = 50  # compare-and-swap rounds an operation that retries its conflicts makes before giving up

T = TypeVar("T")


def dumps(data: Any) -> str:
    """A record's JSON text: sorted keys, no spaces (the same record always makes the same text)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def parse(kv: KV, parse_doc: Callable[[dict[str, Any]], T]) -> T:
    """A stored record, read back with its model's ``from_dict``."""
    return parse_doc(json.loads(kv.value))


def guard_write(key: str, current: KV | int | None, if_match: int | None) -> Compare:
    """The compare that makes a write of ``key`` conditional on what was read: ``current`` is the record (or the
    revision it was read at), None when it does not exist.

    With ``if_match`` (the revision the caller based its write on: HTTP ``If-Match``), the record must still be
    at that revision, else ``PreconditionFailed`` (412); a record that does not exist never matches, as in
    HTTP. The returned compare then keeps the write from landing on a record changed since the read."""
    revision = current.mod_revision if isinstance(current, KV) else (current or 0)
    if if_match is not None and (current is None or revision != if_match):
        raise PreconditionFailed(key, if_match, revision)
    return Compare(key, revision)


class RegistryCore:
    """The state every registry operation shares; holds none of the registry's data (the store does), only
    this process's turns for writers of one key and a short-lived copy of services' default ports.

    ``slot_cooldown`` (seconds) should match the agents' drain timeout: a freed slot is not reused sooner.
    ``min_slots``: the smallest backend size, as the agents compose it (to know when a slot grows a backend)."""

    def __init__(self, store: Store, slot_cooldown: float = 30.0, min_slots: int = 8,
                 clock: Callable[[], float] = time.time, fallback_names: dict[str, str] | None = None) -> None:
        self.store = store
        self.slot_cooldown = slot_cooldown
        self.min_slots = min_slots
        self.clock = clock
        self._doc_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # key -> (lock, [holders and waiters])
        self._ports: dict[str, tuple[int | None, float]] = {}  # service -> (default port, when read)
        # the names the records take (model/names.py), as of the names' guard at a revision (store.keys.NAMES)
        self._names: tuple[int, Names] | None = None
        self.fallback_names = dict(fallback_names or {})  # HSDO's fallback backend names (service -> name)

    async def commit(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        """Write ``ops`` if every compare holds, in one store transaction; the new revision. With no ops,
        nothing is written and the store's revision is the answer (compares are then not checked)."""
        if not ops:
            return await self.store.revision()
        return await self.store.txn(compares, ops)

    @contextlib.asynccontextmanager
    async def _doc_lock(self, key: str) -> AsyncIterator[None]:
        """This process's writers of ``key`` take turns; the lock is dropped when nobody holds or waits for it."""
        entry = self._doc_locks.setdefault(key, (asyncio.Lock(), [0]))
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if not entry[1][0]:
                self._doc_locks.pop(key, None)
