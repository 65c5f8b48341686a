"""`haplane up` under a low hard limit on open files (prlimit): HAProxy 2.6 reserves one descriptor per
health-checked slot and refused to start above the hard limit; haplane sizes it instead (ulimit-n, no
strict-limits, maxconn from the limit) and says in one line, before starting HAProxy, what does not fit."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.support.procs import MakeHttpBackend, Proc, free_port, short_tmpdir, up_args, wait_until

from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.store import open_store

pytestmark = pytest.mark.integration

TOKEN = "integration-admin-token"
LIMIT = 1024
SERVICES = 200  # x 8 slots: 1,600 health-checked slots, more than the limit


def fill(state: Path, instance: tuple[str, int]) -> None:
    async def write() -> None:
        store = open_store(f"sqlite:///{state}/haplane.db")
        reg = RegistryStore(store)
        for s in range(SERVICES):
            await reg.put_service(Service(f"svc{s}", "host", f"svc{s}.test"))
            await reg.put_instance(Instance("i0", f"svc{s}", *instance))
        await store.close()

    state.mkdir(parents=True, exist_ok=True)
    asyncio.run(write())


def up(state: Path, api_port: int, proxy_port: int) -> list[str]:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is not installed")
    return [prlimit, f"--nofile={LIMIT}:{LIMIT}", "--", sys.executable, "-m", "haplane",
            *up_args("--state-dir", str(state), "--listen", f"127.0.0.1:{api_port}", "--http-port", str(proxy_port),
                     "--http-address", "127.0.0.1", "--no-docker")]


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, "HAPLANE_TOKEN": TOKEN, **extra}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        out.pop(key, None)
    return out


def test_more_slots_than_the_hard_limit_start_sized(tmp_path: Path, http_backends: MakeHttpBackend,
                                                    loopback: Callable[[], str]) -> None:
    state = short_tmpdir("lim")
    b = http_backends("b", loopback())
    fill(state, (b.host, b.port))
    api_port, proxy_port = free_port(), free_port()
    proc = Proc(up(state, api_port, proxy_port), tmp_path / "up.log", env=env())
    try:
        def routed() -> bool:
            assert proc.alive(), proc.log_tail()
            r = httpx.get(f"http://127.0.0.1:{proxy_port}/", headers={"Host": f"svc{SERVICES - 1}.test"}, timeout=2)
            return r.status_code == 200

        wait_until(routed, 60, what="the last service routed")
        cfg = (state / "haproxy.cfg").read_text()
        assert f"ulimit-n {LIMIT}" in cfg and "no strict-limits" in cfg
        assert f"maxconn {(LIMIT - 64) // 4}" in cfg  # half the descriptors to connections, half to checks
        assert cfg.count(" check") >= SERVICES * 8 > LIMIT
        log = proc.log.read_text()
        assert "Traceback" not in log and "ERROR" not in log, proc.log_tail()
        assert proc.stop() == 0, proc.log_tail()
    finally:
        proc.stop()


def test_what_does_not_fit_is_said_before_starting(tmp_path: Path) -> None:
    state = short_tmpdir("lim")
    fill(state, ("127.0.0.2", 1))
    r = subprocess.run(up(state, free_port(), free_port()), capture_output=True, text=True, timeout=60,
                       env=env(HAPLANE_MAXCONN="600"))
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("haplane")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    line = errors[0]
    assert f"hard limit is {LIMIT}" in line and "maxconn 600" in line and f"{SERVICES} health-checked" in line
    assert "HAPLANE_MAXCONN" in line and "ulimit -Hn" in line, line
    assert not (state / "haproxy.master").exists()  # HAProxy was never started
