"""The Store contract: an etcd-shaped key/value store with revisions, transactions, watches and leases.

Every engine (memory, sqlite, etcd, dynamodb) implements exactly this, and passes the one contract suite
in ``tests/contract/test_store_contract.py``. Callers never see an engine's own exceptions: engines raise
``StoreUnavailable``, ``Conflict`` and ``Compacted`` from ``haplane.errors``.

Who calls what, and when:
- ``txn`` — the registry layer (API, sources, /generate) for every write; compare-and-swap on revisions.
- ``get`` / ``range`` — readers: the API for GETs, the agent for its full resync; ``get_many`` — the registry,
  when it handles many keys at once (a batch of heartbeats, a group of registrations).
- ``watch`` — the agent, from the revision of its last ``range``; a ``Compacted`` error means resync.
- ``grant_lease`` / ``keepalive`` / ``revoke_lease`` — TTL'd instances and watcher leases; keys put with a
  lease are deleted (with a delete event) when the lease expires. ``keepalive_many`` — heartbeats in bulk.

Revisions are store-wide and strictly increasing; every successful ``txn`` bumps it by exactly one, and
all its events carry that revision. Values are text (JSON documents, by convention of the registry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int = 0  # 0: no lease


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["put", "delete"]
    key: str
    value: str | None  # None for deletes
    revision: int  # the revision of the txn that made this event
    create_revision: int = 0  # of the key as it is after a put (0 for deletes)


@dataclass(frozen=True, slots=True)
class Compare:
    """Holds when ``key``'s mod_revision equals ``mod_revision``; 0 means 'the key must not exist'."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: str
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Deletes ``key``; with ``prefix=True`` every key starting with ``key``. Deleting nothing is not an error."""

    key: str
    prefix: bool = False


Op = Put | Delete


@runtime_checkable
class Store(Protocol):
    url: str

    async def get(self, key: str) -> KV | None:
        """The key's current value, or None."""
        ...

    async def range(self, prefix: str) -> tuple[list[KV], int]:
        """Every key starting with ``prefix`` in key order, and the store revision they were read at."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[KV | None]:
        """The current value of each key (None where absent), in the order given, all read at one revision;
        one round trip where the engine allows it."""
        ...

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int:
        """Apply ``ops`` atomically if every compare holds; return the new revision.

        Raises ``Conflict`` naming the first compare that failed; then nothing was written. A txn with no
        ops that passes its compares returns the current revision and writes nothing. Once this returns,
        the write is durable (it survives a SIGKILL of the process)."""
        ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        """Yield batches of events for keys under ``prefix`` with revision >= ``start_revision``, in
        revision order, forever. Raises ``Compacted`` (at once or later) if events were lost."""
        ...

    async def revision(self) -> int:
        """The current store revision."""
        ...

    async def grant_lease(self, ttl: float) -> int:
        """A new lease id (> 0) that expires ``ttl`` seconds from now unless kept alive."""
        ...

    async def keepalive(self, lease: int) -> None:
        """Push the lease's expiry ``ttl`` seconds into the future. Raises ``NotFound`` if it expired."""
        ...

    async def keepalive_many(self, leases: Sequence[int]) -> set[int]:
        """``keepalive`` of every lease at once (one round trip or one commit where the engine allows it).
        Returns the leases that had expired or never existed; every other one was renewed."""
        ...

    async def revoke_lease(self, lease: int) -> None:
        """Expire the lease now: its keys are deleted. Revoking an unknown lease is not an error."""
        ...

    async def close(self) -> None:
        ...


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix`` (etcd's range_end)."""
    if not prefix:
        return "\U0010ffff"
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
