"""Prometheus metrics: HSDO's per-server figures and haplane's own.

Two kinds of figures, both in a ``CollectorRegistry`` passed in (never the global one):
- counted as things happen: the event-to-routable latency histogram (``AgentReader.on_routable``),
  reloads by cause and result, runtime commands by verb, failed ``haproxy -c`` checks (``Activity.listeners``:
  read from the records' fields, ``causes`` and ``op``), source events (``AgentReader.on_events``);
- read at scrape time (``Metrics.scrape`` gathers them, then the collector yields them): each server's weight,
  target weight, state and sessions from HAProxy's ``show stat`` (HSDO exported weight and state per server),
  instances by service and state, store revision and watch lag, quarantined items, agent health.

``Metrics.scrape()`` answers the text exposition format; ``/metrics`` on the API serves it, and
``haplane.api.server.serve_metrics`` serves it alone on ``metrics_port`` (HSDO's ``EXPORTER_PORT``) for
``haplane agent``. The agent is seen through its public view (``haplane.typing.AgentReader``) only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from haplane.agent.activity import ActivityRecord
from haplane.agent.stats import LiveRow
from haplane.errors import HaplaneError
from haplane.store import keys
from haplane.store.base import Event, Store
from haplane.typing import AgentReader

if TYPE_CHECKING:
    from haplane.tls.manager import AcmeManager

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("up", "down", "draining", "maint")
ROUTABLE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def reload_label(kind: str, detail: dict[str, Any]) -> str:
    """The label a reload (or restart, or failed reload) is counted by: the kind of its first cause
    (``ReloadCause.kind``: start, restart, backend-added, frontend-changed, backend-slots, globals, ...), read
    from the record's ``causes``; never from its words."""
    if kind == "restart":
        return "restart"
    causes = detail.get("causes")
    if isinstance(causes, list) and causes and isinstance(causes[0], dict):
        return str(causes[0].get("kind") or "structure")
    return "structure"


class LoginCounts(Protocol):
    """What the API's guard against token guessing counts (``haplane.api.auth.LoginGuard``)."""

    failures: int
    refused: int

    def __len__(self) -> int: ...


@dataclass
class Gathered:
    """What one scrape read (async) for the collector to yield (sync)."""

    rows: dict[tuple[str, str], LiveRow] = field(default_factory=dict)
    overview: dict[str, Any] | None = None
    instances: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, state) → n
    store_revision: int | None = None
    store_up: bool = True
    agent: dict[str, Any] | None = None
    certificates: list[tuple[str, str, float]] = field(default_factory=list)  # (name, source, not_after)
    acme_orders: dict[str, int] = field(default_factory=dict)  # result → orders this process made
    logins: tuple[int, int, int] | None = None  # the API's wrong tokens, 429s, addresses waiting (api/auth.py)
    groups: dict[str, str | None] = field(default_factory=dict)  # instance id → its group (AutoScaling group)
    traffic: str = ""  # haplane.traffic: per frontend, service and instance, as exposition text


_SLOT_NUMBER = re.compile(r"(\d+)$")


def hsdo_server_weight(g: Gathered) -> GaugeMetricFamily:
    """HSDO's exporter family, kept beside haplane's own so dashboards keep working: one series per server a
    service's instance is in, labelled as HSDO's client did (id = the server's slot number, HSDO's
    BackendServerID; name = the instance, HSDO's ServerName; ip; asg = the instance's group)."""
    family = GaugeMetricFamily("hsdo_server_weight", "Weight of server in backend", labels=["id", "name", "ip", "asg"])
    seen: set[tuple[str, ...]] = set()
    for be in (g.overview or {}).get("backends", []):
        if be.get("kind") not in ("service", "fallback"):
            continue
        for s in be["servers"]:
            m = _SLOT_NUMBER.search(s["name"])
            if s["instance"] is None or m is None:
                continue
            ip = s["address"].rsplit(":", 1)[0].strip("[]")
            labels = (m.group(1), s["instance"], ip, g.groups.get(s["instance"]) or "none")
            if labels in seen:  # the same server in the main and the fallback backend: one series, as HSDO had
                continue
            seen.add(labels)
            family.add_metric(list(labels), s["weight"] if s["weight"] is not None else s["target"])
    return family


class _ScrapeCollector(Collector):
    def __init__(self) -> None:
        self.gathered = Gathered()

    def collect(self) -> Iterable[Metric]:
        g = self.gathered
        weight = GaugeMetricFamily("haplane_server_weight", "A server's weight in HAProxy now (HSDO: weight)",
                                   labels=["backend", "server", "instance"])
        target = GaugeMetricFamily("haplane_server_weight_target", "The weight a server ramps to",
                                   labels=["backend", "server", "instance"])
        state = GaugeMetricFamily("haplane_server_state", "1 for a server's state now (HSDO: state): "
                                  "up, down, draining, maint", labels=["backend", "server", "instance", "state"])
        sessions = GaugeMetricFamily("haplane_server_sessions", "A server's current sessions",
                                     labels=["backend", "server", "instance"])
        chkfail = CounterMetricFamily("haplane_server_check_failures", "Failed health checks of a server "
                                      "(HAProxy's chkfail; resets with a new worker)",
                                      labels=["backend", "server", "instance"])
        if g.overview is not None:
            for be in g.overview["backends"]:
                for s in be["servers"]:
                    labels = [be["name"], s["name"], s["instance"] or ""]
                    if s["weight"] is not None:
                        weight.add_metric(labels, s["weight"])
                    target.add_metric(labels, s["target"])
                    for st in STATES:
                        state.add_metric([*labels, st], 1.0 if s["state"] == st else 0.0)
                    if s["sessions"] is not None:
                        sessions.add_metric(labels, s["sessions"])
                    row = g.rows.get((be.get("proxy", be["name"]), s["name"]))
                    if row is not None:
                        chkfail.add_metric(labels, row.chkfail)
        yield from (weight, target, state, sessions, chkfail)
        yield hsdo_server_weight(g)
        inst = GaugeMetricFamily("haplane_instances", "Registered instances by service and state",
                                 labels=["service", "state"])
        for (svc, st), n in sorted(g.instances.items()):
            inst.add_metric([svc, st], n)
        yield inst
        yield GaugeMetricFamily("haplane_store_up", "1 if the store answered this scrape", value=1 if g.store_up else 0)
        if g.store_revision is not None:
            yield GaugeMetricFamily("haplane_store_revision", "The store's revision", value=g.store_revision)
        if g.agent is not None:
            applied = g.agent["revision"]
            yield GaugeMetricFamily("haplane_agent_revision", "The store revision the agent has applied",
                                    value=applied)
            if g.store_revision is not None:
                yield GaugeMetricFamily("haplane_store_watch_lag_revisions", "Store revisions the agent has not "
                                        "applied yet (0: in sync)", value=max(0, g.store_revision - applied))
            yield GaugeMetricFamily("haplane_haproxy_up", "1 if the agent's last HAProxy operation succeeded",
                                    value=1 if g.agent["haproxy_ok"] else 0)
            yield GaugeMetricFamily("haplane_agent_store_up", "1 if the agent's store watch is healthy",
                                    value=1 if g.agent["store_ok"] else 0)
            q = GaugeMetricFamily("haplane_quarantined", "Items held back because haproxy -c rejected their lines",
                                  labels=["owner"])
            for owner in sorted(g.agent["quarantined"]):
                q.add_metric([owner], 1)
            yield q
            held = GaugeMetricFamily("haplane_runtime_held", "Items held because HAProxy refused their Runtime API "
                                     "change (not retried until their record changes), by kind", labels=["kind"])
            kinds = [owner.partition(":")[0] for owner in g.agent.get("held", {})]
            for kind in sorted({"instance", "certificate", *kinds}):
                held.add_metric([kind], kinds.count(kind))
            yield held
            if g.agent.get("last_reload") is not None:
                yield GaugeMetricFamily("haplane_last_reload_timestamp_seconds", "When HAProxy last reloaded",
                                        value=g.agent["last_reload"])
        expiry = GaugeMetricFamily("haplane_certificate_expiry_timestamp_seconds", "When a certificate of the "
                                   "registry expires (its leaf's notAfter)", labels=["name", "source"])
        for name, source, not_after in g.certificates:
            expiry.add_metric([name, source], not_after)
        yield expiry
        orders = CounterMetricFamily("haplane_acme_orders", "ACME orders this process made, by result (issued, "
                                     "failed)", labels=["result"])
        for result in ("issued", "failed"):
            orders.add_metric([result], g.acme_orders.get(result, 0))
        yield orders
        if g.logins is not None:
            failures, refused, addresses = g.logins
            yield CounterMetricFamily("haplane_login_failures", "Wrong tokens the API was sent (login or bearer)",
                                      value=failures)
            yield CounterMetricFamily("haplane_login_throttled", "Attempts refused (429) because their address "
                                      "sent too many wrong tokens", value=refused)
            yield GaugeMetricFamily("haplane_login_guard_addresses", "Client addresses with recent wrong tokens "
                                    "(a bounded table)", value=addresses)


class Metrics:
    """haplane's metrics, in the prometheus ``collectors`` given, over an optional in-process agent (``AgentView``)
    and an optional store."""

    def __init__(self, collectors: CollectorRegistry, agent: AgentReader | None = None, store: Store | None = None
                 ) -> None:
        self.collectors = collectors
        self.agent = agent
        self.store = store
        self.routable = Histogram("haplane_event_to_routable_seconds", "From a batch of store events reaching "
                                  "the agent to HAProxy routing accordingly (runtime commands sent)",
                                  buckets=ROUTABLE_BUCKETS, registry=collectors)
        self.reloads = Counter("haplane_reloads", "HAProxy reloads (and failed attempts) by reason and result",
                               ["reason", "result"], registry=collectors)
        self.commands = Counter("haplane_runtime_commands", "Runtime API commands sent, by command and result",
                                ["command", "result"], registry=collectors)
        self.checks_failed = Counter("haplane_config_checks_failed", "Configs haproxy -c rejected (in whole, "
                                     "or lines of quarantined items)", ["kind"], registry=collectors)
        self.changes = Counter("haplane_changes", "Every change the agent made or decided, by kind and result",
                               ["kind", "result"], registry=collectors)
        self.source_events = Counter("haplane_source_events", "Instance events from the store, by the source "
                                     "that wrote them (api: written through the API)", ["source", "event"],
                                     registry=collectors)
        self.acme: AcmeManager | None = None  # when this process orders certificates
        self.logins: LoginCounts | None = None  # when this process serves the API
        self._collector = _ScrapeCollector()
        self._names: tuple[object, dict[tuple[str, str], tuple[str, str | None]], dict[str, str]] | None = None
        collectors.register(self._collector)
        if agent is not None:
            agent.activity.listeners.append(self.on_activity)
            agent.on_routable(self.routable.observe)
            agent.on_events(self.on_events)

    # --- as things happen --------------------------------------------------------------------------------

    def on_activity(self, rec: ActivityRecord) -> None:
        self.changes.labels(rec.kind, rec.result).inc()
        if rec.kind in ("reload", "reload-failed", "restart"):
            self.reloads.labels(reload_label(rec.kind, rec.detail), "ok" if rec.result == "ok" else "failed").inc()
        elif rec.kind in ("check-failed", "quarantine"):
            self.checks_failed.labels(rec.kind).inc()
        verb = rec.detail.get("op")  # the runtime operation's verb (RuntimeOp.verb): a bounded label
        if isinstance(verb, str):
            self.commands.labels(verb, rec.result).inc()

    def on_events(self, events: list[Event]) -> None:
        for ev in events:
            what = keys.decode(ev.key)
            if what is None or what.kind != "instance":
                continue
            source = None
            if ev.type == "put" and ev.value is not None:
                try:
                    source = json.loads(ev.value).get("source")
                except (ValueError, AttributeError):
                    source = None
                event = "put"
            else:
                event = "delete"
                old = self.agent.instance(what.parent, what.name) if self.agent is not None else None
                source = old.source if old is not None else None
            self.source_events.labels(source or "api", event).inc()

    # --- at scrape time ------------------------------------------------------------------------------------

    async def gather(self) -> Gathered:
        g = Gathered()
        store = self.store
        if store is None and self.agent is not None:
            store = self.agent.store
        if self.agent is not None:
            g.overview = await self.agent.overview(live=True, keep_sampling=False)
            g.agent = self.agent.status()
            if self.agent.stats is not None:
                g.rows = dict(self.agent.stats.rows)
                desired = self.agent.desired()
                from haplane.accesslog import names_of
                from haplane.traffic import traffic_text

                if self._names is None or self._names[0] is not desired:  # once per new config
                    self._names = (desired, names_of(desired), {b.name: b.label for b in desired.backends if b.label})
                g.traffic = traffic_text(g.rows.values(), self._names[1], self._names[2])
            records = self.agent.registry()
            for inst in records.instances:
                g.groups[inst.id] = inst.group
                key = (inst.service, inst.state if inst.healthy else "unhealthy")
                g.instances[key] = g.instances.get(key, 0) + 1
        if store is not None:
            try:
                g.store_revision = await store.revision()
                if self.agent is None:
                    from haplane.registry import RegistryStore

                    snapshot = await RegistryStore(store).snapshot()
                    for inst in snapshot.instances:
                        key = (inst.service, inst.state if inst.healthy else "unhealthy")
                        g.instances[key] = g.instances.get(key, 0) + 1
            except HaplaneError:
                g.store_up = False
            if g.store_up:
                from haplane.tls.store import CertificateStore

                try:
                    g.certificates = [(c.name, c.source, c.info.not_after)
                                      for c, _ in await CertificateStore(store).all()]
                except HaplaneError:
                    g.store_up = False
        if self.acme is not None:
            g.acme_orders = dict(self.acme.results)
        if self.logins is not None:
            g.logins = (self.logins.failures, self.logins.refused, len(self.logins))
        return g

    async def scrape(self) -> bytes:
        gathered = self._collector.gathered = await self.gather()
        # the traffic families come as text (haplane.traffic: tens of thousands of samples at 1,000 services)
        return generate_latest(self.collectors) + gathered.traffic.encode()
