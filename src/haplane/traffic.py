"""Traffic figures for /metrics, per frontend, per service and per instance, from HAProxy's ``show stat``.
PURE: rows and names in, Prometheus metric families out.

Labels are the names an operator knows: ``service`` (the service, or the Thalassa backend), ``backend`` (the
HAProxy backend, which is the service's own name, or ``<service>_fallback``), ``instance`` (the registry's
instance id, or a static member's address). HAProxy's slot names (``s3``) never appear: a slot nobody holds
is left out. Counters are HAProxy's own, counted since its current worker started, so they restart from zero at
a reload (Prometheus' ``rate()`` and ``increase()`` handle that). Times come from HAProxy too: averages over a
server's or backend's last 1024 requests, and the largest seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

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


class _Level:
    """The families of one level (service: backend rows; instance: server rows, ``lean``: the main ones only —
    sessions per server are in ``haplane_server_sessions`` already)."""

    def __init__(self, level: str, labels: list[str], lean: bool = False) -> None:
        self.lean = lean
        p = f"haplane_{level}_"
        of = "an instance's" if level == "instance" else "a service's backend"
        self.labels = labels
        self.requests = CounterMetricFamily(p + "http_requests", f"HTTP requests {of} handled (TCP: sessions)",
                                            labels=labels)
        self.responses = CounterMetricFamily(p + "http_responses", f"HTTP responses {of} sent, by status class",
                                             labels=[*labels, "code"])
        self.bytes_in = CounterMetricFamily(p + "received", f"Bytes received from clients by {of}",
                                            labels=labels, unit="bytes")
        self.bytes_out = CounterMetricFamily(p + "sent", f"Bytes sent to clients by {of}", labels=labels,
                                             unit="bytes")
        self.sessions = GaugeMetricFamily(p + "sessions_current", f"Sessions {of} holds now", labels=labels)
        self.queue = GaugeMetricFamily(p + "queue_current", f"Requests waiting in {of} queue now", labels=labels)
        self.conn_errors = CounterMetricFamily(p + "connection_errors", f"Failed connections to {of} servers",
                                               labels=labels)
        self.resp_errors = CounterMetricFamily(p + "response_errors", f"Aborted or invalid responses of {of} "
                                               "servers", labels=labels)
        self.retries = CounterMetricFamily(p + "retries", f"Connection retries of {of}", labels=labels)
        self.redispatches = CounterMetricFamily(p + "redispatches", f"Requests {of} sent to another server after "
                                                "a failure", labels=labels)
        times = "seconds, HAProxy's average over the last 1024 requests"
        self.queue_time = GaugeMetricFamily(p + "queue_time_average_seconds", f"Time in the queue ({times})",
                                            labels=labels)
        self.connect_time = GaugeMetricFamily(p + "connect_time_average_seconds",
                                              f"Time to connect to a server ({times})", labels=labels)
        self.response_time = GaugeMetricFamily(p + "response_time_average_seconds",
                                               f"Time to the response headers ({times})", labels=labels)
        self.total_time = GaugeMetricFamily(p + "total_time_average_seconds", f"Whole request time ({times})",
                                            labels=labels)
        self.response_time_max = GaugeMetricFamily(p + "response_time_max_seconds",
                                                   "Longest time to response headers seen (seconds)", labels=labels)
        self.total_time_max = GaugeMetricFamily(p + "total_time_max_seconds", "Longest whole request seen "
                                                "(seconds)", labels=labels)

    def add(self, values: list[str], row: TrafficRow) -> None:
        answered = sum(row.hrsp)
        self.requests.add_metric(values, max(row.req_tot, answered) if (row.req_tot or answered) else row.stot)
        for code, n in zip(CODES, row.hrsp, strict=True):
            self.responses.add_metric([*values, code], n)
        self.bytes_in.add_metric(values, row.bin)
        self.bytes_out.add_metric(values, row.bout)
        self.sessions.add_metric(values, row.scur)
        self.queue.add_metric(values, row.qcur)
        self.conn_errors.add_metric(values, row.econ)
        self.resp_errors.add_metric(values, row.eresp)
        self.retries.add_metric(values, row.wretr)
        self.redispatches.add_metric(values, row.wredis)
        self.queue_time.add_metric(values, row.qtime / 1000)
        self.connect_time.add_metric(values, row.ctime / 1000)
        self.response_time.add_metric(values, row.rtime / 1000)
        self.total_time.add_metric(values, row.ttime / 1000)
        self.response_time_max.add_metric(values, row.rtime_max / 1000)
        self.total_time_max.add_metric(values, row.ttime_max / 1000)

    def families(self) -> list[Metric]:
        if self.lean:  # per instance: what a dashboard needs, so /metrics stays small at thousands of servers
            return [self.requests, self.responses, self.bytes_in, self.bytes_out, self.queue, self.conn_errors,
                    self.response_time, self.total_time, self.response_time_max]
        return [self.requests, self.responses, self.bytes_in, self.bytes_out, self.sessions, self.queue,
                self.conn_errors, self.resp_errors, self.retries, self.redispatches, self.queue_time,
                self.connect_time, self.response_time, self.total_time, self.response_time_max, self.total_time_max]


def service_of_backend(names: Names) -> dict[str, str]:
    """backend → service, from the server names (every backend the agent composes has its slots named)."""
    out: dict[str, str] = {}
    for (backend, _server), (service, _instance) in names.items():
        out.setdefault(backend, service)
    return out


def traffic_families(rows: Iterable[TrafficRow], names: Names) -> list[Metric]:
    """Frontend, service and instance families for ``rows`` (one ``show stat``), named by ``names``."""
    services = service_of_backend(names)
    svc = _Level("service", ["service", "backend"])
    inst = _Level("instance", ["service", "backend", "instance"], lean=True)
    fe_requests = CounterMetricFamily("haplane_frontend_http_requests", "HTTP requests a frontend received "
                                      "(TCP: sessions)", labels=["frontend"])
    fe_responses = CounterMetricFamily("haplane_frontend_http_responses", "HTTP responses a frontend sent, by "
                                       "status class (404/503 of requests no backend took included)",
                                       labels=["frontend", "code"])
    fe_in = CounterMetricFamily("haplane_frontend_received", "Bytes a frontend received", labels=["frontend"],
                                unit="bytes")
    fe_out = CounterMetricFamily("haplane_frontend_sent", "Bytes a frontend sent", labels=["frontend"],
                                 unit="bytes")
    fe_sessions = GaugeMetricFamily("haplane_frontend_sessions_current", "Sessions a frontend holds now",
                                    labels=["frontend"])
    for row in rows:
        if row.type == "frontend":
            if row.pxname == "stats" or row.pxname.startswith("haplane_"):
                continue  # haplane's own listeners (HAProxy's stats page)
            answered = sum(row.hrsp)
            fe_requests.add_metric([row.pxname], max(row.req_tot, answered) if (row.req_tot or answered)
                                   else row.stot)
            for code, n in zip(CODES, row.hrsp, strict=True):
                fe_responses.add_metric([row.pxname, code], n)
            fe_in.add_metric([row.pxname], row.bin)
            fe_out.add_metric([row.pxname], row.bout)
            fe_sessions.add_metric([row.pxname], row.scur)
        elif row.type == "backend":
            service = services.get(row.pxname)
            if service is not None:
                svc.add([service, row.pxname], row)
        elif row.type == "server":
            named = names.get((row.pxname, row.svname))
            if named is not None and named[1] is not None:
                inst.add([named[0], row.pxname, named[1]], row)
    return [fe_requests, fe_responses, fe_in, fe_out, fe_sessions, *svc.families(), *inst.families()]
