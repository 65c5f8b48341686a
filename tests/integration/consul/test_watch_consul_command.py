"""`haplane watch consul` as a process against the Consul stand-in (no real Consul), into a SQLite store; a
clean stop on SIGTERM; a missing service is a clear error."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from tests.support.procs import Proc, wait_until

from haplane.registry import RegistryStore
from haplane.store import open_store
from haplane.testing_consul import ConsulStandIn

pytestmark = pytest.mark.integration


def members(store_url: str) -> dict[str, str | None]:
    async def read() -> dict[str, str | None]:
        store = open_store(store_url)
        try:
            return {i.id: i.version for i, _ in await RegistryStore(store).list_instances("api")}
        finally:
            await store.close()
    return asyncio.run(read())


def test_watch_consul_follows_the_catalog(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "HAPLANE_"))}
    store = f"sqlite:///{tmp_path}/h.db"
    with ConsulStandIn() as consul:
        consul.register("api", "127.0.0.61", 8080, service_id="a1", meta={"version": "3.0"})
        proc = Proc([sys.executable, "-m", "haplane", "watch", "consul", "--service", "api", "--consul",
                     consul.address, "--version-from", "meta", "--store", store], tmp_path / "watch.log", env=env)
        try:
            wait_until(lambda: members(store) == {"node1-a1": "3.0"}, 30, interval=0.2, what="a1")
            consul.register("api", "127.0.0.62", 8080, service_id="a2", meta={"version": "3.1"})
            wait_until(lambda: members(store) == {"node1-a1": "3.0", "node1-a2": "3.1"}, 30, interval=0.2,
                       what="a2")
            consul.deregister("a1")
            wait_until(lambda: members(store) == {"node1-a2": "3.1"}, 30, interval=0.2, what="a1 gone")
        finally:
            rc = proc.stop(sig=signal.SIGTERM)
        assert rc == 0, proc.log_tail()
    bad = Proc([sys.executable, "-m", "haplane", "watch", "consul", "--store", store], tmp_path / "bad.log", env=env)
    assert bad.wait(30) not in (0, None)
    assert "no service given" in bad.log.read_text()
