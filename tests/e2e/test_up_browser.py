"""`haplane up` as a real process, seen the way an operator sees it: the login link its banner prints, opened in
headless Chromium; the overview and live stats of what the API just registered; /metrics; and `haplane status` /
`haplane events` run against its state directory with nothing but --state-dir."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright
from prometheus_client.parser import text_string_to_metric_families
from tests.support.procs import MakeHttpBackend, Proc, free_port, short_tmpdir, up_args, wait_until

pytestmark = pytest.mark.e2e
TOKEN = "e2e-up-admin-token"


def test_up_login_link_overview_stats_metrics_and_cli(tmp_path: Path, http_backends: MakeHttpBackend,
                                                      chromium_bin: str, haproxy_bin: str) -> None:
    shots = Path(os.environ.get("HAPLANE_ARTIFACTS") or Path(__file__).resolve().parents[1] / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    state = short_tmpdir("upui")
    api_port, proxy_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAPLANE_") and "proxy" not in k.lower()}
    env.update({"HAPLANE_TOKEN": TOKEN, "HAPLANE_HAPROXY_BIN": haproxy_bin, "HAPLANE_RAMP_INTERVAL": "0"})
    proc = Proc([sys.executable, "-m", "haplane", *up_args("--state-dir", str(state), "--listen",
                 f"127.0.0.1:{api_port}", "--http-port", str(proxy_port), "--http-address", "127.0.0.1",
                 "--no-docker")], tmp_path / "up.log", env=env)
    try:
        wait_until(lambda: proc.alive() and "login" in proc.log.read_text(), 30, what="the banner")
        link = re.search(r"login\s+(\S+)", proc.log.read_text())
        assert link is not None
        api = f"http://127.0.0.1:{api_port}"
        h = {"Authorization": f"Bearer {TOKEN}"}
        b = http_backends("up-web")
        assert httpx.put(f"{api}/services/web", json={"predicate": "web.test"}, headers=h).status_code == 201
        assert httpx.put(f"{api}/services/web/instances/w1", json={"address": f"{b.host}:{b.port}", "version": "3.1"},
                         headers=h).status_code == 201
        proxy = httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", headers={"Host": "web.test"}, timeout=5)
        wait_until(lambda: proxy.get("/").status_code == 200, 30, what="the instance routable")

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_bin, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1300, "height": 800})
            page.goto(link.group(1))
            page.wait_for_url(f"{api}/ui/")
            assert TOKEN not in page.url
            page.wait_for_selector('tr[data-instance="w1"][data-state="up"]')
            assert page.inner_text("#who") == "role: admin"
            assert "3.1" in page.inner_text('tr[data-instance="w1"]')
            page.screenshot(path=str(shots / "up-overview.png"), full_page=True)
            for _ in range(40):
                proxy.get("/")
            page.goto(f"{api}/ui/stats")
            page.wait_for_selector('section.chart-card[data-proxy="web"] .chart[data-metric="req"] canvas')
            page.screenshot(path=str(shots / "up-stats.png"), full_page=True)
            browser.close()
        print(f"screenshots: {shots}")

        text = httpx.get(f"{api}/metrics", headers=h).text
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
        assert samples[("haplane_reloads_total", (("reason", "start"), ("result", "ok")))] == 1
        assert samples[("haplane_server_state", (("backend", "web"), ("instance", "w1"), ("server", "s1"),
                                                 ("state", "up")))] == 1

        # the CLI needs nothing but the state directory: the agent recorded its settings there
        cli_env = {k: v for k, v in env.items() if k != "HAPLANE_TOKEN"}
        out = subprocess.run([sys.executable, "-m", "haplane", "status", "--state-dir", str(state)], env=cli_env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"127.0.0.1:{proxy_port}" in out.stdout and re.search(r"s1\s+w1\s+\S+\s+up", out.stdout)
        out = subprocess.run([sys.executable, "-m", "haplane", "plan", "--state-dir", str(state)], env=cli_env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "reload: no" in out.stdout, out.stdout + out.stderr
        out = subprocess.run([sys.executable, "-m", "haplane", "events", "--state-dir", str(state)],
                             env=cli_env, capture_output=True, text=True, timeout=60)
        # the new service went in without a reload (a pool's spare); the activity's subjects name the service
        assert "web.test → web" in out.stdout and "server-add     web/s1" in out.stdout, out.stdout + out.stderr
    finally:
        assert proc.stop() == 0, proc.log_tail()
