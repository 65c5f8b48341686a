"""deploy/prometheus: `promtool check rules` accepts the example alerts, `promtool test rules` shows each one firing
on its series (and not before its `for:`), and every haplane_* series they (and docs/deploy.md) name is one a real
`haplane up` (a real HAProxy routing a registered service) exposes on /metrics: a renamed metric breaks this test,
not the alerts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.deploy.conftest import DEPLOY
from tests.support.procs import MakeHttpBackend, Proc, free_port, short_tmpdir, up_args, wait_until
from tests.support.require import require_binary

RULES = DEPLOY / "prometheus" / "haplane-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "haplane-alerts.test.yml"
TOKEN = "alerts-admin-token-1"


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool", "/usr/bin/promtool", env="HAPLANE_PROMTOOL_BIN", package="prometheus")


def test_promtool_accepts_the_rules(promtool: str) -> None:
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
                       check=False)
    n = len(yaml.safe_load(RULES.read_text())["groups"][0]["rules"])
    assert r.returncode == 0 and f"SUCCESS: {n} rules found" in r.stdout, r.stdout + r.stderr


def test_each_alert_fires_on_its_series(promtool: str) -> None:
    r = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, timeout=120,
                       cwd=RULE_TESTS.parent, check=False)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    alerts = {rule["alert"] for rule in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    assert alerts - {"HaplaneStoreDown"} <= tested, f"alerts with no promtool test: {alerts - tested}"


def test_the_rules_name_only_series_haplane_exposes(haproxy_bin: str, http_backends: MakeHttpBackend,
                                                    loopback: Callable[[], str], tmp_path: Path) -> None:
    state = short_tmpdir("alerts")
    addr = loopback()
    api, proxy = free_port(addr), free_port(addr)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAPLANE_", "DOCKER_"))}
    env.update(HAPLANE_TOKEN=TOKEN, HAPLANE_RAMP_MIN="10")
    proc = Proc([sys.executable, "-m", "haplane", *up_args("--no-docker", "--state-dir", str(state), "--listen",
                 f"{addr}:{api}", "--http-port", str(proxy), "--http-address", addr, "--haproxy-bin", haproxy_bin)],
                tmp_path / "up.log", env=env)
    base = f"http://{addr}:{api}"
    h = {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_until(lambda: httpx.get(base + "/health", timeout=1).status_code == 200, 30, what="haplane up")
        backend = http_backends("alerts")
        # balance "source" fits no pool profile: the service takes a reload, so the reload series exist too
        assert httpx.put(f"{base}/services/web", headers=h,
                         json={"mode": "host", "predicate": "web.test", "port": backend.port,
                               "balance": "source"}).status_code == 201
        assert httpx.put(f"{base}/services/web/instances/i1", headers=h,
                         json={"address": backend.host}).status_code == 201
        wait_until(lambda: httpx.get(f"http://{addr}:{proxy}/", headers={"Host": "web.test"}, timeout=1).text
                   == "backend=alerts", 30, what="the service routed")
        text = httpx.get(base + "/metrics", headers=h, timeout=10).text
    finally:
        assert proc.stop() == 0, proc.log_tail()
    exposed: set[str] = set()
    for fam in text_string_to_metric_families(text):
        exposed.add(fam.name)
        exposed.update(s.name for s in fam.samples)
        if fam.type == "counter":
            exposed.add(fam.name + "_total")
        if fam.type == "histogram":
            exposed.update(fam.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    named = {name for path in (RULES, RULE_TESTS, DEPLOY.parent / "docs" / "deploy.md")
             for name in re.findall(r"\bhaplane_[a-z_]+\b", path.read_text())}
    assert named, "the rules name no haplane series"
    assert named <= exposed, f"named in the alerts, not exposed by haplane: {sorted(named - exposed)}"
