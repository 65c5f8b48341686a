"""The image's entry point and health check, run here against real haplane processes (no image needed): the
entry point hands haplane's commands to haplane and anything else to the shell; the health check finds where a
running haplane listens from its own command line, environment and settings, and asks its /health."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from tests.deploy.conftest import DEPLOY
from tests.support.procs import Proc, free_port, short_tmpdir, wait_until

from haplane import __version__
from haplane.cli import COMMANDS

ENTRYPOINT = DEPLOY / "image" / "entrypoint"
HEALTHCHECK = DEPLOY / "image" / "healthcheck"
HAPLANE_BIN = str(Path(sys.executable).parent / "haplane")  # the console script, as in the image
TOKEN = "healthcheck-admin-token"


def load_healthcheck() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("haplane_healthcheck", str(HEALTHCHECK))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAPLANE_", "DOCKER_"))}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return {**env, **extra}


def healthcheck(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, timeout=60,
                          env=clean_env(**env), check=False)


def test_the_entrypoint_knows_every_haplane_command() -> None:
    text = ENTRYPOINT.read_text()
    m = re.search(r"^\s*([a-z|_]+)\|-\*\)\s*$", text, re.M)
    assert m, "the entry point's case line for haplane's commands"
    assert set(m.group(1).split("|")) == set(COMMANDS), "deploy/image/entrypoint is out of step with haplane.cli"


def test_the_entrypoint_runs_haplane_or_the_command_given() -> None:
    def run(*args: str) -> str:
        r = subprocess.run(["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=60,
                           env=clean_env(), check=True)
        return r.stdout.strip()

    assert run("--version") == f"haplane {__version__}"
    assert "usage: haplane agent" in run("agent", "--help")
    assert "usage: haplane watch docker" in run("watch", "docker", "--help")
    assert run("echo", "a shell command") == "a shell command"


def test_health_urls_follow_haplanes_own_settings() -> None:
    hc = load_healthcheck()
    assert hc.health_url(["up"], {}, "/") == "http://127.0.0.1:9090/health"
    assert hc.health_url(["up"], {"HAPLANE_LISTEN": "0.0.0.0:9191"}, "/") == "http://127.0.0.1:9191/health"
    assert hc.health_url(["serve", "--listen", "10.1.2.3:9443", "--tls-cert", "c.pem"], {}, "/") \
        == "https://10.1.2.3:9443/health"
    assert hc.health_url(["--log-level", "debug", "serve", "--listen=[::]:9000"], {}, "/") \
        == "http://[::1]:9000/health"
    assert hc.health_url(["agent"], {}, "/") == hc.NO_URL
    assert hc.health_url(["agent"], {"EXPORTER_PORT": "9101"}, "/") == "http://127.0.0.1:9101/health"
    assert hc.health_url(["agent", "--metrics-port", "9102"], {"HAPLANE_METRICS_ADDRESS": "0.0.0.0"}, "/") \
        == "http://127.0.0.1:9102/health"
    assert hc.health_url(["watch", "docker"], {}, "/") == hc.NO_URL
    assert hc.haplane_args(["/opt/haplane/bin/python3", "/opt/haplane/bin/haplane", "up"]) == ["up"]
    assert hc.haplane_args(["/opt/haplane/bin/haplane", "serve", "-h"]) == ["serve", "-h"]
    assert hc.haplane_args(["/usr/bin/tini", "--", "/opt/haplane/bin/haplane-entrypoint", "up"]) is None


def test_the_healthcheck_asks_a_real_serve_and_notices_it_gone(tmp_path: Path) -> None:
    port = free_port()
    # the address comes from a flag here, from the environment below: the check reads both as haplane did
    proc = Proc([HAPLANE_BIN, "serve", "--state-dir", str(tmp_path / "s"), "--listen", f"127.0.0.1:{port}"],
                tmp_path / "serve.log", env=clean_env(HAPLANE_TOKEN=TOKEN))
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200, 30,
                   what="haplane serve")
        r = healthcheck("--pid", str(proc.pid))
        assert r.returncode == 0, r.stdout + r.stderr
        # the API tells its version only to a caller with a token
        assert r.stdout.strip() == f"healthy: http://127.0.0.1:{port}/health: 200 ok"
        r = healthcheck("--pid", str(proc.pid))  # again, from the remembered address
        assert r.returncode == 0, r.stdout + r.stderr
        r = healthcheck(HAPLANE_HEALTH_URL=f"http://127.0.0.1:{free_port()}/health")
        assert r.returncode == 1 and r.stdout.startswith("unhealthy: http://127.0.0.1:"), r.stdout
    finally:
        assert proc.stop() == 0, proc.log_tail()
    r = healthcheck("--pid", str(proc.pid))
    assert r.returncode == 1 and r.stdout.startswith("unhealthy:"), r.stdout


def test_the_healthcheck_asks_an_agents_metrics_listener(haproxy_bin: str, tmp_path: Path,
                                                         loopback: Callable[[], str]) -> None:
    state = short_tmpdir("hc-agent")
    mport = free_port()
    proc = Proc([HAPLANE_BIN, "agent", "--state-dir", str(state), "--http-port", str(free_port()),
                 "--http-address", loopback(), "--haproxy-bin", haproxy_bin],
                tmp_path / "agent.log", env=clean_env(HAPLANE_METRICS_PORT=str(mport)))
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{mport}/health", timeout=1).status_code == 200, 30,
                   what="the agent's metrics listener")
        body = httpx.get(f"http://127.0.0.1:{mport}/health", timeout=5).json()
        assert body["version"] == __version__ and body["agent"]["haproxy_ok"] is True
        r = healthcheck("--pid", str(proc.pid))
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip() == f"healthy: http://127.0.0.1:{mport}/health: 200 ok (haplane {__version__})"
    finally:
        assert proc.stop() == 0, proc.log_tail()


@pytest.mark.parametrize("pid", ["self", "none"])
def test_the_healthcheck_says_no_when_there_is_no_haplane(pid: str) -> None:
    if pid == "self":
        r = healthcheck("--pid", str(os.getpid()))  # pytest, not haplane
        assert r.returncode == 1 and "is not haplane" in r.stdout, r.stdout
    else:
        r = healthcheck("--pid", "4194304")  # above pid_max: no such process
        assert r.returncode == 1 and r.stdout.startswith("unhealthy:"), r.stdout
