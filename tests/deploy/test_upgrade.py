"""Upgrades: restarting (or upgrading) haplane agent leaves HAProxy serving. Both units of a node are run as
systemd would run them (their ExecStartPre, ExecStart and Environment= lines, read from deploy/systemd): HAProxy
starts from the bootstrap config, the agent attaches and routes a service; then, with a client opening a new
connection every few milliseconds, the agent gets SIGTERM, HAProxy runs alone for a while, and a new agent attaches
and applies a change. Not one request fails and HAProxy's master is the same process throughout."""

from __future__ import annotations

import asyncio
import http.client
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.deploy.conftest import DEPLOY
from tests.deploy.test_systemd_units import parse_unit
from tests.support.procs import MakeHttpBackend, Proc, free_port, short_tmpdir, wait_until

from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.store import open_store

UNITS = DEPLOY / "systemd"
HAPLANE_BIN = str(Path(sys.executable).parent / "haplane")


def unit_command(line: str, state: Path, haproxy_bin: str) -> list[str]:
    line = line.replace("%S/haplane", str(state)).replace("/etc/haplane/haproxy-bootstrap.cfg",
                                                          str(UNITS / "haproxy-bootstrap.cfg"))
    argv = shlex.split(line)
    if argv[0] == "/usr/sbin/haproxy":
        # -Ws is -W plus systemd's readiness notification, which needs systemd
        argv = [haproxy_bin, *("-W" if a == "-Ws" else a for a in argv[1:])]
    if argv[0] == "/opt/haplane/bin/haplane":
        argv[0] = HAPLANE_BIN
    return argv


def unit_env(svc: dict[str, list[str]], state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAPLANE_", "DOCKER_"))}
    for line in svc.get("Environment", []):
        key, _, value = line.replace("%S/haplane", str(state)).partition("=")
        env[key] = value
    return env


async def registry_do(db: Path, *ops: Callable[[RegistryStore], object]) -> None:
    store = open_store(f"sqlite:///{db}")
    try:
        reg = RegistryStore(store, slot_cooldown=0)
        for op in ops:
            await op(reg)  # type: ignore[misc]
    finally:
        await store.close()


def test_an_agent_restart_keeps_haproxy_serving(haproxy_bin: str, http_backends: MakeHttpBackend,
                                                loopback: Callable[[], str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    state = short_tmpdir("upg")
    addr, port = loopback(), free_port()
    hsvc = parse_unit(UNITS / "haplane-haproxy.service")["Service"]
    asvc = parse_unit(UNITS / "haplane-agent.service")["Service"]

    pre = unit_command(hsvc["ExecStartPre"][0], state, haproxy_bin)
    assert Proc(pre, tmp_path / "pre.log", env=unit_env(hsvc, state)).wait(30) == 0
    assert "expose-fd listeners" in (state / "haproxy.cfg").read_text()
    haproxy = Proc(unit_command(hsvc["ExecStart"][0], state, haproxy_bin), tmp_path / "haproxy.log",
                   env=unit_env(hsvc, state))
    wait_until(lambda: (state / "admin.sock").exists() and (state / "master.sock").exists(), 20,
               what="HAProxy's sockets from the bootstrap config")
    agent_env = {**unit_env(asvc, state), "HAPLANE_HTTP_PORT": str(port), "HAPLANE_HTTP_ADDRESS": addr,
                 "HAPLANE_HAPROXY_BIN": haproxy_bin, "HAPLANE_RAMP_MIN": "10", "HAPLANE_DRAIN_TIMEOUT": "0"}
    agent_argv = unit_command(asvc["ExecStart"][0], state, haproxy_bin)
    agents = [Proc(agent_argv, tmp_path / "agent-1.log", env=agent_env)]
    a, b = http_backends("a"), http_backends("b")
    db = state / "haplane.db"
    url = f"http://{addr}:{port}/"

    def answer() -> str:
        return httpx.get(url, headers={"Host": "web.test", "Connection": "close"}, timeout=2).text

    results: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection(addr, port, timeout=2)
            try:
                conn.request("GET", "/", headers={"Host": "web.test", "Connection": "close"})
                r = conn.getresponse()
                body = r.read().decode()
                results.append(body if r.status == 200 else f"status {r.status}")
            except (OSError, http.client.HTTPException) as exc:
                results.append(f"error {type(exc).__name__}: {exc}")
            finally:
                conn.close()
            time.sleep(0.002)

    loop = threading.Thread(target=client, daemon=True)
    try:
        wait_until(lambda: db.exists(), 30, what="the agent's store")
        asyncio.run(registry_do(db, lambda r: r.put_service(Service("web", "host", "web.test")),
                                lambda r: r.put_instance(Instance("a1", "web", a.host, a.port))))
        wait_until(lambda: answer() == "backend=a", 30, what="the service routed by the first agent")
        master = haproxy.pid
        loop.start()
        time.sleep(0.3)

        restart_started = time.monotonic()
        assert agents[0].stop(sig=signal.SIGTERM) == 0, agents[0].log_tail()
        assert haproxy.alive(), haproxy.log_tail()
        time.sleep(1.0)  # HAProxy alone, no agent
        agents.append(Proc(agent_argv, tmp_path / "agent-2.log", env=agent_env))
        asyncio.run(registry_do(db, lambda r: r.put_instance(Instance("b1", "web", b.host, b.port)),
                                lambda r: r.delete_instance("web", "a1")))
        wait_until(lambda: answer() == "backend=b", 30, what="a change applied by the new agent")
        restart_s = time.monotonic() - restart_started
        time.sleep(0.3)
    finally:
        stop.set()
        if loop.is_alive():
            loop.join(10)
        for agent in agents:
            agent.stop()
    failed = [r for r in results if not r.startswith("backend=")]
    with capsys.disabled():
        print(f"\nagent restart: {len(results)} requests (a new connection each) over {restart_s:.1f}s of "
              f"stop, {1.0:.1f}s without an agent, start and a change; {len(failed)} failed; HAProxy master "
              f"{'kept' if haproxy.pid == master and haproxy.alive() else 'LOST'}")
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {sorted(set(failed))}"
    assert len(results) >= 200 and {"backend=a", "backend=b"} <= set(results)
    assert haproxy.alive() and haproxy.pid == master
    # KillSignal=SIGUSR1: HAProxy stops softly, and exits 0
    assert haproxy.stop(sig=signal.SIGUSR1, timeout=30) == 0, haproxy.log_tail()
