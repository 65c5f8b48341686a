"""Metrics over an in-process agent (memory store, FakeHAProxy): counted as changes happen, read at scrape time,
parsed back with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from haplane.agent.activity import Activity
from haplane.agent.reconcile import Agent
from haplane.agent.state import AgentOptions
from haplane.agent.view import AgentView
from haplane.compose import ComposeOptions
from haplane.metrics import Metrics, reload_label
from haplane.model.records import Instance, Service
from haplane.plan import Policy
from haplane.registry import RegistryStore
from haplane.store import open_store
from haplane.testing import FakeHAProxy


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def get(m: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return m.get((name, frozenset(labels.items())))


def test_reload_labels_are_the_first_cause_kind() -> None:
    def causes(*kinds: str) -> dict[str, object]:
        return {"causes": [{"kind": k, "subject": "x", "words": "x"} for k in kinds]}

    assert reload_label("reload", causes("start")) == "start"
    assert reload_label("reload", causes("backend-added", "frontend-changed")) == "backend-added"
    assert reload_label("reload-failed", causes("frontend-changed")) == "frontend-changed"
    assert reload_label("restart", {}) == "restart"
    assert reload_label("reload", {}) == "structure"  # a record without causes (written before they existed)


async def until(cond: object, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_metrics_count_what_the_agent_does() -> None:
    store = open_store("memory://")
    reg = RegistryStore(store)
    fake = FakeHAProxy()
    opts = AgentOptions(compose=ComposeOptions(min_slots=4), policy=Policy(ramp_interval=0, drain_timeout=0),
                        reload_interval=0.01, coalesce=0.001, resync_interval=3600)
    agent = Agent(store, fake, opts, Activity())
    view = AgentView(agent)
    assert view.stats is None  # FakeHAProxy has no admin socket to sample
    metrics = Metrics(CollectorRegistry(), agent=view)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 3)
        m = samples((await metrics.scrape()).decode())
        assert get(m, "haplane_reloads_total", reason="start", result="ok") == 1
        assert get(m, "haplane_instances", service="web", state="ready") is None

        await reg.put_service(Service("web", "host", "web.test"))
        await until(lambda: agent.status.reloads >= 1 and agent.idle)
        await reg.put_instance(Instance("i1", "web", "127.0.0.2", 8080, weight=5, source="docker-h1"))
        await reg.put_instance(Instance("i2", "web", "127.0.0.3", 8080))
        rev = await store.revision()
        await until(lambda: agent.status.revision >= rev and agent.idle)

        m = samples((await metrics.scrape()).decode())
        assert get(m, "haplane_reloads_total", reason="backend-added", result="ok") == 1
        assert get(m, "haplane_runtime_commands_total", command="set server addr", result="ok") == 2
        assert get(m, "haplane_source_events_total", source="docker-h1", event="put") == 1
        assert get(m, "haplane_source_events_total", source="api", event="put") == 1
        assert get(m, "haplane_instances", service="web", state="ready") == 2
        assert get(m, "haplane_server_state", backend="web", server="s1", instance="i1", state="up") == 1
        assert get(m, "haplane_server_weight_target", backend="web", server="s1", instance="i1") == 5
        assert get(m, "haplane_server_weight", backend="web", server="s1", instance="i1") is None  # no live view
        assert get(m, "haplane_store_watch_lag_revisions") == 0
        assert (get(m, "haplane_event_to_routable_seconds_count") or 0) >= 2

        inst, _ = await reg.get_instance("web", "i1")
        await reg.put_instance(replace(inst, state="maint"))
        await reg.delete_instance("web", "i2")
        rev = await store.revision()
        await until(lambda: agent.status.revision >= rev and agent.idle)
        m = samples((await metrics.scrape()).decode())
        assert get(m, "haplane_server_state", backend="web", server="s1", instance="i1", state="maint") == 1
        assert get(m, "haplane_instances", service="web", state="maint") == 1
        assert get(m, "haplane_source_events_total", source="api", event="delete") == 1
        assert get(m, "haplane_runtime_commands_total", command="set server state", result="ok") == 4
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


async def test_metrics_without_an_agent_read_the_store() -> None:
    store = open_store("memory://")
    reg = RegistryStore(store)
    try:
        await reg.put_service(Service("api", "path", "/api"))
        await reg.put_instance(Instance("a", "api", "127.0.0.2", 80, healthy=False))
        m = samples((await Metrics(CollectorRegistry(), store=store).scrape()).decode())
        assert get(m, "haplane_instances", service="api", state="unhealthy") == 1
        assert get(m, "haplane_store_revision") == await store.revision()
        assert get(m, "haplane_store_up") == 1
        assert get(m, "haplane_haproxy_up") is None  # no agent in this process
    finally:
        await store.close()


def test_live_rows_pick_the_columns_the_views_use() -> None:
    from haplane.agent.stats import parse_live
    from haplane.haproxy.parse import parse_stat

    header = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,"
              "weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,"
              "rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,"
              "hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,"
              "lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,uweight\n")
    rows = ("web,FRONTEND,,,3,9,4096,40,0,0,0,0,2,,,,,OPEN,,,,,,,,,1,2,0,,,,0,1,0,5,,,,0,30,0,4,1,0,,1,5,35,,,,,,,,,,,,"
            ",,,\n"
            "web,s1,0,0,1,2,,20,0,0,,0,,1,2,0,0,UP,7,1,0,3,0,12,0,,1,3,1,,20,,2,0,,4,L4OK,,0,0,18,0,0,1,0,,,,18,0,0,,,,,"
            "2,\"Layer4 check passed, all good\",,0,0,4,5,,6\n"
            "stats,localhost:9999,,,0,0,,0,0,0,0,0,,,,,,OPEN,,,,,,,,,1,4,1,,,,3,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,\n")
    live = {r.key: r for r in parse_live(header + rows)}
    full = {r.key: r for r in parse_stat(header + rows)}
    assert set(live) == {("web", "FRONTEND"), ("web", "s1")}  # listeners are left out
    for key, row in live.items():
        ref = full[key]
        assert (row.status, row.weight, row.uweight, row.scur, row.stot, row.rtime, row.chkfail, row.check_status) \
            == (ref.status, ref.weight, ref.uweight, ref.scur, ref.stot, ref.rtime, ref.chkfail, ref.check_status)
    s1 = live[("web", "s1")]
    assert (s1.answers, s1.errors, s1.uweight, s1.check_status) == (19, 1 + 1 + 2, 6, "L4OK")
    assert live[("web", "FRONTEND")].errors == 1 + 2  # 5xx + bad requests
