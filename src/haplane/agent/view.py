"""What the API, the UI, metrics and the CLI may see of an agent running in the same process: a read-only,
typed view (``haplane.typing.AgentReader``), plus its activity, its live traffic figures, a dry run of its
next plan, and hooks to be told when events arrive and when they are applied. Readers never reach the agent's
members; the agent's shape can change behind this."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from haplane.accesslog import LatencyWindow
from haplane.agent.activity import Activity
from haplane.agent.planning import plan_document
from haplane.agent.reconcile import Agent
from haplane.agent.state import AgentStatus
from haplane.agent.stats import StatsSampler
from haplane.model.haproxy import Config
from haplane.model.records import Instance, Registry
from haplane.store.base import Event, Store
from haplane.typing import StatSource


class AgentView:
    """``stats``: the live ``show stat`` sampler; by default one over the agent's HAProxy when it can answer
    ``show stat`` (a real HAProxy; the fake cannot), started at once when there is a running loop (an hour of
    history for the charts, sampled slowly while nobody watches). ``latency``: response-time percentiles from
    the access log, when it is on."""

    def __init__(self, agent: Agent, stats: StatsSampler | None = None, latency: LatencyWindow | None = None
                 ) -> None:
        self._agent = agent
        self.latency = latency
        if stats is None and isinstance(agent.control, StatSource):
            stats = StatsSampler(agent.control.show_stat)
        self._stats = stats
        if stats is not None:
            agent.activity.listeners.append(lambda _rec: stats.invalidate())  # rows older than a change are stale
            with contextlib.suppress(RuntimeError):  # no running loop: sampling starts when someone asks
                stats.start()

    @property
    def activity(self) -> Activity:
        return self._agent.activity

    @property
    def stats(self) -> StatsSampler | None:
        return self._stats

    @property
    def store(self) -> Store:
        return self._agent.store

    @property
    def agent_status(self) -> AgentStatus:
        return self._agent.status

    def status(self) -> dict[str, Any]:
        return self._agent.status.to_dict()

    def applied_config(self) -> str | None:
        """The text of the config HAProxy was last started or reloaded with."""
        return self._agent.applied_text

    def registry(self) -> Registry:
        return self._agent.registry()

    def instance(self, service: str, iid: str) -> Instance | None:
        """An instance as the agent has it (it may be gone from the store already)."""
        return self._agent.instance(service, iid)

    def desired(self) -> Config:
        """What the registry asks HAProxy for now (composed if the agent has not yet)."""
        from haplane.compose import compose

        a = self._agent
        return a.desired if a.desired is not None else compose(a.registry(), a.compose_options())

    def on_events(self, callback: Callable[[list[Event]], None]) -> None:
        """Call ``callback`` with every batch of store events, before the agent applies it."""
        self._agent.event_callbacks.append(callback)

    def on_routable(self, callback: Callable[[float], None]) -> None:
        """Call ``callback`` with the seconds from a batch of events reaching the agent to HAProxy routing so."""
        self._agent.routable_callbacks.append(callback)

    async def overview(self, live: bool = True, keep_sampling: bool = True) -> dict[str, Any]:
        """Frontends → rules → backends → servers as the agent wants them, with HAProxy's live state."""
        from haplane.overview import build

        rows = None
        config = self.desired()
        if live and self._stats is not None:
            rows = await self._stats.fresh(max_age=0.5, keep_sampling=keep_sampling)
        doc = build(config, self.registry(), rows, self._agent.status.quarantined,
                    self._stats.sampled_at if self._stats is not None else None,
                    self.traffic(config) if live and self._stats is not None else None)
        doc["held"] = dict(self._agent.status.held)
        doc["agent"] = self.status()
        return doc

    def traffic(self, config: Config, seconds: float = 10.0) -> dict[tuple[str, str], dict[str, float | None]]:
        """Current figures per backend and server: requests and errors a second over the last ``seconds``,
        HAProxy's average response time, and the access log's 95th percentile of the last minute."""
        from haplane.accesslog import names_of

        out: dict[tuple[str, str], dict[str, float | None]] = {}
        stats = self.stats
        if stats is None:
            return out
        from haplane.traffic import service_of_backend

        names = names_of(config)
        services = service_of_backend(names)
        for key, track in stats.series.items():
            if key[1] == "FRONTEND":
                continue
            req, err = track.recent(seconds)
            row = stats.rows.get(key)
            p95 = None
            if self.latency is not None:
                if key[1] == "BACKEND":
                    p95 = self.latency.quantile(services.get(key[0], key[0]), 0.95)
                elif key in names and names[key][1] is not None:
                    p95 = self.latency.quantile(names[key][0], 0.95, names[key][1])
            out[key] = {"req": round(req, 3), "err": round(err, 3), "rtime": row.rtime if row else None, "p95": p95}
        return out

    async def plan_preview(self) -> dict[str, Any]:
        """What the agent would do now if it woke up: runtime commands and whether it would reload. Reads
        HAProxy's state; changes nothing (the plan is computed, never applied)."""
        _desired, p = await self._agent.preview()
        return plan_document(p, self._agent.revision, self._agent.status.revision)
