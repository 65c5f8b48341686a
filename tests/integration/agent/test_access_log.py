"""The access log on a real HAProxy: every request through it lands in STATE_DIR/access.log with the service and
instance that answered (never a slot name), its status, timings and bytes; sampled logging keeps about one in N;
`haplane logs` reads and filters it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from haplane.model.records import Instance, Service

from .conftest import Backend as HttpBackend
from .conftest import agent_rig, new_backend


async def _lines(path: Path, n: int, timeout: float = 5.0) -> list[dict[str, object]]:
    for _ in range(int(timeout / 0.05)):
        if path.exists():
            docs = [json.loads(x) for x in path.read_text().splitlines() if x]
            if len(docs) >= n:
                return docs
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {n} lines after {timeout}s")


async def test_requests_are_logged_with_service_and_instance(tmp_path: Path, backends: list[HttpBackend]) -> None:
    async with agent_rig(tmp_path, access_log="full") as rig:
        await rig.reg.put_service(Service("web", "host", "web.test"))
        b1, b2 = new_backend(backends, "one"), new_backend(backends, "two")
        await rig.reg.put_instance(Instance("i-one", "web", b1.address, b1.port))
        await rig.reg.put_instance(Instance("i-two", "web", b2.address, b2.port))
        await rig.until_status("web.test", 200)
        log = rig.bundle.state_dir / "access.log"
        before = len(log.read_text().splitlines()) if log.exists() else 0
        for i in range(20):
            assert (await rig.get("web.test", f"/page?n={i}")).status_code == 200
        assert (await rig.get("nobody.test")).status_code == 503  # no backend chosen
        docs = (await _lines(log, before + 21))[before:]
        # (the last try of until_status may land after `before` was read: count the pages sent here)
        web = [d for d in docs if d["service"] == "web" and str(d["path"]).startswith("/page?n=")]
        assert len(web) == 20
        assert {d["instance"] for d in web} == {"i-one", "i-two"}
        assert all(d["status"] == 200 and d["method"] == "GET"
                   and isinstance(d["total_ms"], int) and d["total_ms"] >= 0 and d["bytes"] > 0
                   and d["termination"] == "----" for d in web)
        assert not any("/s1" in json.dumps(d) or d["instance"] in ("s1", "s2") for d in docs)
        nobody = [d for d in docs if d["service"] is None]
        assert len(nobody) == 1 and nobody[0]["status"] == 503
        # the latency window saw them: a p95 per service and per instance
        assert rig.bundle.latency is not None
        assert rig.bundle.latency.quantile("web", 0.95) is not None
        assert rig.bundle.latency.quantile("web", 0.95, "i-one") is not None

        env = {"PATH": "/usr/bin:/bin", "HAPLANE_STATE_DIR": str(rig.bundle.state_dir)}
        out = subprocess.run([sys.executable, "-m", "haplane", "logs", "--service", "web", "-n", "5"],
                             capture_output=True, text=True, env=env, timeout=30)
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.splitlines()) == 5 and all("web/i-" in x for x in out.stdout.splitlines())
        out = subprocess.run([sys.executable, "-m", "haplane", "logs", "--status", "5xx", "--json"],
                             capture_output=True, text=True, env=env, timeout=30)
        statuses = [json.loads(x)["status"] for x in out.stdout.splitlines()]
        assert statuses and set(statuses) == {503}  # the one above, and those of until_status's first tries


async def test_sampled_logging_keeps_about_one_in_n(tmp_path: Path, backends: list[HttpBackend]) -> None:
    async with agent_rig(tmp_path, access_log="sampled", access_log_sample=4,
                         access_log_format="haproxy") as rig:
        await rig.reg.put_service(Service("api", "host", "api.test"))
        b = new_backend(backends, "api")
        await rig.reg.put_instance(Instance("api-1", "api", b.address, b.port))
        await rig.until_status("api.test", 200)
        log = rig.bundle.state_dir / "access.log"
        before = len(log.read_text().splitlines()) if log.exists() else 0
        for _ in range(200):
            await rig.get("api.test")
        await asyncio.sleep(0.3)
        lines = log.read_text().splitlines()[before:]
        assert 40 <= len(lines) <= 60, len(lines)  # HAProxy's `sample 1:4` keeps exactly one in four
        assert all(" api/api-1 " in x and '"GET / HTTP/1.1"' in x for x in lines)


async def test_haproxy_stats_page_and_exporter_on_a_loopback_port_with_auth(tmp_path: Path) -> None:
    """HAProxy's own stats page and Prometheus exporter, optional, on loopback, behind basic auth; the password
    is in the config only as a crypt(3) hash."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from .conftest import free_port

    port = free_port()
    async with agent_rig(tmp_path, haproxy_stats_port=port, haproxy_stats_password="s3cret-stats-pw") as rig:
        await rig.reg.put_service(Service("web", "host", "web.test"))
        await rig.settled()
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(base + "/")).status_code == 401
            assert (await client.get(base + "/metrics")).status_code == 401
            assert (await client.get(base + "/", auth=("haplane", "wrong-password"))).status_code == 401
            page = await client.get(base + "/", auth=("haplane", "s3cret-stats-pw"))
            # HAProxy's own page names backends as HAProxy knows them: a new service is in a pool's spare
            desired = rig.bundle.agent.desired
            assert desired is not None
            proxy = next(b.name for b in desired.backends if b.shown == "web")
            assert page.status_code == 200 and "Statistics Report" in page.text and f">{proxy}<" in page.text
            prom = await client.get(base + "/metrics", auth=("haplane", "s3cret-stats-pw"))
            assert prom.status_code == 200
            names = {f.name for f in text_string_to_metric_families(prom.text)}
            assert "haproxy_process_uptime_seconds" in names or "haproxy_process_start_time_seconds" in names
        text = rig.bundle.agent.applied_text or ""
        assert "s3cret-stats-pw" not in text and "password '$6$" in text
