"""`haplane up` over a SQLite file that is no database any more: HAProxy serves the last good config from the
state directory, haplane says loudly (once) that the store cannot be read and what to do, `/health` and
`/metrics` show it, an HAProxy killed meanwhile is restarted at once from that config, and once the file is
restored the agent converges without a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.procs import MakeHttpBackend, Proc, free_port, short_tmpdir, up_args, wait_until

from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.store import open_store

pytestmark = pytest.mark.integration

TOKEN = "integration-admin-token"
H = {"Authorization": f"Bearer {TOKEN}"}


def _start(args: list[str], log: Path) -> Proc:
    env = {**os.environ, "HAPLANE_TOKEN": TOKEN}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    return Proc([sys.executable, "-m", "haplane", *args], log, env=env)


async def _write_registry(state: Path, service: Service, instance: Instance) -> None:
    store = open_store(f"sqlite:///{state}/haplane.db")
    reg = RegistryStore(store)
    await reg.put_service(service)
    await reg.put_instance(instance)
    await store.close()


@dataclass
class Unreadable:
    """A state directory whose last good config routes web.test to ``keep``, and whose SQLite store is garbage
    (``good``: its bytes before)."""

    state: Path
    args: list[str]
    api: str
    proxy: httpx.Client
    good: bytes

    @property
    def db(self) -> Path:
        return self.state / "haplane.db"

    def answers(self) -> set[str]:
        seen = set()
        for _ in range(8):
            try:
                r = self.proxy.get("/")
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                seen.add(r.headers["x-backend"])
        return seen

    def health(self) -> httpx.Response | None:
        try:
            return httpx.get(self.api + "/health", headers=H, timeout=2)  # the details need a token
        except httpx.HTTPError:
            return None

    def agent(self) -> dict[str, object]:
        r = self.health()
        assert r is not None
        agent: dict[str, object] = r.json()["agent"]
        return agent


def _unreadable(tmp_path: Path, http_backends: MakeHttpBackend, loopback: Callable[[], str]) -> Unreadable:
    state = short_tmpdir("unreadable")
    api_port, proxy_port = free_port(), free_port()
    args = up_args("--state-dir", str(state), "--listen", f"127.0.0.1:{api_port}", "--http-port", str(proxy_port),
                   "--http-address", "127.0.0.1", "--no-docker")
    api = f"http://127.0.0.1:{api_port}"
    proxy = httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", headers={"Host": "web.test"}, timeout=5)
    u = Unreadable(state, args, api, proxy, b"")

    keep = http_backends("keep", loopback())
    # the registry written before the first start: a start renders it whole, so that config (the last good one)
    # has the instance in its slot (an instance that came through the Runtime API after the last start or reload
    # is not in it)
    asyncio.run(_write_registry(state, Service("web", "host", "web.test", port=keep.port),
                                Instance("keep", "web", keep.host, keep.port)))
    proc = _start(args, tmp_path / "first.log")
    wait_until(lambda: u.answers() == {"keep"}, 30, what="the instance routable")
    # the started config becomes the last good a moment after HAProxy serves it (once its Runtime API answers)
    wait_until(lambda: f"{keep.host}:{keep.port}" in (state / "haproxy.cfg.last-good").read_text(), 10,
               what="the start's config as the last good")
    proc.send_signal(signal.SIGINT)  # a clean stop: HAProxy stops with it
    assert proc.wait(30) == 0, proc.log_tail()

    u.good = u.db.read_bytes()
    assert not Path(f"{u.db}-wal").exists() or Path(f"{u.db}-wal").stat().st_size == 0
    u.db.write_bytes(b"garbage, not a SQLite database\n" * 2000)
    for suffix in ("-wal", "-shm"):
        Path(f"{u.db}{suffix}").unlink(missing_ok=True)
    return u


def test_up_serves_the_last_good_config_while_the_store_cannot_be_read(tmp_path: Path,
                                                                       http_backends: MakeHttpBackend,
                                                                       loopback: Callable[[], str]) -> None:
    u = _unreadable(tmp_path, http_backends, loopback)
    log = tmp_path / "second.log"
    proc = _start(u.args, log)
    try:
        # routing comes back from the last good config, although nothing can be composed
        wait_until(lambda: u.answers() == {"keep"}, 30, what="the last good config served")
        wait_until(lambda: (r := u.health()) is not None and "agent" in r.json(), 30, what="/health")
        r = u.health()
        assert r is not None
        agent = r.json()["agent"]
        assert agent["store_ok"] is False and agent["haproxy_ok"] is True, agent
        assert "not a database" in agent["store_error"], agent
        assert r.status_code == 503 and r.json()["status"] == "unavailable"
        metrics = httpx.get(f"{u.api}/metrics", headers=H, timeout=10).text
        assert "haplane_agent_store_up 0.0" in metrics
        said = [ln for ln in log.read_text().splitlines() if " ERROR " in ln and "cannot be read" in ln]
        assert len(said) == 1, log.read_text()
        assert "last good config" in said[0] and "restore a backup" in said[0]

        # the file is restored: the agent reads it (backoff at most 5 s), converges and takes new changes
        u.db.write_bytes(u.good)
        wait_until(lambda: (r := u.health()) is not None and r.json().get("agent", {}).get("store_ok") is True, 30,
                   what="the store read again")
        more = http_backends("more", loopback())
        assert httpx.put(f"{u.api}/services/web/instances/more", json={"address": f"{more.host}:{more.port}"},
                         headers=H).status_code == 201
        wait_until(lambda: u.answers() == {"keep", "more"}, 30, what="a change after the store came back")
        assert len([ln for ln in log.read_text().splitlines() if " ERROR " in ln]) == 1
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, proc.log_tail()


def test_an_haproxy_killed_while_the_store_cannot_be_read_is_restarted_at_once(
        tmp_path: Path, http_backends: MakeHttpBackend, loopback: Callable[[], str]) -> None:
    """HAProxy's master is SIGKILLed while the store still cannot be read: the agent restarts it from the last good
    config at once (before, it waited for the store to answer: no routing for as long as the store was broken),
    still retries the store, and converges once the store can be read again."""
    u = _unreadable(tmp_path, http_backends, loopback)
    proc = _start(u.args, tmp_path / "second.log")
    try:
        wait_until(lambda: u.answers() == {"keep"}, 30, what="the last good config served")
        wait_until(lambda: (r := u.health()) is not None and "agent" in r.json(), 30, what="/health")
        time.sleep(1.5)  # into the store's longer retry waits (0.2 s, doubling up to 5 s)
        master = int(json.loads((u.state / "haproxy.master").read_text())["pid"])
        os.kill(master, signal.SIGKILL)
        t0 = time.monotonic()

        def restarted() -> bool:  # a new master (its record is gone when the old one exits) routes again
            record = u.state / "haproxy.master"
            return (record.exists() and int(json.loads(record.read_text())["pid"]) != master
                    and u.answers() == {"keep"})

        wait_until(restarted, 5, interval=0.02, what="routing back by a new HAProxy, the store still unreadable")
        took = time.monotonic() - t0
        agent = u.agent()
        assert agent["store_ok"] is False and agent["haproxy_ok"] is True, agent
        print(f"\nrouting back {took:.2f}s after the master's SIGKILL, the store unreadable")

        u.db.write_bytes(u.good)  # the store answers again: the agent converges and takes new changes
        wait_until(lambda: u.agent().get("store_ok") is True, 30, what="the store read again")
        more = http_backends("more", loopback())
        assert httpx.put(f"{u.api}/services/web/instances/more", json={"address": f"{more.host}:{more.port}"},
                         headers=H).status_code == 201
        wait_until(lambda: u.answers() == {"keep", "more"}, 30, what="a change after the store came back")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, proc.log_tail()
