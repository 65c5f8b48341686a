"""/metrics scraped over HTTP from a running haplane (real agent + HAProxy), parsed with prometheus_client's
own parser; the values follow real changes: an instance registered, drained, a structural reload."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from tests.support.procs import MakeHttpBackend

from haplane.model.records import Instance, Service

from .conftest import READ, running_haplane


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not in {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


async def test_metrics_follow_registrations_drains_and_reloads(tmp_path: Path, http_backends: MakeHttpBackend) -> None:
    async with running_haplane(tmp_path) as hp, hp.client(READ) as api:
        assert (await api.get("/metrics", headers={"Authorization": ""})).status_code == 401
        reg = hp.rig.reg
        await reg.put_service(Service("web", "host", "web.test"))
        await hp.rig.settled()  # the backend exists: instances now arrive through the Runtime API
        b1, b2 = http_backends("b1"), http_backends("b2")
        one, _, _ = await reg.put_instance(Instance("i1", "web", b1.host, b1.port, weight=7, zone="z1"))
        await reg.put_instance(Instance("i2", "web", b2.host, b2.port))
        await hp.rig.until_status("web.test", 200)
        await hp.rig.settled()

        slot = f"s{one.slot}"
        weight_key = ("haplane_server_weight", (("backend", "web"), ("instance", "i1"), ("server", slot)))
        for _ in range(50):  # a scrape may use a show stat sampled up to 0.5 s before (the sampler runs on its own)
            r = await api.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            m = parse(r.text)
            if weight_key in m:
                break
            await asyncio.sleep(0.1)
        assert value(m, "haplane_server_state", backend="web", server=slot, instance="i1", state="up") == 1
        assert value(m, "haplane_server_state", backend="web", server=slot, instance="i1", state="draining") == 0
        assert value(m, "haplane_server_weight", backend="web", server=slot, instance="i1") == 7
        assert value(m, "haplane_server_weight_target", backend="web", server=slot, instance="i1") == 7
        assert value(m, "haplane_instances", service="web", state="ready") == 2
        # web is in a pool's spare (HAProxy knows it as _pool...): /metrics names it web all the same; a service
        # outside every profile takes a reload
        desired = hp.rig.bundle.agent.desired
        assert desired is not None and next(b.name for b in desired.backends if b.shown == "web").startswith("_pool")
        await reg.put_service(Service("hashed", "host", "hashed.test", balance="source"))
        await hp.rig.settled()
        m = parse((await api.get("/metrics")).text)
        assert value(m, "haplane_reloads_total", reason="backend-added", result="ok") >= 1
        assert value(m, "haplane_runtime_commands_total", command="set server addr", result="ok") >= 2
        assert value(m, "haplane_source_events_total", source="api", event="put") >= 2
        assert value(m, "haplane_event_to_routable_seconds_count") >= 1
        assert value(m, "haplane_store_watch_lag_revisions") == 0
        assert value(m, "haplane_haproxy_up") == 1
        commands_before = value(m, "haplane_runtime_commands_total", command="set server state", result="ok")

        # drain i1 through the registry: HAProxy drains it, and the figures say so
        inst, _ = await reg.get_instance("web", "i1")
        await reg.put_instance(replace(inst, state="drain"))
        await hp.rig.settled()
        for _ in range(100):
            m = parse((await api.get("/metrics")).text)
            if value(m, "haplane_server_state", backend="web", server=slot, instance="i1", state="draining") == 1:
                break
            await asyncio.sleep(0.05)
        assert value(m, "haplane_server_state", backend="web", server=slot, instance="i1", state="draining") == 1
        assert value(m, "haplane_server_state", backend="web", server=slot, instance="i1", state="up") == 0
        assert value(m, "haplane_instances", service="web", state="drain") == 1
        assert value(m, "haplane_runtime_commands_total", command="set server state", result="ok") \
            == commands_before + 1


def test_agent_serves_metrics_alone_on_the_exporter_port(tmp_path: Path, haproxy_bin: str) -> None:
    """`haplane agent` with HSDO's EXPORTER_PORT: /metrics on its own listener, no API needed."""
    import os
    import sys

    import httpx
    from tests.support.procs import Proc, free_port, short_tmpdir, wait_until

    state = short_tmpdir("hpm")
    port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAPLANE_") and "proxy" not in k.lower()}
    env.update({"EXPORTER_PORT": str(port), "HAPLANE_HAPROXY_BIN": haproxy_bin})
    proc = Proc([sys.executable, "-m", "haplane", "agent", "--state-dir", str(state), "--store", "memory://",
                 "--http-port", str(http_port), "--http-address", "127.0.0.1"], tmp_path / "agent.log", env=env)
    try:
        text: list[str] = []

        def scraped() -> bool:
            assert proc.alive(), proc.log_tail()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2, trust_env=False)
            except httpx.HTTPError:
                return False
            text[:] = [r.text]
            return r.status_code == 200 and "haplane_reloads_total{" in r.text

        wait_until(scraped, 30, what="metrics on EXPORTER_PORT")
        m = parse(text[0])
        assert value(m, "haplane_reloads_total", reason="start", result="ok") == 1
        assert value(m, "haplane_haproxy_up") == 1
        assert value(m, "haplane_store_watch_lag_revisions") == 0
    finally:
        assert proc.stop() == 0, proc.log_tail()


def promtool_check(promtool: str, text: str) -> None:
    """`promtool check metrics`: Prometheus' own lint of names, units, types and help (exit 0 and no remark)."""
    import subprocess

    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


async def test_traffic_metrics_by_service_and_instance(tmp_path: Path, http_backends: MakeHttpBackend,
                                                       promtool_bin: str) -> None:
    """Requests through a real HAProxy show up per service and per instance (by name, never by slot), and the
    whole exposition passes promtool and prometheus_client's parser."""
    import httpx

    async with running_haplane(tmp_path) as hp, hp.client(READ) as api:
        reg = hp.rig.reg
        await reg.put_service(Service("shop", "host", "shop.test"))
        await hp.rig.settled()
        b1, b2 = http_backends("s-one"), http_backends("s-two")
        one, _, _ = await reg.put_instance(Instance("one", "shop", b1.host, b1.port))
        await reg.put_instance(Instance("two", "shop", b2.host, b2.port))
        await hp.rig.until_status("shop.test", 200)
        before = parse((await api.get("/metrics")).text)
        base = {k: v for k, v in before.items() if k[0] == "haplane_service_http_responses_total"}
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(40):
                assert (await client.get(hp.rig.proxy + "/", headers={"Host": "shop.test"})).status_code == 200
            for _ in range(3):
                await client.get(hp.rig.proxy + "/", headers={"Host": "nowhere.test"})  # 503: no backend
        text = (await api.get("/metrics")).text
        promtool_check(promtool_bin, text)
        m = parse(text)
        key = ("haplane_service_http_responses_total", (("backend", "shop"), ("code", "2xx"), ("service", "shop")))
        assert m[key] - base.get(key, 0) >= 40
        per_instance = sum(value(m, "haplane_instance_http_responses_total", service="shop", backend="shop",
                                 instance=i, code="2xx") for i in ("one", "two"))
        assert per_instance >= 40
        assert value(m, "haplane_instance_http_requests_total", service="shop", backend="shop", instance="one") >= 1
        assert value(m, "haplane_service_sent_bytes_total", service="shop", backend="shop") > 0
        assert value(m, "haplane_service_queue_current", service="shop", backend="shop") == 0
        assert value(m, "haplane_service_response_time_average_seconds", service="shop", backend="shop") >= 0
        assert value(m, "haplane_frontend_http_responses_total", frontend="http", code="5xx") >= 3
        # no traffic figure names a slot
        slot = f"s{one.slot}"
        for (name, labels), _v in m.items():
            if name.startswith(("haplane_service_", "haplane_instance_", "haplane_frontend_")):
                assert slot not in dict(labels).values() and "server" not in dict(labels), (name, labels)
