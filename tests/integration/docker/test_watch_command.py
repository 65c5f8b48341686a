"""`haplane up` watching the Docker daemon named by DOCKER_HOST, and `haplane watch docker --api` pushing to a
real `haplane serve` with a lease: processes, a real dockerd, a real HAProxy."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.procs import Dockerd, Proc, free_port, short_tmpdir, up_args, wait_until

pytestmark = pytest.mark.integration

HAPLANE = [sys.executable, "-m", "haplane"]
TOKEN = "docker-watch-test-token"
H = {"Authorization": f"Bearer {TOKEN}"}


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "HAPLANE_"))}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        full.pop(key, None)
    full.update({"HAPLANE_TOKEN": TOKEN, **(env or {})})
    return Proc([*HAPLANE, *args], log, env=full)


def web(dockerd: Dockerd, image: str, name: str, addr: str, port: int, *extra: str) -> str:
    return dockerd.run("--name", name, "--label", f"haplane.address={addr}", "-e", "SERVICE_NAME=web", "-e",
                       "PREDICATE=web.test", "-e", f"PORT={port}", *extra, image, "sh", "-c",
                       f"echo {name} > /tmp/index.html && exec httpd -f -p {addr}:{port} -h /tmp")


def wait_api(url: str, proc: Proc) -> None:
    proc.wait_answering(url + "/health")


def test_up_watches_the_daemon_named_by_docker_host(tmp_path: Path, dockerd: Dockerd, busybox_image: str,
                                                    loopback: Callable[[], str]) -> None:
    state = short_tmpdir("up-dk")
    api_port, proxy_port, port = free_port(), free_port(), free_port()
    proc = start(up_args("--state-dir", str(state), "--listen", f"127.0.0.1:{api_port}", "--http-port",
                         str(proxy_port), "--http-address", "127.0.0.1"), tmp_path / "up.log",
                 env={"DOCKER_HOST": dockerd.host, "HAPLANE_DOCKER_SOURCE": "docker-up", "HAPLANE_RAMP_MIN": "10",
                      "HAPLANE_DRAIN_TIMEOUT": "0"})
    try:
        wait_api(f"http://127.0.0.1:{api_port}", proc)
        wait_until(lambda: "watching the local Docker daemon" in proc.log.read_text(), 30, what="the watcher")
        addr = loopback()
        web(dockerd, busybox_image, "up-asteroid", addr, port)
        proxy = httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", headers={"Host": "web.test"}, timeout=5)

        def body() -> str:
            try:
                r = proxy.get("/")
            except httpx.TransportError:
                return ""
            return r.text.strip() if r.status_code == 200 else str(r.status_code)

        wait_until(lambda: body() == "up-asteroid", 30, what="the container through up's HAProxy")
        dockerd.cli("stop", "-t", "1", "up-asteroid")
        wait_until(lambda: body() == "503", 30, what="the stopped container gone")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, proc.log_tail()
    finally:
        proc.stop()


def instances(api: str) -> dict[str, dict[str, Any]]:
    try:
        r = httpx.get(f"{api}/services/web/instances", headers=H, timeout=2)
    except httpx.HTTPError:
        return {}
    return {i["id"]: i for i in r.json()} if r.status_code == 200 else {}


def test_watch_pushes_to_a_remote_api_with_a_lease(tmp_path: Path, dockerd: Dockerd, busybox_image: str,
                                                   loopback: Callable[[], str]) -> None:
    state = short_tmpdir("watch-api")
    api_port, port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    serve_args = ["serve", "--state-dir", str(state), "--listen", f"127.0.0.1:{api_port}"]
    serve = start(serve_args, tmp_path / "serve.log")
    watch: Proc | None = None
    try:
        wait_api(api, serve)
        # an operator's service: the containers add their port and predicate, the balance stays
        assert httpx.put(f"{api}/services/web", json={"balance": "leastconn"}, headers=H).status_code == 201
        a, b = loopback(), loopback()
        web(dockerd, busybox_image, "a-asteroid", a, port)
        watch = start(["watch", "docker", "--docker-host", dockerd.host, "--source", "docker-cli", "--api", api,
                       "--ttl", "2", "--state-dir", str(state / "w")], tmp_path / "watch.log")
        wait_until(lambda: set(instances(api)) == {"a-asteroid.cli"}, 30, what="the container through the API")
        inst = instances(api)["a-asteroid.cli"]
        assert (inst["address"], inst["port"], inst["source"]) == (a, port, "docker-cli")
        svc = httpx.get(f"{api}/services/web", headers=H).json()
        assert (svc["balance"], svc["port"], svc["predicate"]) == ("leastconn", port, "web.test")

        # the registry goes away; a container starts meanwhile; the watcher retries and resyncs
        assert serve.stop() == 0
        web(dockerd, busybox_image, "b-asteroid", b, port)
        wait_until(lambda: "pushing to the registry failed" in watch.log.read_text(), 30, what="the failure logged")
        serve = start(serve_args, tmp_path / "serve2.log")
        wait_api(api, serve)
        wait_until(lambda: set(instances(api)) == {"a-asteroid.cli", "b-asteroid.cli"}, 60,
                   what="both containers after the registry came back")
        assert watch.alive()

        dockerd.cli("kill", "a-asteroid")
        wait_until(lambda: set(instances(api)) == {"b-asteroid.cli"}, 30, what="the killed container gone")

        # a dead watcher: its set expires with its lease
        watch.kill()
        wait_until(lambda: instances(api) == {}, 30, what="the dead watcher's instances expired")
    finally:
        if watch is not None:
            watch.stop()
        serve.stop()


def test_watch_stops_cleanly_and_refuses_a_bad_docker_host(tmp_path: Path, dockerd: Dockerd) -> None:
    state = short_tmpdir("watch-st")
    watch = start(["watch", "docker", "--docker-host", dockerd.host, "--source", "docker-st", "--store",
                   f"sqlite:///{state}/h.db"], tmp_path / "watch.log")
    wait_until(lambda: "watching unix://" in watch.log.read_text(), 30, what="the watcher connected")
    assert watch.stop(sig=signal.SIGTERM) == 0, watch.log_tail()
    bad = start(["watch", "docker", "--docker-host", "ssh://somewhere", "--store", f"sqlite:///{state}/h.db"],
                tmp_path / "bad.log")
    assert bad.wait(30) not in (0, None)
    assert "ssh://somewhere" in bad.log.read_text() and "only unix:// and tcp://" in bad.log.read_text()
