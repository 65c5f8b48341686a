"""What HAProxy reports about itself, as plain frozen values. PURE: no I/O.

``haproxy/parse.py`` builds these from the text HAProxy prints (``show servers state``, ``show stat``,
``show info``, the master CLI's ``show proc``, ``haproxy -c``); plan, the agent and the UI read them.
Every field name says which HAProxy field it comes from when the two differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, NamedTuple

from haplane.model.ops import RuntimeOp, SetAddress, SetState, SetWeight

# srv_op_state (show servers state): the server's operational state.
OP_STOPPED = 0  # down
OP_STARTING = 1  # up, warming up (slowstart)
OP_RUNNING = 2  # up
OP_STOPPING = 3  # up but soft-stopping (e.g. an HTTP check answered 404 with http-check disable-on-404)
OP_STATE_NAMES: Mapping[int, str] = MappingProxyType({0: "DOWN", 1: "STARTING", 2: "UP", 3: "STOPPING"})

# srv_admin_state (show servers state): a bit mask.
ADMF_FMAINT = 0x01  # forced into maintenance (``set server state maint``, ``disable server``)
ADMF_IMAINT = 0x02  # inherited maintenance from a tracked server
ADMF_CMAINT = 0x04  # declared ``disabled`` in the configuration; stays set after ``state ready`` (a marker
#                     the server-state file uses), so it is NOT part of ADMF_MAINT (HAProxy's own mask is 0x23)
ADMF_FDRAIN = 0x08  # forced into drain (``set server state drain``)
ADMF_IDRAIN = 0x10  # inherited drain from a tracked server
ADMF_RMAINT = 0x20  # maintenance because the address could not be resolved
ADMF_HMAINT = 0x40  # FQDN set from the stats socket (not a maintenance state by itself)
ADMF_MAINT = ADMF_FMAINT | ADMF_IMAINT | ADMF_RMAINT
ADMF_DRAIN = ADMF_FDRAIN | ADMF_IDRAIN

# srv_check_status: HAProxy's enum healthcheck_status, by number (the names ``show stat`` prints).
CHECK_STATUS_NAMES: Mapping[int, str] = MappingProxyType({
    0: "UNK", 1: "INI", 2: "START", 3: "CHECKED", 4: "HANA", 5: "SOCKERR", 6: "L4OK", 7: "L4TOUT", 8: "L4CON",
    9: "L6OK", 10: "L6TOUT", 11: "L6RSP", 12: "L7TOUT", 13: "L7RSP", 14: "L57DATA", 15: "L7OK", 16: "L7OKC",
    17: "L7STS", 18: "PROCERR", 19: "PROCTOUT", 20: "PROCOK",
})
# srv_check_result
CHECK_RESULT_NAMES: Mapping[int, str] = MappingProxyType(
    {0: "UNKNOWN", 1: "NEUTRAL", 2: "FAILED", 3: "PASSED", 4: "CONDPASS"})

# srv_check_state / srv_agent_state: a bit mask.
CHK_ST_INPROGRESS = 0x01
CHK_ST_CONFIGURED = 0x02
CHK_ST_ENABLED = 0x04
CHK_ST_PAUSED = 0x08


class ServerState(NamedTuple):
    """One line of ``show servers state`` (format version 1).

    A NamedTuple rather than a dataclass, like ``model.haproxy.Server``: a state read returns one per server
    (10,000s), and a frozen dataclass costs ~2 µs to create against ~0.5 µs; it is just as immutable."""

    backend_id: int
    backend: str
    server_id: int
    name: str
    addr: str
    op_state: int
    admin_state: int
    uweight: int  # the weight in force (what ``set server ... weight`` changes)
    iweight: int  # the weight in the configuration
    since_change: int  # seconds since the last operational state change
    check_status: int
    check_result: int
    check_health: int  # rise/fall counter
    check_state: int
    agent_state: int
    port: int
    fqdn: str | None = None
    check_port: int = 0
    check_addr: str | None = None

    @property
    def maint(self) -> bool:
        """In maintenance: forced (``state maint``, or ``disabled`` in the config and not enabled since),
        inherited from a tracked server, or for a failed DNS resolution."""
        return bool(self.admin_state & ADMF_MAINT)

    @property
    def forced_maint(self) -> bool:
        return bool(self.admin_state & ADMF_FMAINT)

    @property
    def config_disabled(self) -> bool:
        """Declared ``disabled`` in the configuration (whether or not it has been enabled since)."""
        return bool(self.admin_state & ADMF_CMAINT)

    @property
    def drain(self) -> bool:
        return bool(self.admin_state & ADMF_DRAIN)

    @property
    def up(self) -> bool:
        """Operationally up (running, warming up or soft-stopping), whatever its admin state."""
        return self.op_state != OP_STOPPED

    @property
    def routable(self) -> bool:
        """Would receive new load-balanced traffic now: up, not in maintenance, not draining, weight > 0."""
        return self.op_state in (OP_RUNNING, OP_STARTING) and not self.maint and not self.drain and self.uweight > 0

    @property
    def op_name(self) -> str:
        return OP_STATE_NAMES.get(self.op_state, str(self.op_state))

    @property
    def check_status_name(self) -> str:
        return CHECK_STATUS_NAMES.get(self.check_status, str(self.check_status))

    @property
    def check_result_name(self) -> str:
        return CHECK_RESULT_NAMES.get(self.check_result, str(self.check_result))

    @property
    def checked(self) -> bool:
        """A health check is configured and enabled for this server."""
        return bool(self.check_state & CHK_ST_ENABLED)

    @property
    def admin_name(self) -> Literal["maint", "drain", "ready"]:
        """The admin state in ``set server ... state`` words."""
        return "maint" if self.maint else "drain" if self.drain else "ready"

    @property
    def key(self) -> tuple[str, str]:
        return (self.backend, self.name)


@dataclass(frozen=True, slots=True)
class StatRow:
    """One row of ``show stat`` (CSV): a frontend, a backend, a server or a listener.

    The fields a UI needs are typed; every column is still in ``raw`` (by HAProxy's column name).
    Counters HAProxy leaves empty for a row type are 0 here; ``None`` only where emptiness means
    "not applicable" and 0 would mislead (``weight``, ``check_status``)."""

    pxname: str
    svname: str
    type: Literal["frontend", "backend", "server", "listener"]
    status: str  # UP, DOWN, MAINT, DRAIN, NOLB, OPEN, "no check", "UP 1/3", ...
    weight: int | None
    uweight: int | None
    scur: int  # current sessions
    smax: int
    slim: int | None
    stot: int  # total sessions
    rate: int  # sessions per second over the last second
    req_rate: int
    req_tot: int
    qcur: int
    bin: int
    bout: int
    ereq: int
    econ: int
    eresp: int
    wretr: int
    wredis: int
    hrsp_1xx: int
    hrsp_2xx: int
    hrsp_3xx: int
    hrsp_4xx: int
    hrsp_5xx: int
    hrsp_other: int
    qtime: int  # ms, average over the last 1024 requests
    ctime: int
    rtime: int
    ttime: int
    check_status: str | None
    check_code: int | None
    check_duration: int | None
    lastchg: int | None  # seconds since the last UP<->DOWN change
    downtime: int | None
    chkfail: int
    act: int
    bck: int
    addr: str | None
    cookie: str | None
    mode: str | None
    raw: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.pxname, self.svname)


@dataclass(frozen=True, slots=True)
class Info:
    """``show info`` of one worker: the figures that matter, and every line in ``raw``."""

    version: str
    pid: int
    uptime_sec: int
    nbthread: int
    maxconn: int
    curr_conns: int
    cum_conns: int
    cum_req: int
    conn_rate: int
    sess_rate: int
    idle_pct: int
    stopping: bool
    jobs: int
    raw: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(frozen=True, slots=True)
class Proc:
    """One line of the master CLI's ``show proc``."""

    pid: int
    type: str  # "master", "worker", or a program's name
    reloads: int  # for the master: reloads so far; for a worker: reloads it has survived
    uptime_sec: int
    version: str
    failed_reloads: int = 0  # master only: the "[failed: N]" counter (reset by a successful reload)


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """The master CLI's ``show proc``: the master, its current worker(s), old workers still finishing
    their connections, and programs."""

    master: Proc
    workers: tuple[Proc, ...]
    old_workers: tuple[Proc, ...] = ()
    programs: tuple[Proc, ...] = ()

    @property
    def master_pid(self) -> int:
        return self.master.pid

    @property
    def reloads(self) -> int:
        """The master's reload counter: every ``reload`` counts, failed or not."""
        return self.master.reloads

    @property
    def failed_reloads(self) -> int:
        """Failed reloads since the last successful one (2.6 resets it on success)."""
        return self.master.failed_reloads

    @property
    def reload_failed(self) -> bool:
        """The last reload failed: the master runs on with the previous worker."""
        return self.master.failed_reloads > 0

    @property
    def worker_pids(self) -> tuple[int, ...]:
        return tuple(w.pid for w in self.workers)

    @property
    def worker_pid(self) -> int | None:
        """The current worker (haplane runs one; ``nbthread``, not ``nbproc``)."""
        return self.workers[0].pid if self.workers else None

    @property
    def uptime_sec(self) -> int:
        return self.master.uptime_sec


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``haproxy -c`` said of a config: ``ok``, HAProxy's own ALERT/WARNING lines, the config line
    numbers they name (sorted, unique), and the proxies (frontends, backends) that ALERTs without a line
    number name (``Proxy 'f': unable to find required use_backend: 'nope'.``), in the order named."""

    ok: bool
    messages: tuple[str, ...] = ()
    lines: tuple[int, ...] = ()
    proxies: tuple[str, ...] = ()

    @property
    def alerts(self) -> tuple[str, ...]:
        return tuple(m for m in self.messages if m.startswith("[ALERT]"))

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(m for m in self.messages if m.startswith("[WARNING]"))


@dataclass(frozen=True, slots=True)
class SlotObs:
    """One server slot as HAProxy reports it (``show servers state``; ``sessions`` from ``show stat``, read only
    where a drain waits for them). What plan diffs the desired model against, and what ``FakeHAProxy`` keeps."""

    address: str
    port: int
    weight: int
    maint: bool
    drain: bool
    sessions: int = 0

    def after(self, op: RuntimeOp) -> SlotObs:
        """The slot once HAProxy applied ``op`` to it: ``set server`` sets the address and port, the weight, or the
        admin state (``ready`` clears maintenance and drain, ``drain`` sets drain and clears maintenance, ``maint``
        the reverse: HAProxy's ``srv_adm_set_*``); any other op leaves it as it is."""
        match op:
            case SetAddress():
                return replace(self, address=op.address, port=op.port)
            case SetWeight():
                return replace(self, weight=op.weight)
            case SetState():
                return replace(self, maint=op.state == "maint", drain=op.state == "drain")
            case _:
                return self


Observed = Mapping[str, Mapping[str, SlotObs]]
"""backend → server → slot, as ``HAProxyControl.servers`` returns it."""


@dataclass(frozen=True, slots=True)
class OpResult:
    """HAProxy's answer to one runtime operation: ``command`` is the text the adapter sent (for the log),
    ``ok`` whether HAProxy (or the adapter's own validation, before sending) accepted it, ``answer`` what it
    said."""

    op: RuntimeOp
    command: str
    ok: bool
    answer: str = ""
