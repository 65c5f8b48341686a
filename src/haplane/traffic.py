"""Traffic figures for /metrics, per frontend, per service and per instance, from HAProxy's ``show stat``.
PURE: rows and names in, Prometheus exposition text out (``traffic_text``).

Labels are the names an operator knows: ``service`` (the service, or the Thalassa backend), ``backend`` (the
HAProxy backend, which is the service's own name, or ``<service>_fallback``), ``instance`` (the registry's
instance id, or a static member's address). HAProxy's slot names (``s3``) never appear: a slot nobody holds
is left out. Counters are HAProxy's own, counted since its current worker started, so they restart from zero at
a reload (Prometheus' ``rate()`` and ``increase()`` handle that). Times come from HAProxy too: averages over a
server's or backend's last 1024 requests, and the largest seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

CODES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
Names = Mapping[tuple[str, str], tuple[str, str | None]]  # (backend, server) -> (service, instance)


class TrafficRow(Protocol):
    """What is read of a ``show stat`` row (``haplane.agent.stats.LiveRow`` fits)."""

    @property
    def pxname(self) -> str: ...
    @property
    def svname(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def scur(self) -> int: ...
    @property
    def stot(self) -> int: ...
    @property
    def req_tot(self) -> int: ...
    @property
    def hrsp(self) -> tuple[int, int, int, int, int, int]: ...
    @property
    def bin(self) -> int: ...
    @property
    def bout(self) -> int: ...
    @property
    def qcur(self) -> int: ...
    @property
    def qtime(self) -> int: ...
    @property
    def ctime(self) -> int: ...
    @property
    def rtime(self) -> int: ...
    @property
    def ttime(self) -> int: ...
    @property
    def econ(self) -> int: ...
    @property
    def eresp(self) -> int: ...
    @property
    def wretr(self) -> int: ...
    @property
    def wredis(self) -> int: ...
    @property
    def rtime_max(self) -> int: ...
    @property
    def ttime_max(self) -> int: ...


# (name, Prometheus type, help, value of a row); counters get _total in the exposition, as prometheus_client does
Family = tuple[str, str, str, Callable[[TrafficRow], float]]
_TIMES = "seconds, HAProxy's average over the last 1024 requests"


def _requests(row: TrafficRow) -> float:
    answered = sum(row.hrsp)
    return max(row.req_tot, answered) if (row.req_tot or answered) else row.stot


def _families(of: str, lean: bool) -> list[Family]:
    fams: list[Family] = [
        ("http_requests", "counter", f"HTTP requests {of} handled (TCP: sessions)", _requests),
        ("received_bytes", "counter", f"Bytes received from clients by {of}", lambda r: r.bin),
        ("sent_bytes", "counter", f"Bytes sent to clients by {of}", lambda r: r.bout),
        ("queue_current", "gauge", f"Requests waiting in {of} queue now", lambda r: r.qcur),
        ("connection_errors", "counter", f"Failed connections to {of} servers", lambda r: r.econ),
        ("response_time_average_seconds", "gauge", f"Time to the response headers ({_TIMES})",
         lambda r: r.rtime / 1000),
        ("total_time_average_seconds", "gauge", f"Whole request time ({_TIMES})", lambda r: r.ttime / 1000),
        ("response_time_max_seconds", "gauge", "Longest time to response headers seen (seconds)",
         lambda r: r.rtime_max / 1000),
    ]
    if not lean:
        fams += [
            ("sessions_current", "gauge", f"Sessions {of} holds now", lambda r: r.scur),
            ("response_errors", "counter", f"Aborted or invalid responses of {of} servers", lambda r: r.eresp),
            ("retries", "counter", f"Connection retries of {of}", lambda r: r.wretr),
            ("redispatches", "counter", f"Requests {of} sent to another server after a failure",
             lambda r: r.wredis),
            ("queue_time_average_seconds", "gauge", f"Time in the queue ({_TIMES})", lambda r: r.qtime / 1000),
            ("connect_time_average_seconds", "gauge", f"Time to connect to a server ({_TIMES})",
             lambda r: r.ctime / 1000),
            ("total_time_max_seconds", "gauge", "Longest whole request seen (seconds)", lambda r: r.ttime_max / 1000),
        ]
    return fams


SERVICE_FAMILIES = _families("a service's backend", lean=False)
INSTANCE_FAMILIES = _families("an instance", lean=True)  # sessions per server: haplane_server_sessions
FRONTEND_FAMILIES: list[Family] = [
    ("http_requests", "counter", "HTTP requests a frontend received (TCP: sessions)", _requests),
    ("received_bytes", "counter", "Bytes a frontend received", lambda r: r.bin),
    ("sent_bytes", "counter", "Bytes a frontend sent", lambda r: r.bout),
    ("sessions_current", "gauge", "Sessions a frontend holds now", lambda r: r.scur),
]
RESPONSES = "HTTP responses {of} sent, by status class"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    return repr(float(v)) if isinstance(v, float) else f"{v}.0"


def service_of_backend(names: Names) -> dict[str, str]:
    """backend → service, from the server names (every backend the agent composes has its slots named)."""
    out: dict[str, str] = {}
    for (backend, _server), (service, _instance) in names.items():
        out.setdefault(backend, service)
    return out


def _write(out: list[str], prefix: str, fams: list[Family], responses_of: str,
           rows: list[tuple[str, TrafficRow]]) -> None:
    name = f"{prefix}http_responses_total"
    out.append(f"# HELP {name} {RESPONSES.format(of=responses_of)}\n# TYPE {name} counter\n")
    for labels, row in rows:
        for code, n in zip(CODES, row.hrsp, strict=True):
            out.append(f'{name}{{{labels},code="{code}"}} {n}.0\n')
    for suffix, kind, help_text, value in fams:
        name = f"{prefix}{suffix}_total" if kind == "counter" else f"{prefix}{suffix}"
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        out.extend(f"{name}{{{labels}}} {_num(value(row))}\n" for labels, row in rows)


def traffic_text(rows: Iterable[TrafficRow], names: Names, shown: Mapping[str, str] | None = None) -> str:
    """The exposition text (Prometheus 0.0.4) of the frontend, service and instance families for ``rows``
    (one ``show stat``), named by ``names``.

    Written here rather than through prometheus_client's families: at 1,000 services with 4,000 instances these
    are ~75,000 samples, which prometheus_client builds and renders in ~1 s on this machine and this loop in a
    tenth of that. ``promtool check metrics`` and prometheus_client's parser hold it to the format (tests).
    ``shown``: HAProxy's backend name → the one operators know (a pool's spare → the service it holds)."""
    services = service_of_backend(names)
    shown = shown or {}
    fe: list[tuple[str, TrafficRow]] = []
    svc: list[tuple[str, TrafficRow]] = []
    inst: list[tuple[str, TrafficRow]] = []
    for row in rows:
        if row.type == "frontend":
            if row.pxname != "stats" and not row.pxname.startswith("haplane_"):  # haplane's own listeners
                fe.append((f'frontend="{_esc(row.pxname)}"', row))
        elif row.type == "backend":
            service = services.get(row.pxname)
            if service is not None:
                svc.append((f'service="{_esc(service)}",backend="{_esc(shown.get(row.pxname, row.pxname))}"', row))
        elif row.type == "server":
            named = names.get((row.pxname, row.svname))
            if named is not None and named[1] is not None:  # a slot nobody holds is left out
                inst.append((f'service="{_esc(named[0])}",backend="{_esc(shown.get(row.pxname, row.pxname))}",'
                             f'instance="{_esc(named[1])}"', row))
    out: list[str] = []
    _write(out, "haplane_frontend_", FRONTEND_FAMILIES, "a frontend (404/503 of requests no backend took "
           "included)", fe)
    _write(out, "haplane_service_", SERVICE_FAMILIES, "a service's backend", svc)
    _write(out, "haplane_instance_", INSTANCE_FAMILIES, "an instance", inst)
    return "".join(out)
