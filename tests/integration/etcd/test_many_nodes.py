"""Many HAProxy nodes, one truth: a real 3-member etcd cluster, three agents each driving its own real
HAProxy, two `haplane serve` processes taking writes. They converge on the same model; the etcd leader dying
stops nothing; an agent cut off from etcd keeps routing and catches up; a dead watcher's lease expiry removes
its instances from every HAProxy. Also: leader election moves singleton work when its node dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.agent.conftest import Rig, agent_rig
from tests.support.procs import EtcdCluster, MakeEtcdCluster, MakeHttpBackend, Proc, free_port

from haplane.agent.nodes import read_nodes
from haplane.election import Election
from haplane.store import open_store

pytestmark = pytest.mark.integration

TOKEN = "many-nodes-admin-token"


class Forwarder:
    """A TCP forwarder on loopback that can cut every connection (an agent's network to etcd)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()


def serve(cluster_url: str, tmp: Path, name: str) -> tuple[Proc, str]:
    port = free_port()
    env = {**os.environ, "HAPLANE_TOKEN": TOKEN}
    proc = Proc([sys.executable, "-m", "haplane", "serve", "--store", cluster_url, "--state-dir", str(tmp / name),
                 "--listen", f"127.0.0.1:{port}"], tmp / f"{name}.log", env=env)
    url = f"http://127.0.0.1:{port}"
    proc.wait_answering(url + "/health")
    return proc, url


async def answers(rig: Rig, n: int = 12) -> set[str]:
    seen = set()
    for _ in range(n):
        with contextlib.suppress(httpx.HTTPError):
            r = await rig.get("web.test")
            if r.status_code == 200:
                seen.add(r.text)
    return seen


async def until(pred: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what}")
        await asyncio.sleep(0.1)


async def test_three_agents_on_etcd(tmp_path: Path, make_etcd_cluster: MakeEtcdCluster,
                                    http_backends: MakeHttpBackend, loopback: Callable[[], str]) -> None:
    cluster: EtcdCluster = make_etcd_cluster(3)
    prefix = f"/hp{uuid.uuid4().hex[:8]}"
    url = f"etcd://{','.join(cluster.hostports)}{prefix}"
    forwarders = [Forwarder(int(hp.rpartition(':')[2])) for hp in cluster.hostports]
    for f in forwarders:
        await f.start()
    cut_url = f"etcd://{','.join(f'127.0.0.1:{f.port}' for f in forwarders)}{prefix}"
    s1, api1 = serve(url, tmp_path, "serve1")
    s2, api2 = serve(url, tmp_path, "serve2")
    h = {"Authorization": f"Bearer {TOKEN}"}
    b = [http_backends(f"b{i}", loopback()) for i in range(5)]
    store = open_store(url)
    try:
        async with contextlib.AsyncExitStack() as stack:
            rigs = [await stack.enter_async_context(agent_rig(tmp_path / n, store=u, node=n))
                    for n, u in (("a", url), ("b", url), ("c", cut_url))]

            async def everywhere(expected: set[str]) -> bool:
                return all([await answers(r) == expected for r in rigs])

            # writes through two different API processes
            assert httpx.put(f"{api1}/services/web", json={"predicate": "web.test", "port": b[0].port},
                             headers=h).status_code == 201
            assert httpx.put(f"{api2}/services/web/instances/i0", json={"address": f"{b[0].host}:{b[0].port}"},
                             headers=h).status_code == 201
            await until(lambda: everywhere({"backend=b0"}), 30, "all three nodes route to i0")

            async def converged() -> bool:
                nodes = await read_nodes(store)
                return (len(nodes) == 3 and len({n["model_hash"] for n in nodes}) == 1
                        and all(n["idle"] and n["lag"] == 0 and n["store_ok"] for n in nodes))

            await until(converged, 20, "the three nodes report the same model hash, no lag")
            nodes = await read_nodes(store)
            assert [n["node"] for n in nodes] == ["a", "b", "c"]

            # the etcd leader dies: writes and convergence go on
            cluster.kill(cluster.wait_leader())
            r = httpx.put(f"{api1}/services/web/instances/i1", json={"address": f"{b[1].host}:{b[1].port}"},
                          headers=h, timeout=20)
            assert r.status_code == 201, r.text
            await until(lambda: everywhere({"backend=b0", "backend=b1"}), 30, "i1 routed after the leader died")

            # node c is cut off from etcd: it keeps routing what it had, and catches up when it is back
            for f in forwarders:
                await f.cut()
            await until(lambda: not rigs[2].bundle.agent.status.store_ok, 20, "node c sees the store gone")
            assert httpx.put(f"{api2}/services/web/instances/i2", json={"address": f"{b[2].host}:{b[2].port}"},
                             headers=h, timeout=20).status_code == 201
            want = {"backend=b0", "backend=b1", "backend=b2"}
            await until(lambda: _all(rigs[:2], want), 30, "a and b route to i2")
            assert await answers(rigs[2]) == {"backend=b0", "backend=b1"}, "c serves its last good state"
            for f in forwarders:
                await f.start()
            await until(lambda: everywhere(want), 40, "c caught up after reconnecting")

            # a watcher's set with a lease: when the watcher stops renewing, every HAProxy forgets it
            r = httpx.put(f"{api1}/sources/dead-watcher/instances", headers=h, timeout=20, json={
                "ttl": 2, "instances": [{"service": "web", "id": "w1", "address": f"{b[3].host}:{b[3].port}"}]})
            assert r.status_code == 200, r.text
            await until(lambda: everywhere(want | {"backend=b3"}), 30, "the watcher's instance routed")
            await until(lambda: everywhere(want), 30, "its lease expired: gone from every HAProxy")
            # membership never reloaded: one reload each at most (the service's creation)
            assert all([await r.reloads() <= 2 for r in rigs])
    finally:
        for f in forwarders:
            await f.cut()
        await store.close()
        s1.stop()
        s2.stop()


async def _all(rigs: list[Rig], expected: set[str]) -> bool:
    return all([await answers(r) == expected for r in rigs])


async def test_election_moves_singleton_work_when_the_leader_dies(etcd_cluster: EtcdCluster) -> None:
    url = f"etcd://{','.join(etcd_cluster.hostports)}/el{uuid.uuid4().hex[:8]}"
    stores = [open_store(url) for _ in range(3)]
    running: list[str] = []
    elections = [Election(s, "aws-poller", f"node{i}", ttl=2) for i, s in enumerate(stores)]

    def work_of(node: str) -> Callable[[], Any]:
        async def work() -> None:
            running.append(node)
            try:
                await asyncio.sleep(3600)
            finally:
                running.remove(node)
        return work

    tasks = [asyncio.create_task(e.run(work_of(e.node))) for e in elections]
    try:
        await until(lambda: len(running) == 1, 15, "one leader")
        await asyncio.sleep(1.0)
        assert len(running) == 1, "never two at once"
        first = running[0]
        assert await elections[0].leader() == first
        # the leader's node dies: its process stops without resigning (no keepalive, no revoke)
        i = int(first.removeprefix("node"))
        tasks[i].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[i]
        await until(lambda: len(running) == 1 and running[0] != first, 15, "another node takes over")
        assert await elections[0].leader() == running[0]
        # a clean resignation hands over at once
        j = int(running[0].removeprefix("node"))
        second = running[0]
        tasks[j].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[j]
        await elections[j].resign()
        await until(lambda: len(running) == 1 and running[0] not in (first, second), 5, "the last one takes over")
    finally:
        for t in tasks:
            t.cancel()
        for s in stores:
            await s.close()
