"""The real-process fixtures work: HTTP backends, etcd clusters (v3 JSON gateway), dockerd with busybox."""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from support.procs import (
    Dockerd,
    EtcdCluster,
    MakeEtcdCluster,
    MakeHttpBackend,
    Proc,
    free_port,
    up_args,
    wait_until,
)

pytestmark = pytest.mark.integration


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _client() -> httpx.Client:
    return httpx.Client(timeout=5, trust_env=False)


def test_loopback_addresses_are_distinct(loopback: Callable[[], str]) -> None:
    addrs = [loopback() for _ in range(20)]
    assert len(set(addrs)) == 20
    assert all(a.startswith("127.0.0.") for a in addrs)


def test_http_backend_answers_keeps_alive_and_stops(http_backends: MakeHttpBackend) -> None:
    a = http_backends("alpha")
    b = http_backends("beta")
    assert a.host != b.host
    with _client() as c:
        r1 = c.get(a.url + "/anything")
        r2 = c.get(a.url + "/")
        assert (r1.status_code, r1.text, r1.headers["x-backend"]) == (200, "backend=alpha", "alpha")
        assert r2.text == "backend=alpha"
        assert c.get(b.url).text == "backend=beta"
        assert c.get(a.url + "/health").status_code == 200
        a.healthy = False
        assert c.get(a.url + "/health").status_code == 503
    assert (a.hits, a.health_hits) == (2, 2)
    a.stop()
    with _client() as c, pytest.raises(httpx.ConnectError):
        c.get(a.url)
    a.start()  # same port again
    with _client() as c:
        assert c.get(a.url).text == "backend=alpha"


def test_http_backend_keeps_one_connection() -> None:
    from support.procs import http_backend

    with http_backend("127.0.0.1", free_port(), "solo") as b, _client() as c:
        for _ in range(3):
            c.get(b.url)
        r = c.get(b.url)
        assert r.headers.get("connection", "keep-alive").lower() != "close"
        assert b.hits == 4


async def test_http_backend_from_async_code(http_backends: MakeHttpBackend) -> None:
    b = http_backends("gamma")
    async with httpx.AsyncClient(timeout=5, trust_env=False) as c:
        assert (await c.get(b.url)).text == "backend=gamma"


def test_etcd_cluster_put_on_one_member_get_on_another(etcd_cluster: EtcdCluster, unique: str) -> None:
    assert len(etcd_cluster.endpoints) == 3
    key, value = f"/smoke/{unique}/k", "v1"
    with _client() as c:
        put = c.post(etcd_cluster.endpoints[0] + "/v3/kv/put", json={"key": _b64(key), "value": _b64(value)})
        assert put.status_code == 200, put.text
        got = c.post(etcd_cluster.endpoints[2] + "/v3/kv/range", json={"key": _b64(key)})
        assert got.status_code == 200, got.text
        kvs = got.json()["kvs"]
    assert base64.b64decode(kvs[0]["value"]).decode() == value
    assert etcd_cluster.leader() is not None


def test_etcd_single_member(etcd_single: EtcdCluster, unique: str) -> None:
    etcd_single.put(f"/smoke/{unique}", "one")
    assert etcd_single.get(f"/smoke/{unique}") == "one"
    assert etcd_single.leader() == 0


def test_killing_the_etcd_leader_leaves_the_cluster_writable(make_etcd_cluster: MakeEtcdCluster) -> None:
    cluster = make_etcd_cluster(3)
    cluster.put("/k", "before")
    old = cluster.wait_leader()
    cluster.kill(old)
    new = cluster.wait_leader(not_=old)
    assert new != old
    survivor = next(i for i in range(3) if i not in (old, new))
    cluster.put("/k", "after", member=survivor)
    assert cluster.get("/k", member=new) == "after"
    cluster.restart(old)
    assert cluster.get("/k", member=old) == "after"


def _serves(url: str, body: str) -> Callable[[], bool]:
    def check() -> bool:
        with _client() as c:
            r = c.get(url, timeout=1)
            return r.status_code == 200 and body in r.text

    return check


def test_dockerd_runs_busybox_with_host_network(dockerd: Dockerd, busybox_image: str, loopback: Callable[[], str],
                                                unique: str) -> None:
    addr = loopback()
    port = free_port(addr)
    name = f"x-asteroid-{unique}"
    cid = dockerd.run("--name", name, busybox_image, "httpd", "-f", "-p", f"{addr}:{port}", "-h", "/www")
    assert cid
    wait_until(_serves(f"http://{addr}:{port}/", "busybox image"), 10, what="busybox httpd in a container")
    with dockerd.api() as api:
        info = api.get(f"/containers/{name}/json").json()
    assert info["State"]["Running"] is True
    assert info["HostConfig"]["NetworkMode"] == "host"


def test_dockerd_restart_keeps_containers_with_a_restart_policy(dockerd: Dockerd, busybox_image: str,
                                                                loopback: Callable[[], str], unique: str) -> None:
    addr = loopback()
    port = free_port(addr)
    url = f"http://{addr}:{port}/"
    dockerd.run("--name", f"web-{unique}", "--restart", "always", busybox_image,
                "sh", "-c", f"echo hi-{unique} > /tmp/index.html && exec httpd -f -p {addr}:{port} -h /tmp")
    wait_until(_serves(url, f"hi-{unique}"), 10, what="container before restart")
    starts = dockerd.starts
    dockerd.restart()
    assert dockerd.starts == starts + 1 and dockerd.ping()
    wait_until(_serves(url, f"hi-{unique}"), 15, what="container after a graceful daemon restart")
    dockerd.restart(kill=True)
    wait_until(_serves(url, f"hi-{unique}"), 15, what="container after a daemon crash and restart")
    assert dockerd.cli("ps", "-q", "--filter", f"name=web-{unique}").stdout.strip()


def test_proc_refuses_a_haplane_up_that_would_bind_the_default_https(tmp_path: Path) -> None:
    """`up` binds HTTPS on *:8443 unless told: overlapping test runs would collide there, so a test must say."""
    env = {k: v for k, v in os.environ.items() if k != "HAPLANE_HTTPS_PORT"}
    for argv in ([sys.executable, "-m", "haplane", "up", "--no-docker"],
                 ["/usr/bin/prlimit", "--", "/venv/bin/haplane", "--log-format", "json", "up"]):
        with pytest.raises(ValueError, match="up_args"):
            Proc(argv, tmp_path / "never.log", env=env)
    assert up_args("--no-docker") == ["up", "--https-port", "0", "--no-docker"]
    assert up_args(https_port=4443) == ["up", "--https-port", "4443", "--https-address", "127.0.0.1"]
    # told through the environment, or not `up` at all: started as asked
    p = Proc([sys.executable, "-m", "haplane", "up", "--help"], tmp_path / "help.log",
             env={**env, "HAPLANE_HTTPS_PORT": "0"})
    assert p.wait(60) == 0
