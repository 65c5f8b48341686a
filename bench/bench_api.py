"""Registrations per second through the API, next to the registry's own rate as the floor.

A real ``haplane serve`` process over SQLite on loopback; N concurrent clients (httpx, keep-alive) each
PUT new instances of one service for a fixed time. The floor: ``RegistryStore.put_instance`` called
directly in this process on a fresh SQLite store with the same concurrency (what the API adds is HTTP,
JSON, auth and validation on top of it).

    python bench/bench_api.py            # 5 s per case, 1/10/50 clients
    python bench/bench_api.py --quick    # a smoke run of about a second per case
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.store import open_store

TOKEN = "bench-admin-token-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def api_rate(url: str, clients: int, seconds: float, tag: str) -> tuple[float, list[float]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    lat: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal done
        # TCP_NODELAY: httpx writes headers and body apart; without it Nagle + delayed ACK add 40 ms
        transport = httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, trust_env=False,
                                     transport=transport) as c:
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                t0 = time.perf_counter()
                r = await c.put(f"/services/bench/instances/{tag}-{n}-{i}",
                                json={"address": f"127.0.{n % 250}.{i % 250 + 1}", "port": 8080})
                lat.append(time.perf_counter() - t0)
                if r.status_code not in (200, 201):
                    raise SystemExit(f"unexpected answer {r.status_code}: {r.text}")
                done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(clients)))
    return done / (time.perf_counter() - t0), lat


async def floor_rate(path: Path, clients: int, seconds: float) -> float:
    store = open_store(f"sqlite:///{path}")
    reg = RegistryStore(store)
    await reg.put_service(Service("bench", port=8080))
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            await reg.put_instance(Instance(f"f-{n}-{i}", "bench", f"127.0.{n % 250}.{i % 250 + 1}", 8080))
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(clients)))
    rate = done / (time.perf_counter() - t0)
    await store.close()
    return rate


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000 if values else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    levels = (1, 10) if args.quick else (1, 10, 50)
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    port = free_port()
    env = {**os.environ, "HAPLANE_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "haplane", "--log-level", "warning", "serve",
                             "--state-dir", str(tmp / "state"), "--listen", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        httpx.put(url + "/services/bench", json={"port": 8080}, headers={"Authorization": f"Bearer {TOKEN}"},
                  trust_env=False).raise_for_status()
        print(f"registrations through `haplane serve` (SQLite, loopback HTTP) vs RegistryStore.put_instance "
              f"direct; {seconds:.0f} s per case")
        for clients in levels:
            rate, lat = asyncio.run(api_rate(url, clients, seconds, f"c{clients}"))
            floor = asyncio.run(floor_rate(tmp / f"floor-{clients}.db", clients, seconds))
            print(f"  {clients:3d} clients: API {rate:7.0f}/s  p50 {pct(lat, .5):6.2f} ms  p99 {pct(lat, .99):6.2f} ms"
                  f"  | floor (registry direct) {floor:7.0f}/s  -> API at {rate / floor:5.0%} of the floor")
        print(f"  (median request {statistics.median(lat) * 1000:.2f} ms at the last level)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
