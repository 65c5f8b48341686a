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
    bad = Proc([sys.executable, "-m", "haplane", "watch", "consul", "--service", "api", "--tag", "x", "--store",
                store], tmp_path / "bad.log", env=env)
    assert bad.wait(30) not in (0, None)
    assert "--tag follows many services" in bad.log.read_text()


def test_one_watch_consul_follows_every_service_the_dynamic_backends_name(tmp_path: Path) -> None:
    """No --service: the services the store's dynamic backends name, each in its own set; a backend added
    while it runs is followed too."""
    from haplane.model.records import BackendSpec

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "HAPLANE_"))}
    store = f"sqlite:///{tmp_path}/h.db"

    def put_backend(spec: BackendSpec) -> None:
        async def put() -> None:
            st = open_store(store)
            try:
                await RegistryStore(st).put_backend(spec)
            finally:
                await st.close()
        asyncio.run(put())

    def services() -> dict[str, set[str]]:
        async def read() -> dict[str, set[str]]:
            st = open_store(store)
            try:
                out: dict[str, set[str]] = {}
                for i, _ in await RegistryStore(st).list_instances():
                    out.setdefault(i.service, set()).add(f"{i.source}:{i.id}")
                return out
            finally:
                await st.close()
        return asyncio.run(read())

    put_backend(BackendSpec("api-live", "dynamic", "api", "1"))
    with ConsulStandIn() as consul:
        consul.register("api", "127.0.0.71", 8080, service_id="a1", tags=["version=1"])
        consul.register("jobs", "127.0.0.72", 8080, service_id="j1", tags=["version=1"])
        proc = Proc([sys.executable, "-m", "haplane", "watch", "consul", "--consul", consul.address, "--interval",
                     "0.2", "--store", store], tmp_path / "watch.log", env=env)
        try:
            wait_until(lambda: services() == {"api": {"consul-api:node1-a1"}}, 30, interval=0.2, what="api")
            put_backend(BackendSpec("jobs", "dynamic", "jobs", "1"))
            wait_until(lambda: services() == {"api": {"consul-api:node1-a1"}, "jobs": {"consul-jobs:node1-j1"}},
                       30, interval=0.2, what="jobs followed without a restart")
        finally:
            rc = proc.stop(sig=signal.SIGTERM)
        assert rc == 0, proc.log_tail()


def test_define_is_checked_before_anything_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "HAPLANE_"))}
    bad = Proc([sys.executable, "-m", "haplane", "watch", "consul", "--service", "api", "--consul",
                "http://127.0.0.1:9", "--define", "mode=udp", "--store", f"sqlite:///{tmp_path}/h.db"],
               tmp_path / "bad.log", env=env)
    assert bad.wait(30) == 1
    last = bad.log.read_text().strip().splitlines()[-1]
    assert last == "haplane watch: service api.mode: 'udp' must be one of: host, path"


def test_define_defines_the_watchers_service(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "HAPLANE_"))}
    store = f"sqlite:///{tmp_path}/h.db"

    def defined() -> tuple[str, str | None] | None:
        async def read() -> tuple[str, str | None] | None:
            st = open_store(store)
            try:
                svc = [s for s, _ in await RegistryStore(st).list_services() if s.name == "shop"]
                return (svc[0].mode, svc[0].predicate) if svc else None
            finally:
                await st.close()
        return asyncio.run(read())

    with ConsulStandIn() as consul:
        consul.register("shop", "127.0.0.73", 8080, service_id="s1")
        proc = Proc([sys.executable, "-m", "haplane", "watch", "consul", "--service", "shop", "--consul",
                     consul.address, "--define", "mode=host,predicate=shop.example.com", "--store", store],
                    tmp_path / "watch.log", env=env)
        try:
            wait_until(lambda: defined() == ("host", "shop.example.com"), 30, interval=0.2, what="shop defined")
        finally:
            rc = proc.stop(sig=signal.SIGTERM)
        assert rc == 0, proc.log_tail()
