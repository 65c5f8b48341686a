"""The agent under load: requests lost, and event-to-routable latency, while membership and structure change.

A real HAProxy driven by an in-process agent over the SQLite store; backends in a separate process on
127.0.0.x; wrk keeps 20 keep-alive connections busy on one service the whole time. Then:

1. membership: ITER rounds of {add a probe instance, remove the previous one, add a load instance, remove
   the previous one} (4 changes each: 1,000 by default). For the probe, the time from just before the store
   write to the first request answered by the new instance is the event-to-routable latency.
2. structure: 50 new services (one instance each), on top of SERVICES existing ones; time from the first
   store write to the first answer through the new service (one reload each, spaced by reload_interval).
3. the floor: a bare Runtime API `set server ... weight` round trip on the same HAProxy.
4. a negative control that must fail: HAProxy stopped and started again (no socket hand-over) under load.
   If wrk saw no error there, the bench could not see failures, and it says so.

    .venv/bin/python bench/bench_agent.py            # 1,000 services, 1,000 membership + 50 structural
    .venv/bin/python bench/bench_agent.py --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _backends import spawn_cmd

from haplane.agent.runner import build_agent
from haplane.haproxy.runtime import RuntimeClient
from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.settings import load


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def fmt(values: list[float]) -> str:
    return (f"p50 {pct(values, 50) * 1000:7.2f} ms  p95 {pct(values, 95) * 1000:7.2f} ms  "
            f"p99 {pct(values, 99) * 1000:7.2f} ms  (n={len(values)})")


def parse_wrk(out: str) -> tuple[int, int]:
    """(requests, failed) from wrk's report: non-2xx/3xx answers plus socket errors."""
    m = re.search(r"(\d+) requests in", out)
    total = int(m.group(1)) if m else 0
    failed = 0
    if m2 := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        failed += int(m2.group(1))
    if m3 := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        failed += sum(int(x) for x in m3.groups())
    return total, failed


async def wrk(url: str, host: str, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "nice", "-n", "19", "wrk", "-t2", "-c20", f"-d{max(1, int(seconds))}s", "-H", f"Host: {host}", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


class Prober:
    """bench/_probe.py in its own process: polls until a host answers the wanted body."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "_probe.py"), url],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def until(self, host: str, want: str, timeout: float = 10.0) -> float:
        """time.monotonic() of the first answer ``want`` from ``host``."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{host} {want} {timeout}\n")
        self.proc.stdin.flush()
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if line.strip() == "timeout":
            raise TimeoutError(f"{host} never answered {want!r}")
        return float(line)

    def close(self) -> None:
        self.proc.kill()


async def until_body(client: httpx.AsyncClient, url: str, host: str, want: str, timeout: float = 10.0) -> float:
    t_end = time.perf_counter() + timeout
    while time.perf_counter() < t_end:
        try:
            r = await client.get(url, headers={"Host": host})
            if r.status_code == 200 and r.text == want:
                return time.perf_counter()
        except httpx.HTTPError:
            pass
    raise TimeoutError(f"{host} never answered {want!r}")


async def run(args: argparse.Namespace) -> int:
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="hp-bench-"))
    port = free_port()
    n_addr = 40
    bport = free_port()
    addrs = [f"127.0.0.{i}:{bport}" for i in range(2, 2 + n_addr)]
    backends = subprocess.Popen(spawn_cmd(addrs), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert backends.stdout is not None
    backends.stdout.readline()
    settings = load({"state_dir": str(tmp / "state"), "store": f"sqlite:///{tmp}/registry.db",
                     "http_port": port, "http_address": "127.0.0.1", "ramp_interval": 0, "drain_timeout": 2,
                     "reload_interval": args.reload_interval, "resync_interval": 3600,
                     "coalesce_ms": args.coalesce_ms}, env={})
    bundle = build_agent(settings)
    agent_task = asyncio.create_task(bundle.agent.run())
    reg = RegistryStore(bundle.store, slot_cooldown=settings.drain_timeout)
    prober = Prober(f"http://127.0.0.1:{port}/")
    url = f"http://127.0.0.1:{port}/"
    try:
        await asyncio.wait_for(bundle.agent.ready.wait(), 30)

        def addr(i: int) -> tuple[str, int]:
            a, _, p = addrs[i % n_addr].rpartition(":")
            return a, int(p)

        # the standing registry: SERVICES services, a load service, a probe service
        t0 = time.perf_counter()
        for s in range(args.services):
            await reg.put_service(Service(f"svc{s}", "host", f"svc{s}.test"))
            await reg.put_instance(Instance("i0", f"svc{s}", *addr(s)))
        for name in ("load", "probe"):
            await reg.put_service(Service(name, "host", f"{name}.test"))
        for i in range(4):
            await reg.put_instance(Instance(f"l{i}", "load", *addr(i)))
        await reg.put_instance(Instance("p0", "probe", *addr(0)))
        limits = httpx.Limits(max_keepalive_connections=1, max_connections=1)
        async with httpx.AsyncClient(timeout=5, limits=limits) as client:
            await until_body(client, url, "probe.test", addrs[0], timeout=120)
            print(f"setup: {args.services} services + load + probe routable in {time.perf_counter() - t0:.1f} s")

            # 1 + 2 under continuous load
            load_seconds = args.iterations * 0.02 + args.structural * (args.reload_interval + 0.6) + 5
            load_proc = await wrk(url, "load.test", 1 if args.no_load else load_seconds)
            if args.no_load:
                await load_proc.communicate()
            reloads_before = await bundle.control.reloads()
            lat: list[float] = []
            written: list[float] = []
            steps: list[float] = []
            bundle.agent.routable_callbacks.append(steps.append)
            for it in range(1, args.iterations + 1):
                a = addr(it)
                want = f"{a[0]}:{a[1]}"
                if want == addrs[(it - 1) % n_addr]:
                    continue
                t = time.monotonic()
                await reg.put_instance(Instance(f"p{it}", "probe", *a))
                written.append(time.monotonic() - t)
                lat.append(await prober.until("probe.test", want) - t)
                await reg.delete_instance("probe", f"p{it - 1}")
                await reg.put_instance(Instance(f"l{it + 3}", "load", *addr(it + 3)))
                await reg.delete_instance("load", f"l{it - 1}")
            membership_reloads = await bundle.control.reloads() - reloads_before
            struct: list[float] = []
            for s in range(args.structural):
                name = f"new{s}"
                a = addr(s + 7)
                t = time.monotonic()
                await reg.put_service(Service(name, "host", f"{name}.test"))
                await reg.put_instance(Instance("i0", name, *a))
                struct.append(await prober.until(f"{name}.test", f"{a[0]}:{a[1]}") - t)
                await asyncio.sleep(args.reload_interval)
            out = b"" if args.no_load else (await load_proc.communicate())[0]
            total, failed = parse_wrk(out.decode())
            structural_reloads = await bundle.control.reloads() - reloads_before - membership_reloads

        # 3 the floor
        rt = RuntimeClient(bundle.state_dir / "admin.sock")
        floor: list[float] = []
        for i in range(200):
            t = time.perf_counter()
            await rt.execute([f"set server load/s1 weight {10 + i % 2}"])
            floor.append(time.perf_counter() - t)

        # 4 negative control: stop + start HAProxy (no hand-over) under load
        control = await wrk(url, "load.test", 3)
        await asyncio.sleep(1)
        proc = bundle.control.process  # type: ignore[attr-defined]
        await proc.stop(graceful=False)
        await proc.restart_from_last_good()
        c_out, _ = await control.communicate()
        c_total, c_failed = parse_wrk(c_out.decode())

        print(f"\nload (wrk, 20 keep-alive connections): {total} requests, {failed} failed")
        print(f"membership changes: {len(lat) * 4}, reloads during them: {membership_reloads}")
        print(f"  event-to-routable   {fmt(lat)}")
        print(f"  of which store write{fmt(written)}")
        print(f"  agent step          {fmt(steps)}")
        print(f"  floor: set server   {fmt(floor)}")
        print(f"structural changes: {len(struct)} new services on top of {args.services}, "
              f"reloads: {structural_reloads}")
        print(f"  event-to-routable   {fmt(struct)}")
        parts: dict[str, list[float]] = {}
        for rec in bundle.agent.activity.query(kind="reload", limit=10_000):
            for name, ms in rec.detail.get("timings_ms", {}).items():
                parts.setdefault(name, []).append(ms / 1000)
        for name, label in (("compose_render", "compose + render"), ("check", "haproxy -c"),
                            ("reload", "reload to the new worker")):
            if parts.get(name):
                print(f"    of which {label:<22}{fmt(parts[name])}")
        print(f"negative control (HAProxy stopped and started under load): {c_total} requests, {c_failed} failed "
              f"-> {'the bench sees failures' if c_failed else 'NOT DETECTED: the bench cannot see failures'}")
        return 0 if c_failed else 1
    finally:
        agent_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await agent_task
        await bundle.control.stop()
        await bundle.store.close()
        backends.kill()
        prober.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--iterations", type=int, default=250, help="membership rounds (4 changes each)")
    ap.add_argument("--structural", type=int, default=50)
    ap.add_argument("--reload-interval", type=float, default=1.0)
    ap.add_argument("--coalesce-ms", type=float, default=1.0)
    ap.add_argument("--no-load", action="store_true", help="measure latencies without the wrk load")
    args = ap.parse_args()
    if args.quick:
        args.services, args.iterations, args.structural, args.reload_interval = 20, 20, 3, 0.3
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
