"""The interfaces haplane's parts meet at, as Protocols, in one place (in the style of structlog's typing.py).

Each says who calls it and when; mypy strict checks every edge against them. At run time this module imports
only the pure core (model, render); the types of other layers it names are imported for the type checker
alone, so any layer may import it without pulling in an adapter.

    HAProxyReader    what planning reads of a running HAProxy (servers, maps)
    HAProxyControl   what the agent needs of one HAProxy (haproxy.control: ManagedHAProxy, AttachedHAProxy;
                     testing: FakeHAProxy; held to one behaviour by tests/contract)
    StatSource       a control that can answer ``show stat`` (the live figures of the UI and /metrics)
    AgentReader      what the API, the UI, metrics and ``haplane up`` see of an in-process agent (agent.view)
    NodeSource       what a node report reads of its agent (agent.nodes.NodeReporter)
    Reporter         what the agent runs beside its loop (agent.nodes.NodeReporter)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from haplane.model.haproxy import Config
from haplane.model.observed import CheckResult, OpResult, SlotObs
from haplane.model.ops import RuntimeOp
from haplane.model.records import Instance, Registry
from haplane.render import Rendered

if TYPE_CHECKING:
    from haplane.agent.activity import Activity
    from haplane.agent.state import AgentStatus
    from haplane.agent.stats import StatsSampler
    from haplane.store.base import Event, Store

__all__ = ["AgentReader", "HAProxyControl", "HAProxyReader", "NodeSource", "Reporter", "StatSource"]


class Reporter(Protocol):
    """Something the agent runs beside its loop for as long as it runs (``agent.nodes.NodeReporter``: this
    node's report in a shared store). ``run()`` never returns; the agent cancels it when it stops."""

    async def run(self) -> None:
        ...


class NodeSource(Protocol):
    """What a node report reads of its agent (``agent.reconcile.Agent``), about once a second."""

    @property
    def status(self) -> AgentStatus: ...

    @property
    def desired(self) -> Config | None: ...

    @property
    def idle(self) -> bool: ...


@runtime_checkable
class StatSource(Protocol):
    """A control that can answer HAProxy's ``show stat`` (the real ones; not the fake)."""

    async def show_stat(self) -> str:
        ...


class AgentReader(Protocol):
    """What readers in the same process see of an agent (``agent.view.AgentView``): the API and the UI
    (``ApiDeps.agent``), metrics (``Metrics(agent=...)``), ``haplane agent`` and ``haplane up``. Read-only, except
    for the two hooks, which metrics uses to count events and their latency as they happen."""

    @property
    def activity(self) -> Activity: ...

    @property
    def stats(self) -> StatsSampler | None: ...

    @property
    def store(self) -> Store: ...

    def status(self) -> dict[str, Any]: ...

    def applied_config(self) -> str | None: ...

    def registry(self) -> Registry: ...

    def desired(self) -> Config: ...

    def instance(self, service: str, iid: str) -> Instance | None: ...

    def on_events(self, callback: Callable[[list[Event]], None]) -> None: ...

    def on_routable(self, callback: Callable[[float], None]) -> None: ...

    async def overview(self, live: bool = True, keep_sampling: bool = True) -> dict[str, Any]: ...

    async def plan_preview(self) -> dict[str, Any]: ...




class HAProxyReader(Protocol):
    """What planning reads of a running HAProxy (``agent.planning.compose_observe_plan``): the agent through its
    control, ``haplane plan`` through ``haproxy.control.RuntimeReader`` on the admin socket."""

    async def servers(self, backends: Iterable[str] | None = None) -> dict[str, dict[str, SlotObs]]:
        """``show servers state`` (for these backends, or all; a backend HAProxy does not run is left out),
        with current sessions where a drain waits for them."""
        ...

    async def maps(self, paths: Iterable[str]) -> dict[str, dict[str, str]]:
        """Current entries of the named map files as HAProxy holds them."""
        ...

    async def map_entries_of(self, keys: Mapping[str, Iterable[str]]) -> dict[str, dict[str, str]]:
        """The entries of these keys (map file → keys) as HAProxy holds them, each map's others not read (a key
        HAProxy does not hold is left out): what a change of one service's route plans against."""
        ...

    async def certificates(self, crt_list: str, paths: Iterable[str] | None = None) -> dict[str, str]:
        """The certificates HAProxy serves through ``crt_list``: file path → the leaf's SHA1 fingerprint; of
        ``paths`` only, when given (a thousand certificates listed cost one read of the list, and a fingerprint
        read only for the ones asked about)."""
        ...


class HAProxyControl(HAProxyReader, Protocol):
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

    async def serve_last_good(self) -> bool:
        """Serve the last good config on disk without composing anything (the store cannot be read at start):
        attach to an HAProxy left running, or start one from the last good config. False when there is none
        (no last good config, nothing running). ``start`` later takes over the HAProxy this left running."""
        ...

    def on_exit(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called (in the event loop, at once) whenever HAProxy exits without being asked to,
        so the agent heals it without waiting for its next resync. A control that does not run HAProxy (the
        attached one) never calls it: the agent finds that one dead at its next step or resync."""
        ...

    async def check(self, config: Rendered) -> CheckResult:
        """``haproxy -c`` on ``config`` with its maps; nothing in force changes."""
        ...

    async def reload(self, config: Rendered) -> int:
        """Make ``config`` (already checked) the running one: save server state (minus the servers it moves),
        write atomically, reload through the master CLI, confirm the new worker. Returns HAProxy's reload
        count. On failure the last good config is restored on disk and ``ReloadFailed`` raised."""
        ...

    async def execute(self, ops: Sequence[RuntimeOp]) -> list[OpResult]:
        """The plan's operations over one connection, in order; one result each."""
        ...

    async def execute_and_read(self, ops: Sequence[RuntimeOp], backends: Iterable[str]
                               ) -> tuple[list[OpResult], dict[str, dict[str, SlotObs]]]:
        """``execute(ops)``, then ``servers(backends)``: what the operations left in those backends, read in the
        same round trip where the control can (a membership change planned on what the agent last read of its
        backend sends its operations and reads the backend back at once)."""
        ...

    async def reloads(self) -> int:
        """HAProxy's own reload counter (master ``show proc``)."""
        ...

    async def stop(self) -> None:
        ...
