"""Many nodes on etcd: write → routable on every node, registrations/s through the API, next to etcd's own
put latency as the floor.

A real 3-member etcd cluster on loopback (Debian's etcd), three agents each driving its own real HAProxy,
backends on 127.0.0.x. For each round one store write (an instance moving to the other of two backends) is timed until
every one of the three HAProxies answers from the new backend (HTTP requests through each).
Then a `haplane serve` process on the same cluster takes PUTs of new
instances from 10 concurrent clients. The floor: a bare etcd put (`/v3/kv/put` on the leader's gateway).

    python bench/bench_etcd.py            # 200 rounds, 5 s of registrations
    python bench/bench_etcd.py --quick    # 10 rounds, 1 s
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.agent.conftest import agent_rig
from tests.support.procs import EtcdCluster, free_port, http_backend, next_loopback

from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.store import open_store

TOKEN = "bench-etcd-admin-token"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000 if values else 0.0


async def bench(rounds: int, seconds: float) -> None:
    cluster = EtcdCluster(3).start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
    url = f"etcd://{','.join(cluster.hostports)}/b{uuid.uuid4().hex[:8]}"
    backends = [http_backend(next_loopback(), name=f"b{i}").start() for i in range(2)]
    try:
        store = open_store(url)
        reg = RegistryStore(store)
        await reg.put_service(Service("web", "host", "web.test", port=backends[0].port))
        async with contextlib.AsyncExitStack() as stack:
            rigs = [await stack.enter_async_context(agent_rig(tmp / n, store=url, node=n)) for n in "abc"]

            async def on(rig_i: int, name: str) -> None:
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        # one keep-alive client per node: it must follow the move too (a move takes a new slot)
                        r = await rigs[rig_i].get("web.test")
                        if r.text == f"backend={name}":
                            return

            lat: list[float] = []
            for i in range(rounds + 1):
                b = backends[i % 2]
                t0 = time.perf_counter()
                # one instance moving between two backends: a new slot each time (runtime commands, no reload)
                await reg.replace_source("bench", [Instance("moving", "web", b.host, b.port)])
                await asyncio.gather(*(on(k, b.name) for k in range(3)))
                if i:
                    lat.append(time.perf_counter() - t0)
            await store.close()
        # the floor: a bare put on the leader
        leader = cluster.endpoints[cluster.wait_leader()]
        floor = []
        with httpx.Client(trust_env=False) as c:
            for i in range(200):
                t0 = time.perf_counter()
                c.post(leader + "/v3/kv/put", json={"key": base64.b64encode(f"/floor/{i}".encode()).decode(),
                                                   "value": "eA=="}).raise_for_status()
                floor.append(time.perf_counter() - t0)
        # registrations through the API on etcd
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "haplane", "--log-level", "warning", "serve", "--store", url,
                                 "--state-dir", str(tmp / "serve"), "--listen", f"127.0.0.1:{port}"],
                                env={**os.environ, "HAPLANE_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        api = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(api + "/health", timeout=1, trust_env=False).status_code == 200:
                        break
                time.sleep(0.05)
            done = 0
            deadline = time.perf_counter() + seconds

            async def client(n: int) -> None:
                nonlocal done
                transport = httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
                async with httpx.AsyncClient(base_url=api, transport=transport, timeout=30,
                                             headers={"Authorization": f"Bearer {TOKEN}"}) as c:
                    j = 0
                    while time.perf_counter() < deadline:
                        j += 1
                        r = await c.put(f"/services/web/instances/r{n}-{j}",
                                        json={"address": f"127.0.{n + 1}.{j % 250 + 1}"})
                        r.raise_for_status()
                        done += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(client(n) for n in range(10)))
            rate = done / (time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait(10)
        print("etcd: 3 members on loopback; 3 agents, each with its own HAProxy")
        print(f"  write -> routable on all 3 nodes  p50 {pct(lat, .5):7.1f} ms  p99 {pct(lat, .99):7.1f} ms  "
              f"(n={len(lat)})")
        print(f"  floor: bare etcd put (leader)     p50 {pct(floor, .5):7.1f} ms  p99 {pct(floor, .99):7.1f} ms")
        print(f"  registrations through haplane serve on etcd, 10 clients: {rate:.0f}/s "
              f"(floor: 1 / bare put p50 = {1 / (pct(floor, .5) / 1000):.0f}/s per sequential writer)")
    finally:
        for b in backends:
            b.stop()
        cluster.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    asyncio.run(bench(10 if args.quick else args.rounds, 1.0 if args.quick else args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
