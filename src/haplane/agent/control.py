"""The agent's view of one HAProxy: the small interface reconcile needs, over the haproxy/ adapter.

Two ways to get one:
- ``ManagedHAProxy``: haplane starts HAProxy itself (master-worker, master CLI ``master.sock`` and admin
  ``admin.sock`` in the state directory, socket hand-over on reload, server-state file) and restarts it from
  the last good config if it dies;
- ``AttachedHAProxy``: the operator runs HAProxy; haplane gets the admin and master socket paths and the
  config path it may write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from haplane.plan import SlotObs


@dataclass(frozen=True, slots=True)
class CheckVerdict:
    ok: bool
    messages: tuple[str, ...]
    lines: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: str
    ok: bool
    answer: str


class HAProxyControl(Protocol):
    """Who calls what: the agent's reconcile loop, one call at a time (never concurrently)."""

    config_path: str

    async def start(self, config: str, maps: Mapping[str, str]) -> None:
        """Write ``config`` (already checked) and bring HAProxy up with it, or attach to a running one."""
        ...

    async def alive(self) -> bool:
        ...

    async def restart_from_last_good(self) -> None:
        """HAProxy died: start it again from the last good config on disk."""
        ...

    async def check(self, config: str, maps: Mapping[str, str]) -> CheckVerdict:
        """``haproxy -c`` on ``config`` with ``maps`` beside it; nothing in force changes."""
        ...

    async def reload(self, config: str, maps: Mapping[str, str]) -> int:
        """Make ``config`` (already checked) the running one: write atomically, save server state, reload
        through the master CLI, confirm the new worker. Returns HAProxy's reload count. On failure the last
        good config is restored on disk and ``ReloadFailed`` raised."""
        ...

    async def servers(self, backends: Iterable[str] | None = None) -> dict[str, dict[str, SlotObs]]:
        """``show servers state`` (for these backends, or all), with current sessions where cheap."""
        ...

    async def execute(self, commands: list[str]) -> list[CommandResult]:
        """Runtime API commands over one connection, in order; one result each."""
        ...

    async def maps(self, paths: Iterable[str]) -> dict[str, dict[str, str]]:
        """Current entries of the named map files as HAProxy holds them."""
        ...

    async def reloads(self) -> int:
        """HAProxy's own reload counter (master ``show proc``)."""
        ...

    async def stop(self) -> None:
        ...
