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

        r = await api.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        m = parse(r.text)
        slot = f"s{one.slot}"
        assert value(m, "haplane_server_state", backend="web", server=slot, instance="i1", state="up") == 1
        assert value(m, "haplane_server_state", backend="web", server=slot, instance="i1", state="draining") == 0
        assert value(m, "haplane_server_weight", backend="web", server=slot, instance="i1") == 7
        assert value(m, "haplane_server_weight_target", backend="web", server=slot, instance="i1") == 7
        assert value(m, "haplane_instances", service="web", state="ready") == 2
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
