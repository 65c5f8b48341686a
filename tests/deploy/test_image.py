"""The container image, built here with the tests' own dockerd (deploy/image/build: debootstrap on a cold cache,
then the wheels and a two-stage docker build), run with host networking on loopback ports: `up` registers a
service through its API and routes a request through the HAProxy inside to a 127.0.0.x backend, and a Docker
container it sees through the read-only socket proxy (DOCKER_HOST=tcp://..., never the socket), its health check
turns healthy, everything in it runs as the unprivileged user, and SIGTERM stops it — HAProxy included — with exit
status 0 and nothing left running; `serve` then reads what `up` wrote into the same state volume.

Slow (a cold build runs debootstrap; every container start copies the image on vfs storage): CI runs it, or
HAPLANE_TEST_SLOW=1. It prints the image's size and the build's time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.deploy.conftest import DEPLOY, slow
from tests.support.procs import Dockerd, MakeHttpBackend, Proc, free_port, wait_until

from haplane import __version__

# a cold build (debootstrap) alone can take minutes on a loaded 2-core machine: past pytest's default 300 s
pytestmark = [pytest.mark.integration, slow, pytest.mark.timeout(1800)]

TAG = "haplane-test/haplane:ci"
TOKEN = "image-admin-token-123"


def refused(addr: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((addr, port)) != 0


def test_the_image_builds_routes_and_stops_cleanly(dockerd: Dockerd, http_backends: MakeHttpBackend,
                                                   loopback: Callable[[], str], unique: str, busybox_image: str,
                                                   haproxy_bin: str, capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    env = {**dockerd.env, "DOCKER": dockerd.docker_bin}
    started = time.monotonic()
    r = subprocess.run([str(DEPLOY / "image" / "build"), "--tag", TAG], capture_output=True, text=True, env=env,
                       timeout=1800, check=False)
    build_s = time.monotonic() - started
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.strip() == TAG
    inspect = json.loads(dockerd.cli("image", "inspect", TAG).stdout)[0]
    size = inspect["Size"]
    steps = [line for line in r.stderr.splitlines()
             if line.startswith(("[build] image", "[rootfs] root", "[rootfs] deb", "[rootfs] cached"))]
    with capsys.disabled():
        print(f"\nimage {TAG}: {size / 1e6:.0f} MB, built in {build_s:.0f}s")
        for line in steps:
            print("  " + line)

    cfg = inspect["Config"]
    assert cfg["User"] == "haplane"
    assert cfg["Entrypoint"] == ["/usr/bin/tini", "--", "/opt/haplane/bin/haplane-entrypoint"]
    assert cfg["Cmd"] == ["up"]
    assert "/var/lib/haplane" in cfg["Volumes"]
    assert cfg["Healthcheck"]["Test"] == ["CMD", "/opt/haplane/bin/haplane-healthcheck"]
    assert cfg["Labels"]["org.opencontainers.image.version"] == __version__
    addr = loopback()
    api, proxy = free_port(addr), free_port(addr)
    backend = http_backends("in-image")
    volume = f"hp-state-{unique}"
    name = f"hp-image-{unique}"
    # Docker seen from inside the container through the read-only socket proxy (deploy/docker-socket-proxy), never
    # through the socket itself
    proxy_bind = f"{loopback()}:{free_port()}"
    socket_proxy = Proc([haproxy_bin, "-W", "-db", "-f", str(DEPLOY / "docker-socket-proxy" / "haproxy.cfg")],
                        tmp_path / "socket-proxy.log",
                        env={**os.environ, "PROXY_BIND": proxy_bind, "DOCKER_SOCKET": str(dockerd.socket)})
    wait_until(lambda: httpx.get(f"http://{proxy_bind}/_ping", timeout=1).text == "OK", 20, what="socket proxy")
    run_started = time.monotonic()
    cid = dockerd.run("--name", name, "-e", f"DOCKER_HOST=tcp://{proxy_bind}", "-e", "HAPLANE_DOCKER_SOURCE=docker-ci",
                      "-v", f"{volume}:/var/lib/haplane", "--health-interval", "2s",
                      "--health-start-period", "30s", "-e", f"HAPLANE_LISTEN={addr}:{api}",
                      "-e", f"HAPLANE_HTTP_PORT={proxy}", "-e", f"HAPLANE_HTTP_ADDRESS={addr}",
                      # HTTPS on a port of its own at this address, not up's *:8443 that overlapping runs share
                      "-e", f"HAPLANE_HTTPS_PORT={free_port(addr)}", "-e", f"HAPLANE_HTTPS_ADDRESS={addr}",
                      "-e", f"HAPLANE_TOKEN={TOKEN}", "-e", "HAPLANE_RAMP_MIN=10", TAG)
    base = f"http://{addr}:{api}"
    h = {"Authorization": f"Bearer {TOKEN}"}

    def logs() -> str:
        return dockerd.cli("logs", cid, check=False).stderr[-40_000:]  # a stop logs a line per proxy (24 pool spares)

    try:
        wait_until(lambda: httpx.get(base + "/health", timeout=1).status_code == 200, 90,
                   what="haplane up in the image")
        assert httpx.get(base + "/health", timeout=5).json() == {"status": "ok"}  # the rest needs a token
        assert httpx.get(base + "/health", headers=h, timeout=5).json()["version"] == __version__
        assert httpx.put(f"{base}/services/web", headers=h, timeout=10,
                         json={"mode": "host", "predicate": "web.image.test", "port": backend.port}).status_code == 201
        assert httpx.put(f"{base}/services/web/instances/i1", headers=h, timeout=10,
                         json={"address": backend.host}).status_code == 201
        wait_until(lambda: httpx.get(f"http://{addr}:{proxy}/", headers={"Host": "web.image.test"}, timeout=1).text
                   == "backend=in-image", 30, what="a request routed through the HAProxy in the image")
        assert backend.hits >= 1
        routed_s = time.monotonic() - run_started
        # a container on this Docker host, found by the watcher inside the image, routed by the HAProxy inside it
        dk_addr, dk_port = loopback(), free_port()
        dockerd.run("--name", f"asteroid-{unique}", "--label", f"haplane.address={dk_addr}", "-e", "SERVICE_NAME=dk",
                    "-e", "PREDICATE=dk.image.test", "-e", f"PORT={dk_port}", busybox_image, "sh", "-c",
                    f"exec httpd -f -p {dk_addr}:{dk_port} -h /www")
        wait_until(lambda: httpx.get(f"http://{addr}:{proxy}/", headers={"Host": "dk.image.test"}, timeout=1).text
                   == "busybox image\n", 60, what="a Docker container routed by the image (watched via the proxy)")
        out = dockerd.cli("exec", cid, "sh", "-c",
                          "id -u; haplane --version; haproxy -v | head -1; haplane agent --help >/dev/null && "
                          "haplane watch docker --help >/dev/null && echo commands-ok").stdout.splitlines()
        assert out[0] == "10001" and out[1] == f"haplane {__version__}"
        assert out[2].startswith("HAProxy version 2.6.") and out[3] == "commands-ok", out

        def health() -> str:
            out = dockerd.cli("inspect", "--format", "{{json .State.Health}}", cid).stdout
            return str(json.loads(out)["Status"])

        wait_until(lambda: health() == "healthy", 60, interval=0.5, what="docker's health status 'healthy'")
        hc = dockerd.cli("exec", cid, "haplane-healthcheck").stdout.strip()
        assert hc == f"healthy: http://{addr}:{api}/health: 200 ok"
        top = dockerd.cli("top", cid, "-o", "pid,uid,args").stdout.splitlines()[1:]
        assert any("haproxy" in line for line in top) and any("haplane up" in line for line in top), top
        assert all(line.split()[1] == "10001" for line in top), top

        stop_started = time.monotonic()
        dockerd.cli("kill", "--signal", "TERM", cid)
        code = dockerd.cli("wait", cid, timeout=60).stdout.strip()
        stop_s = time.monotonic() - stop_started
        with capsys.disabled():
            print(f"  docker run -> request routed through the image's HAProxy: {routed_s:.1f}s "
                  f"(container creation on vfs storage included)")
            print(f"  SIGTERM -> container exited {code} in {stop_s:.2f}s")
        assert code == "0", logs()
        text = logs()
        assert "HAProxy stopped" in text and "haplane up: stopping" in text, text
        state = json.loads(dockerd.cli("inspect", "--format", "{{json .State}}", cid).stdout)
        assert state["Running"] is False and state["OOMKilled"] is False and state["ExitCode"] == 0
        assert refused(addr, proxy) and refused(addr, api), "a listener outlived the container"
        leftovers = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
                     and b"/var/lib/haplane" in _cmdline(p)]
        assert not leftovers, f"processes of the container still run: {leftovers}"
    finally:
        dockerd.cli("rm", "-f", cid, check=False)
        socket_proxy.stop()

    # the state volume kept what `up` wrote: `serve` (the same image) reads it
    cid = dockerd.run("--rm", "-v", f"{volume}:/var/lib/haplane", "-e", f"HAPLANE_LISTEN={addr}:{api}",
                      "-e", f"HAPLANE_TOKEN={TOKEN}", TAG, "serve")
    try:
        wait_until(lambda: httpx.get(base + "/health", timeout=1).status_code == 200, 90, what="serve in the image")
        svc = httpx.get(f"{base}/services/web", headers=h, timeout=5).json()
        assert svc["predicate"] == "web.image.test"
        dockerd.cli("kill", "--signal", "TERM", cid)
        wait_until(lambda: refused(addr, api), 30, what="serve stopped")
    finally:
        dockerd.cli("rm", "-f", cid, check=False)
        dockerd.cli("volume", "rm", "-f", volume, check=False)


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""


def test_the_build_refuses_clearly_without_a_docker_engine(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER")}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/nothing.sock"
    r = subprocess.run([str(DEPLOY / "image" / "build")], capture_output=True, text=True, env=env, timeout=60,
                       check=False)
    assert r.returncode == 1 and "no Docker engine answers" in r.stderr, r.stderr
