"""deploy/docker-socket-proxy/haproxy.cfg: a real HAProxy in front of a real dockerd's socket passes the watcher's
reads and refuses everything else, and `haplane watch docker` through it (DOCKER_HOST=tcp://...) turns a
container into an instance."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.deploy.conftest import DEPLOY
from tests.support.procs import Dockerd, Proc, free_port, short_tmpdir, wait_until

from haplane.registry import RegistryStore
from haplane.store import open_store

CONFIG = DEPLOY / "docker-socket-proxy" / "haproxy.cfg"


def test_the_socket_proxy_passes_reads_only_and_the_watcher_works_through_it(
        haproxy_bin: str, dockerd: Dockerd, busybox_image: str, loopback: Callable[[], str], tmp_path: Path) -> None:
    bind = f"{loopback()}:{free_port()}"
    env = {**os.environ, "PROXY_BIND": bind, "DOCKER_SOCKET": str(dockerd.socket)}
    check = Proc([haproxy_bin, "-c", "-f", str(CONFIG)], tmp_path / "check.log", env=env)
    assert check.wait(30) == 0, check.log_tail()
    proxy = Proc([haproxy_bin, "-W", "-db", "-f", str(CONFIG)], tmp_path / "proxy.log", env=env)
    base = f"http://{bind}"
    try:
        wait_until(lambda: httpx.get(base + "/_ping", timeout=1).text == "OK", 20, what="the socket proxy")
        with httpx.Client(base_url=base, timeout=5, trust_env=False) as c:
            assert c.get("/v1.41/version").status_code == 200
            assert c.get("/containers/json", params={"all": "1"}).status_code == 200
            assert c.get("/v1.41/containers/json").status_code == 200
            # writes and other reads are refused, and never reach the daemon
            created = c.post("/v1.41/containers/create", json={"Image": busybox_image, "Cmd": ["true"]})
            assert created.status_code == 403
            assert c.post("/containers/prune").status_code == 403
            assert c.delete("/v1.41/containers/anything").status_code == 403
            assert c.get("/images/json").status_code == 403
            assert c.get("/containers/x/logs").status_code == 403
            assert c.get("/v1.41/containers/x/archive", params={"path": "/"}).status_code == 403
            assert c.get("/containers/json/../../images/json").status_code == 403
        assert dockerd.cli("ps", "-aq").stdout.strip() == "", "a refused create reached the daemon"

        addr, port = loopback(), free_port()
        dockerd.run("--name", "asteroid-web", "--label", f"haplane.address={addr}", "-e", "SERVICE_NAME=web",
                    "-e", "PREDICATE=web.test", "-e", f"PORT={port}", busybox_image, "sh", "-c",
                    f"exec httpd -f -p {addr}:{port} -h /www")
        state = short_tmpdir("sp")
        wenv = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "HAPLANE_"))}
        wenv["DOCKER_HOST"] = f"tcp://{bind}"
        watcher = Proc([sys.executable, "-m", "haplane", "watch", "docker", "--state-dir", str(state),
                        "--source", "docker-proxied"], tmp_path / "watch.log", env=wenv)

        async def web_instances() -> set[tuple[str, int]]:
            store = open_store(f"sqlite:///{state / 'haplane.db'}")
            try:
                snap = await RegistryStore(store).snapshot()
            finally:
                await store.close()
            return {(i.address, i.port) for i in snap.instances if i.service == "web"}

        def registered() -> bool:
            assert watcher.alive(), watcher.log_tail()
            return (state / "haplane.db").exists() and asyncio.run(web_instances()) == {(addr, port)}

        wait_until(registered, 30, what="the container as an instance, seen through the proxy")
        assert watcher.stop() == 0, watcher.log_tail()
    finally:
        proxy.stop()
