"""Pieces the memory and sqlite engines share: key-prefix bounds, store-URL options, the memory event log.

Private to ``haplane.store``; nothing outside the store package imports this.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl

from haplane.errors import Compacted, ConfigurationError
from haplane.store.base import Compare, Delete, Event, Op, Put

DEFAULT_HISTORY = 100_000  # events a store keeps for watches; older ones are compacted


# --- key ranges ------------------------------------------------------------------------------------------------

def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """``[low, high)`` holding exactly the keys that start with ``prefix``; ``high`` None means "no upper
    bound computable" (empty prefix, or one ending in U+10FFFF): the caller then also checks ``startswith``.

    Unlike ``base.prefix_end`` this never yields a surrogate code point, which could not be bound as UTF-8
    text in SQLite: the code point after U+D7FF is U+E000 as far as stored keys are concerned."""
    if not prefix:
        return "", None
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return prefix, None
    nxt = last + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000
    return prefix, prefix[:-1] + chr(nxt)


def check_txn(compares: Sequence[Compare], ops: Sequence[Op]) -> None:
    """Reject malformed compares and ops before anything is applied (a ``TypeError``: a caller's bug), so an
    engine never fails half-way through a txn, nor blames the disk for a bad argument."""
    for cmp in compares:
        if not isinstance(cmp, Compare) or not isinstance(cmp.key, str) or not isinstance(cmp.mod_revision, int):
            raise TypeError(f"not a store compare: {cmp!r}")
    for op in ops:
        if isinstance(op, Put):
            if not (isinstance(op.key, str) and isinstance(op.value, str) and isinstance(op.lease, int)):
                raise TypeError(f"a Put needs a str key, a str value and an int lease: {op!r}")
        elif isinstance(op, Delete):
            if not isinstance(op.key, str):
                raise TypeError(f"a Delete needs a str key: {op!r}")
        else:
            raise TypeError(f"not a store op: {op!r}")


# --- URL options -----------------------------------------------------------------------------------------------

def split_url(url: str, scheme: str) -> tuple[str, dict[str, str]]:
    """``scheme://REST?k=v`` → (REST, {k: v}). Raises ``ConfigurationError`` on another scheme or a repeated
    option."""
    head = f"{scheme}://"
    if not url.startswith(head):
        raise ConfigurationError(f"store URL {url!r} does not start with {head!r}")
    rest, _, query = url[len(head):].partition("?")
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name in options:
            raise ConfigurationError(f"store URL {url!r}: option {name!r} given twice")
        options[name] = value
    return rest, options


def redact_url(url: str) -> str:
    """``url`` with the password of ``scheme://USER:PASSWORD@...`` (or a ``password=`` option) shown as ``***``,
    for logs and errors."""
    import re

    url = re.sub(r"([?&]password=)[^&]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hosts}{slash}{tail}"


def check_options(url: str, options: dict[str, str], known: Iterable[str]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigurationError(f"store URL {url!r}: unknown option(s) {', '.join(unknown)}; known: "
                                 + ", ".join(sorted(known)))


def int_option(url: str, options: dict[str, str], name: str, default: int, minimum: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"store URL {url!r}: {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigurationError(f"store URL {url!r}: {name}={value} must be at least {minimum}")
    return value


def float_option(url: str, options: dict[str, str], name: str, default: float, minimum: float) -> float:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"store URL {url!r}: {name}={raw!r} is not a number") from None
    if not value >= minimum:  # also rejects nan
        raise ConfigurationError(f"store URL {url!r}: {name}={value} must be at least {minimum}")
    return value


# --- the memory engine's event history -------------------------------------------------------------------------

class EventLog:
    """The most recent events, at least ``limit`` of them when that many were written, kept whole per txn.

    ``compact_revision`` is the newest revision whose events were dropped (0: nothing dropped yet). A watch
    may start at any revision above it; from it or below, events are gone and the watcher must resync. The
    newest txn is always kept whole, even if it alone holds more than ``limit`` events, so a compaction never
    splits a txn and never drops what a live watcher has not had a chance to read.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("an event log keeps at least one event")
        self.limit = limit
        self.compact_revision = 0
        self._revs: list[int] = []  # ascending; [self._head:] are live
        self._batches: list[Sequence[Event]] = []
        self._head = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, revision: int, events: Sequence[Event]) -> None:
        if not events:
            return
        self._revs.append(revision)
        self._batches.append(events)
        self._count += len(events)
        while self._count > self.limit and len(self._revs) - self._head > 1:
            self._count -= len(self._batches[self._head])
            self.compact_revision = self._revs[self._head]
            self._batches[self._head] = ()
            self._head += 1
        if self._head >= 1024 and self._head * 2 >= len(self._revs):  # amortised O(1) trimming of the lists
            del self._revs[:self._head]
            del self._batches[:self._head]
            self._head = 0

    def since(self, start_revision: int, prefix: str) -> list[Event]:
        """Events with revision >= ``start_revision`` under ``prefix``, in order. Raises ``Compacted``."""
        check_not_compacted(start_revision, self.compact_revision)
        i = bisect_left(self._revs, start_revision, self._head)
        if not prefix:
            return [ev for batch in self._batches[i:] for ev in batch]
        return [ev for batch in self._batches[i:] for ev in batch if ev.key.startswith(prefix)]


def check_not_compacted(start_revision: int, compact_revision: int) -> None:
    """Raise ``Compacted`` if events a watch from ``start_revision`` needs were dropped.

    The error's ``compact_revision`` is the oldest revision a watch may still start from."""
    if compact_revision and start_revision <= compact_revision:
        raise Compacted(start_revision, compact_revision + 1)
