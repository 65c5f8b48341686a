"""``GET /metrics``: Prometheus text exposition (read role: Prometheus sends ``Authorization: Bearer``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from haplane.api.auth import Principal, require
from haplane.api.deps import ApiDeps
from haplane.metrics import CONTENT_TYPE, Metrics


def router(deps: ApiDeps) -> APIRouter:
    r = APIRouter(tags=["metrics"])
    read = Depends(require(deps.settings, "read"))
    metrics = deps.extra.get("metrics")
    if not isinstance(metrics, Metrics):
        metrics = Metrics(CollectorRegistry(), agent=deps.agent, store=deps.registry.store)
        deps.extra["metrics"] = metrics
    metrics.logins = deps.guard  # the API's wrong tokens, counted by its guard

    @r.get("/metrics", response_class=Response, summary="Prometheus metrics: per-server weight and state, "
                                                        "reloads, runtime commands, latency, instances")
    async def get_metrics(_: Principal = read) -> Response:
        return Response(await metrics.scrape(), media_type=CONTENT_TYPE)

    return r
