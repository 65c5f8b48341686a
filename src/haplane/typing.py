"""The interfaces haplane's parts meet at, as Protocols, in one place (in the style of structlog's typing.py).

Each says who calls it and when; mypy strict checks every edge against them. They import only the pure core
(model, render, plan), so any layer may import this module without pulling in an adapter.

    HAProxyControl   what the agent needs of one HAProxy (haplane.agent.managed: ManagedHAProxy, AttachedHAProxy;
                     haplane.testing: FakeHAProxy; held to one behaviour by tests/contract)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from haplane.model.observed import CheckResult, OpResult, SlotObs
from haplane.model.ops import RuntimeOp
from haplane.render import Rendered

__all__ = ["HAProxyControl"]


class HAProxyControl(Protocol):
    """The agent's view of one HAProxy. Who calls what: the agent's reconcile loop, one call at a time (never
    concurrently); ``haplane plan`` and the contract tests call the reads.

    Two real ones: ``ManagedHAProxy`` (haplane starts HAProxy itself in master-worker mode, with its master
    CLI and admin socket in the state directory, and restarts it from the last good config if it dies) and
    ``AttachedHAProxy`` (the operator runs HAProxy; haplane gets the admin and master socket paths and the
    config path it may write)."""

    config_path: str

    async def start(self, config: Rendered) -> None:
        """Write ``config`` (already checked) and bring HAProxy up with it, or attach to a running one."""
        ...

    async def alive(self) -> bool:
        ...

    async def restart_from_last_good(self) -> None:
        """HAProxy died: start it again from the last good config on disk."""
        ...

    async def check(self, config: Rendered) -> CheckResult:
        """``haproxy -c`` on ``config`` with its maps; nothing in force changes."""
        ...

    async def reload(self, config: Rendered) -> int:
        """Make ``config`` (already checked) the running one: save server state (minus the servers it moves),
        write atomically, reload through the master CLI, confirm the new worker. Returns HAProxy's reload
        count. On failure the last good config is restored on disk and ``ReloadFailed`` raised."""
        ...

    async def servers(self, backends: Iterable[str] | None = None) -> dict[str, dict[str, SlotObs]]:
        """``show servers state`` (for these backends, or all; a backend HAProxy does not run is left out),
        with current sessions where a drain waits for them."""
        ...

    async def execute(self, ops: Sequence[RuntimeOp]) -> list[OpResult]:
        """The plan's operations over one connection, in order; one result each."""
        ...

    async def maps(self, paths: Iterable[str]) -> dict[str, dict[str, str]]:
        """Current entries of the named map files as HAProxy holds them."""
        ...

    async def reloads(self) -> int:
        """HAProxy's own reload counter (master ``show proc``)."""
        ...

    async def stop(self) -> None:
        ...
