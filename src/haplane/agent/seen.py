"""What the agent last read of each backend's slots in HAProxy, to plan a membership change without reading first.

A membership change (an instance added, changed or gone) used to cost two Runtime API round trips: ``show servers
state`` of its backend, then the plan's operations. ``SeenSlots`` keeps the answer of every such read (a full
pass reads every backend), so the agent can plan the change on what HAProxy last said of that backend and send
the operations with ``show servers state`` of the backend after them, in ONE round trip
(``HAProxyControl.execute_and_read``); the answer replaces what was seen. When it is not what the operations
should have left (``expected``: HAProxy was changed behind the agent's back), the agent plans on the answer and
sends what that plan finds at once, the usual way.

What was seen is forgotten whenever it may no longer hold: a reload or restart of HAProxy, a refused operation,
an HAProxy error. A backend not seen since, or with a slot draining (whose sessions a drain waits for, read
fresh), is read first as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from haplane.model.observed import Observed, SlotObs
from haplane.model.ops import RuntimeOp, SetAddress, SetState, SetWeight
from haplane.typing import HAProxyReader

__all__ = ["SeenSlots", "Seeing", "as_expected", "expected"]


class SeenSlots:
    """backend → its slots as HAProxy last answered ``show servers state`` for it."""

    def __init__(self) -> None:
        self._slots: dict[str, Mapping[str, SlotObs]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def forget(self) -> None:
        self._slots = {}

    def saw(self, observed: Mapping[str, Mapping[str, SlotObs]], asked: Iterable[str] | None) -> None:
        """HAProxy's answer for the backends ``asked`` (None: every backend, the answer replaces all). A backend
        asked and missing from the answer is not in the running config: not seen."""
        if asked is None:
            self._slots = dict(observed)
            return
        for name in asked:
            slots = observed.get(name)
            if slots is None:
                self._slots.pop(name, None)
            else:
                self._slots[name] = slots

    def of(self, backends: Iterable[str]) -> dict[str, Mapping[str, SlotObs]] | None:
        """What was seen of ``backends``, if every one was seen and none has a slot draining; else None (read
        them first)."""
        out: dict[str, Mapping[str, SlotObs]] = {}
        for name in backends:
            slots = self._slots.get(name)
            if slots is None or any(o.drain or o.sessions for o in slots.values()):
                return None
            out[name] = slots
        return out


class Seeing:
    """An ``HAProxyReader`` that notes every ``servers`` answer in ``seen`` (the agent plans through it)."""

    def __init__(self, reader: HAProxyReader, seen: SeenSlots) -> None:
        self.reader = reader
        self.seen = seen

    async def servers(self, backends: Iterable[str] | None = None) -> dict[str, dict[str, SlotObs]]:
        asked = None if backends is None else list(backends)
        out = await self.reader.servers(asked)
        self.seen.saw(out, asked)
        return out

    async def maps(self, paths: Iterable[str]) -> dict[str, dict[str, str]]:
        return await self.reader.maps(paths)

    async def map_entries_of(self, keys: Mapping[str, Iterable[str]]) -> dict[str, dict[str, str]]:
        return await self.reader.map_entries_of(keys)

    async def certificates(self, crt_list: str, paths: Iterable[str] | None = None) -> dict[str, str]:
        return await self.reader.certificates(crt_list, paths)


def expected(seen: Mapping[str, Mapping[str, SlotObs]], ops: Sequence[RuntimeOp]) -> dict[str, dict[str, SlotObs]]:
    """The slots ``ops`` leave when HAProxy had ``seen`` (each ``set server`` as ``SlotObs.after`` says)."""
    out = {name: dict(slots) for name, slots in seen.items()}
    for op in ops:
        if isinstance(op, SetAddress | SetWeight | SetState) and \
                (slot := out.get(op.backend, {}).get(op.server)) is not None:
            out[op.backend][op.server] = slot.after(op)
    return out


def as_expected(after: Observed, expect: Mapping[str, Mapping[str, SlotObs]]) -> bool:
    """HAProxy's answer holds the slots ``expect`` says (sessions aside), in every backend of ``expect``."""
    for name, slots in expect.items():
        got = after.get(name)
        if got is None or got.keys() != slots.keys():
            return False
        for server, want in slots.items():
            o = got[server]
            if (o.address, o.port, o.weight, o.maint, o.drain) != (want.address, want.port, want.weight, want.maint,
                                                                  want.drain):
                return False
    return True
