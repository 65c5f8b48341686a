"""Many nodes on etcd: write → routable on every node, registrations/s through the API, next to etcd's own
put latency as the floor.

A real 3-member etcd cluster on loopback (Debian's etcd), three agents each driving its own real HAProxy,
backends on 127.0.0.x. For each round one store write (an instance moving to the other of two backends) is timed
until every one of the three HAProxies answers from the new backend (a new client connection each try, 1 ms
apart). The agents run as `haplane agent` processes, as in production; each round is split into where its time
went: the write itself, the agents' own step (store event → runtime commands applied, from each agent's
activity log) and HAProxy's side (applied → the first answer from the new backend). ``--in-process`` runs the
three agents inside this process instead (the way this bench used to: the agents, the probes and the
backends' threads then share one interpreter, which adds its own waiting).
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
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.agent.conftest import HAPROXY, agent_rig
from tests.support.procs import EtcdCluster, Proc, free_port, http_backend, next_loopback

from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.store import open_store

TOKEN = "bench-etcd-admin-token"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000 if values else 0.0


AGENT_ENV = {"HAPLANE_RAMP_INTERVAL": "0", "HAPLANE_DRAIN_TIMEOUT": "0", "HAPLANE_RELOAD_INTERVAL": "0.2",
             "HAPLANE_RESYNC_INTERVAL": "3600"}


def applied_at(state_dir: Path, subject: str, after: float) -> float | None:
    """When this agent's activity log first shows a change of ``subject`` after ``after`` (wall clock)."""
    path = state_dir / "events.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        with contextlib.suppress(ValueError, KeyError):
            rec = json.loads(line)
            t = float(rec.get("time") or rec.get("t") or rec.get("ts") or 0)
            if t > after and subject in str(rec.get("subject", "")):
                return t
    return None


async def probe_until(c: httpx.AsyncClient, url: str, name: str) -> float:
    """Wall-clock time of the first answer from backend ``name`` through ``url`` (``c`` keeps no connection
    alive: a new one each try, as a new client would open)."""
    seen: dict[str, int] = {}
    while True:
        try:
            r = await c.get(url, headers={"Host": "web.test"})
            if r.text == f"backend={name}":
                if os.environ.get("BENCH_DEBUG"):
                    print("   probe saw", seen)
                return time.time()
            seen[f"{r.status_code} {r.text[:20]}"] = seen.get(f"{r.status_code} {r.text[:20]}", 0) + 1
        except httpx.HTTPError as exc:
            seen[type(exc).__name__] = seen.get(type(exc).__name__, 0) + 1
        await asyncio.sleep(0.001)


async def moves_with_agent_processes(url: str, rounds: int, tmp: Path, backends: list[Any]
                                     ) -> tuple[list[float], list[float], list[float], list[float]]:
    """(write → routable on all 3, write alone, write → applied by the slowest agent, applied → answered)."""
    store = open_store(url)
    reg = RegistryStore(store)
    agents = []
    ports = []
    # made once: an httpx client builds a TLS context when made, tens of ms of this process's time per round
    probe = httpx.AsyncClient(trust_env=False, timeout=2, limits=httpx.Limits(max_keepalive_connections=0))
    try:
        await reg.put_service(Service("web", "host", "web.test", port=backends[0].port))
        for n in "abc":
            port = free_port()
            ports.append(port)
            state = tmp / f"agent-{n}"
            agents.append((state, Proc([sys.executable, "-m", "haplane", "--log-level", "warning", "agent", "--store",
                                        url, "--state-dir", str(state), "--http-port", str(port),
                                        "--http-address", "127.0.0.1", "--haproxy-bin", HAPROXY],
                                       tmp / f"agent-{n}.log", env={**os.environ, **AGENT_ENV, "HAPLANE_NODE": n})))
        await reg.replace_source("bench", [Instance("moving", "web", backends[1].host, backends[1].port)])
        await asyncio.wait_for(asyncio.gather(*(probe_until(probe, f"http://127.0.0.1:{p}/", backends[1].name)
                                                for p in ports)), 60)
        total: list[float] = []
        writes: list[float] = []
        agent_step: list[float] = []
        haproxy_side: list[float] = []
        for i in range(rounds):
            b = backends[i % 2]
            t0 = time.time()
            await reg.replace_source("bench", [Instance("moving", "web", b.host, b.port)])
            t_written = time.time()
            seen = await asyncio.gather(*(probe_until(probe, f"http://127.0.0.1:{p}/", b.name) for p in ports))
            total.append(max(seen) - t0)
            writes.append(t_written - t0)
            applied = [applied_at(state, "web", t0) for state, _ in agents]
            if os.environ.get("BENCH_DEBUG"):
                print(f"round {i}: written +{(t_written - t0) * 1000:.1f} ms, applied "
                      + ", ".join(f"+{(a - t0) * 1000:.1f}" if a else "?" for a in applied)
                      + " ms, answered " + ", ".join(f"+{(x - t0) * 1000:.1f}" for x in seen) + " ms")
            if all(a is not None for a in applied):
                agent_step.append(max(a for a in applied if a is not None) - t_written)
                haproxy_side.append(max(s - a for s, a in zip(seen, applied, strict=True) if a is not None))
        return total, writes, agent_step, haproxy_side
    finally:
        await probe.aclose()
        for _, proc in agents:
            proc.stop()
        await store.close()


async def moves_in_process(url: str, rounds: int, tmp: Path, backends: list[Any]) -> list[float]:
    """The agents inside this process, probed with one keep-alive client per node (the bench's old way)."""
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
    return lat


async def bench(rounds: int, seconds: float, in_process: bool = False) -> None:
    cluster = EtcdCluster(3).start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
    url = f"etcd://{','.join(cluster.hostports)}/b{uuid.uuid4().hex[:8]}"
    backends = [http_backend(next_loopback(), name=f"b{i}").start() for i in range(2)]
    try:
        if not in_process:
            total, writes, agent_step, haproxy_side = await moves_with_agent_processes(url, rounds, tmp, backends)
            print("etcd: 3 members on loopback; 3 `haplane agent` processes, each with its own HAProxy; "
                  f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
            print(f"  write -> routable on all 3 nodes  p50 {pct(total, .5):7.1f} ms  p99 {pct(total, .99):7.1f} ms  "
                  f"(n={len(total)})")
            print(f"    of which the write (replace_source)      p50 {pct(writes, .5):6.1f} ms  "
                  f"p99 {pct(writes, .99):6.1f} ms")
            print(f"    written -> applied by the slowest agent  p50 {pct(agent_step, .5):6.1f} ms  "
                  f"p99 {pct(agent_step, .99):6.1f} ms  (watch delivery + the agent's step)")
            print(f"    applied -> answered by the new backend   p50 {pct(haproxy_side, .5):6.1f} ms  "
                  f"p99 {pct(haproxy_side, .99):6.1f} ms  (HAProxy + the probe's own polling)")
            lat: list[float] = []
        else:
            lat = await moves_in_process(url, rounds, tmp, backends)
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
        if in_process:
            print("etcd: 3 members on loopback; 3 agents inside this process, each with its own HAProxy")
            print(f"  write -> routable on all 3 nodes  p50 {pct(lat, .5):7.1f} ms  p99 {pct(lat, .99):7.1f} ms  "
                  f"(n={len(lat)}; one keep-alive probe per node)")
        print(f"  floor: bare etcd put (leader)     p50 {pct(floor, .5):7.1f} ms  p99 {pct(floor, .99):7.1f} ms")
        print(f"  registrations through haplane serve on etcd, 10 clients: {rate:.0f}/s (load average "
              f"{os.getloadavg()[0]:.1f}) "
              f"(floor: 1 / bare put p50 = {1 / (pct(floor, .5) / 1000):.0f}/s per sequential writer)")
    finally:
        for b in backends:
            b.stop()
        cluster.close()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--in-process", action="store_true", help="run the three agents inside this process")
    args = ap.parse_args()
    asyncio.run(bench(10 if args.quick else args.rounds, 1.0 if args.quick else args.seconds, args.in_process))
    return 0


if __name__ == "__main__":
    sys.exit(main())
