"""What the API and UI may see of an agent running in the same process (read-only, plus its activity, its
live traffic figures and a dry run of its next plan)."""

from __future__ import annotations

import contextlib
from typing import Any

from haplane.accesslog import LatencyWindow
from haplane.agent.activity import Activity
from haplane.agent.reconcile import Agent
from haplane.agent.stats import StatsSampler


class AgentView:
    def __init__(self, agent: Agent, stats: StatsSampler | None = None, latency: LatencyWindow | None = None
                 ) -> None:
        self.agent = agent
        self.latency = latency  # response-time percentiles from the access log, when it is on
        if stats is None:
            runtime = getattr(agent.control, "runtime", None)  # real HAProxy: its admin socket client
            if runtime is not None and hasattr(runtime, "command"):
                command = runtime.command

                async def show_stat() -> str:
                    text: str = await command("show stat")
                    return text

                stats = StatsSampler(show_stat)
        self.stats = stats
        if stats is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: sampling starts when someone asks
                stats.start()  # an hour of history for the charts, sampled slowly while nobody watches

    @property
    def activity(self) -> Activity:
        return self.agent.activity

    def status(self) -> dict[str, Any]:
        return self.agent.status.to_dict()

    def applied_config(self) -> str | None:
        return self.agent.applied_text

    async def overview(self, live: bool = True, keep_sampling: bool = True) -> dict[str, Any]:
        """Frontends → rules → backends → servers as the agent wants them, with HAProxy's live state."""
        from haplane.compose import compose
        from haplane.overview import build

        a = self.agent
        registry = a.mirror.registry()
        config = a.desired if a.desired is not None else compose(registry, a._options())
        rows = None
        if live and self.stats is not None:
            rows = await self.stats.fresh(max_age=0.5, keep_sampling=keep_sampling)
        doc = build(config, registry, rows, a.status.quarantined,
                    self.stats.sampled_at if self.stats is not None else None,
                    self.traffic(config) if live and self.stats is not None else None)
        doc["agent"] = self.status()
        return doc

    def traffic(self, config: Any, seconds: float = 10.0) -> dict[tuple[str, str], dict[str, float | None]]:
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
        from haplane.agent.planning import plan_document
        from haplane.compose import compose
        from haplane.plan import plan

        a = self.agent
        desired = compose(a.mirror.registry(), a._options())
        observed = await a.control.servers(None)
        maps_now = await a._maps_now() if desired.maps else None
        p = plan(desired, observed, a.memory, a.applied, a.clock(), a.options.policy, maps_now=maps_now,
                 map_paths={path: path for path, _ in desired.maps})
        return plan_document(p, a.mirror.revision, a.status.revision)
