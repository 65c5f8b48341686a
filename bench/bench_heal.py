"""HAProxy healed, and the agent at scale: each figure next to its floor.

A real HAProxy driven by an in-process agent over a SQLite store, backends in a separate process on
127.0.0.x, a prober in its own process (bench/_probe.py) so that polling never competes with the agent.

1. healed: SIGKILL of HAProxy's master, of its worker alone, or of both, in turn; the time from the kill to
   the first request answered by the new HAProxy (routable again). Floor: the same HAProxy stopped and
   started again from its last good config by hand (``restart_from_last_good`` alone, no agent), to the
   first answer.
2. at each size (SERVICES services of MIN_SLOTS slots, one instance each, written before the agent starts):
   - start-up: the agent's first apply (compose, render, haproxy -c, start) until it is ready;
   - membership change: a new instance written to the store → the first request it answers, p50/p95/p99,
     without load; next to the agent's own step and the floor, a bare Runtime API ``set server`` round trip;
   - a reload: a new service → routable, and its parts (compose + render, haproxy -c, reload to the new worker);
   - the agent's RSS and CPU time, and the RSS of HAProxy's worker.

    .venv/bin/python bench/bench_heal.py                              # sizes 100, 1000, 10000
    .venv/bin/python bench/bench_heal.py --sizes 10000 --changes 500
    .venv/bin/python bench/bench_heal.py --quick                      # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _backends import spawn_cmd
from _rig import bench_parser, over_sizes
from bench_agent import Prober, fmt, free_port, pct

from haplane.agent.runner import build_agent
from haplane.errors import HAProxyUnavailable
from haplane.haproxy.runtime import RuntimeClient
from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.settings import load
from haplane.store import open_store


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def row(label: str, values: list[float]) -> None:
    print(f"  {label:<34}{fmt(values)}")


class Rig:
    """Backends, a prober and an agent over a store pre-filled with ``services`` services."""

    def __init__(self, tmp: Path, services: int, min_slots: int, settings: dict[str, Any] | None = None) -> None:
        self.tmp, self.services, self.min_slots = tmp, services, min_slots
        self.settings = dict(settings or {})  # more agent settings (bench_new_service.py: pools on or off)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        bport = free_port()
        self.addrs = [f"127.0.0.{i}:{bport}" for i in range(2, 42)]
        self.backends = subprocess.Popen(spawn_cmd(self.addrs), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)
        assert self.backends.stdout is not None
        self.backends.stdout.readline()
        self.prober = Prober(self.url)
        self.store_url = f"sqlite:///{tmp}/registry.db"

    def addr(self, i: int) -> tuple[str, int]:
        a, _, p = self.addrs[i % len(self.addrs)].rpartition(":")
        return a, int(p)

    async def fill(self) -> float:
        t = time.perf_counter()
        store = open_store(self.store_url)
        reg = RegistryStore(store, min_slots=self.min_slots)
        for s in range(self.services):
            await reg.put_service(Service(f"svc{s}", "host", f"svc{s}.test"))
            await reg.put_instance(Instance("i0", f"svc{s}", *self.addr(s)))
        await reg.put_service(Service("probe", "host", "probe.test"))
        await reg.put_instance(Instance("p0", "probe", *self.addr(0)))
        await store.close()
        return time.perf_counter() - t

    async def start(self) -> float:
        settings = load({"state_dir": str(self.tmp / "state"), "store": self.store_url, "http_port": self.port,
                         "http_address": "127.0.0.1", "ramp_interval": 0, "drain_timeout": 0,
                         "reload_interval": 0.2, "resync_interval": 3600, "min_slots": self.min_slots,
                         "access_log": "off", **self.settings}, env={})
        self.bundle = build_agent(settings)
        self.reg = RegistryStore(self.bundle.store, slot_cooldown=0, min_slots=self.min_slots)
        t = time.perf_counter()
        self.task = asyncio.create_task(self.bundle.agent.run())
        ready = asyncio.create_task(self.bundle.agent.ready.wait())
        await asyncio.wait({self.task, ready}, timeout=900, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            if self.task.done():
                self.task.result()
            raise TimeoutError("the agent did not start")
        took = time.perf_counter() - t
        await self.prober.until("probe.test", self.want(0))
        return took

    def want(self, i: int) -> str:
        a, p = self.addr(i)
        return f"{a}:{p}"

    async def stop_agent(self) -> None:
        """The agent and its HAProxy stopped (the store, backends and prober stay: ``start`` may run again)."""
        if hasattr(self, "task"):
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
            await self.bundle.control.stop()
            await self.bundle.store.close()
            del self.task

    async def close(self) -> None:
        await self.stop_agent()
        self.backends.kill()
        self.prober.close()


async def settled(rig: Rig) -> None:
    """Until the agent has nothing left to do (a reload after start, a converge after a restart)."""
    await asyncio.sleep(0.3)
    while not rig.bundle.agent.idle:
        await asyncio.sleep(0.05)


async def show_proc(proc: Any) -> Any:
    """The master's ``show proc``, through the moment its CLI is away (it re-executes on a reload)."""
    for _ in range(100):
        with contextlib.suppress(HAProxyUnavailable):
            return await proc.master.show_proc()
        await asyncio.sleep(0.1)
    return await proc.master.show_proc()


async def healed(rig: Rig, trials: int) -> tuple[dict[str, list[float]], list[float]]:
    proc = rig.bundle.control.process  # type: ignore[attr-defined]
    want = rig.want(0)  # svc0's instance i0: rendered in every config, never moved
    by_victim: dict[str, list[float]] = {"master": [], "worker": [], "both": []}
    seen: list[float] = []
    for n in range(trials):
        victim = ("master", "worker", "both")[n % 3]
        await settled(rig)
        old_master = proc.pid
        old_worker = (await show_proc(proc)).worker_pid
        t0 = time.monotonic()
        for pid in {"master": [old_master], "worker": [old_worker], "both": [old_master, old_worker]}[victim]:
            os.kill(pid, signal.SIGKILL)
        await proc.exited.wait()
        seen.append(time.monotonic() - t0)
        while proc.pid in (None, old_master):  # answers from the new HAProxy only (an orphaned worker may
            await asyncio.sleep(0.001)  # still answer a moment after its master died)
        by_victim[victim].append(await rig.prober.until("svc0.test", want, timeout=120) - t0)
    return by_victim, seen


async def heal_floor(rig: Rig, trials: int, by_victim: dict[str, list[float]], seen: list[float]) -> None:
    """The floor, measured last (the agent is not told of these restarts): the same HAProxy stopped and started
    again from its last good config by hand."""
    proc = rig.bundle.control.process  # type: ignore[attr-defined]
    want = rig.want(0)
    await settled(rig)
    floor: list[float] = []
    for _ in range(max(2, trials // 3)):
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        await proc.stop(graceful=False)
        await proc.restart_from_last_good()
        floor.append(await rig.prober.until("svc0.test", want, timeout=120) - t0)
    every = [v for vs in by_victim.values() for v in vs]
    print(f"healed: HAProxy SIGKILL -> routable again, {rig.services} services (aim <= 1 s)")
    for victim, values in by_victim.items():
        if values:
            row("SIGKILL of " + {"master": "the master", "worker": "the worker alone", "both": "both"}[victim],
                values)
    row("  of which: the exit seen", seen)
    row("floor: stop + start by hand", floor)
    verdict = "met" if every and max(every) <= 1.0 else "NOT met"
    print(f"  worst {max(every) * 1000:.0f} ms: aim {verdict}")


async def membership(rig: Rig, changes: int) -> tuple[list[float], list[float]]:
    lat: list[float] = []
    steps: list[float] = []
    rig.bundle.agent.routable_callbacks.append(steps.append)
    prev = "p0"
    for i in range(1, changes + 1):
        iid = f"p{i}"
        t = time.monotonic()
        await rig.reg.put_instance(Instance(iid, "probe", *rig.addr(i)))
        lat.append(await rig.prober.until("probe.test", rig.want(i)) - t)
        await rig.reg.delete_instance("probe", prev)
        prev = iid
        await asyncio.sleep(0.005)
    rig.bundle.agent.routable_callbacks.remove(steps.append)
    return lat, steps


async def a_reload(rig: Rig) -> tuple[float, dict[str, float]]:
    t = time.monotonic()
    await rig.reg.put_service(Service("fresh", "host", "fresh.test"))
    await rig.reg.put_instance(Instance("f0", "fresh", *rig.addr(3)))
    took = await rig.prober.until("fresh.test", rig.want(3), timeout=300) - t
    recs = rig.bundle.agent.activity.query(kind="reload", limit=1)
    parts = recs[0].detail.get("timings_ms", {}) if recs else {}
    return took, {k: float(v) for k, v in parts.items()}


async def at_size(tmp: Path, services: int, min_slots: int, changes: int, heal_trials: int) -> None:
    rig = Rig(tmp, services, min_slots)
    try:
        filled = await rig.fill()
        cpu0 = cpu_s()
        started = await rig.start()
        cpu_start = cpu_s() - cpu0
        print(f"\n=== {services} services x {min_slots} slots ({services * min_slots} server slots); "
              f"store written in {filled:.1f} s")
        print(f"start-up (first apply until ready): {started:.2f} s, agent CPU {cpu_start:.2f} s")
        kills = await healed(rig, heal_trials) if heal_trials else None
        cpu0 = cpu_s()
        lat, steps = await membership(rig, changes)
        cpu_changes = cpu_s() - cpu0
        rt = RuntimeClient(rig.bundle.state_dir / "admin.sock")
        floor: list[float] = []
        for i in range(200):
            t = time.perf_counter()
            await rt.execute([f"set server probe/s1 weight {10 + i % 2}"])
            floor.append(time.perf_counter() - t)
        print("membership change -> routable, no load (aim p99 <= 15 ms at 10,000 services):")
        row("store write -> first answer", lat)
        row("  of which the agent's step", steps)
        row("floor: bare set server", floor)
        print(f"  agent CPU per change: {cpu_changes / max(1, len(lat)) * 1000:.2f} ms; "
              f"p99 {pct(lat, 99) * 1000:.1f} ms")
        took, parts = await a_reload(rig)
        print(f"a new service through a reload -> routable: {took * 1000:.0f} ms "
              + " ".join(f"({k} {v:.0f} ms)" for k, v in parts.items()))
        await settled(rig)
        worker = (await show_proc(rig.bundle.control.process)).worker_pid  # type: ignore[attr-defined]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"memory: agent RSS {rss_mb():.0f} MB (peak {peak:.0f} MB); HAProxy worker RSS "
              f"{rss_mb(worker) if worker else float('nan'):.0f} MB")
        if kills is not None:
            await heal_floor(rig, heal_trials, *kills)
    finally:
        await rig.close()


async def run(args: argparse.Namespace) -> int:
    return await over_sizes(args.haproxy, args.sizes, "hp-heal-", lambda tmp, size, n: at_size(
        tmp, size, args.min_slots, args.changes, args.heal if n == 0 else 0))


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--min-slots", type=int, default=8, help="slots per service (a power of two: 8 -> 80,000 "
                    "slots at 10,000 services)")
    ap.add_argument("--changes", type=int, default=300, help="membership changes measured at each size")
    ap.add_argument("--heal", type=int, default=15, help="HAProxy kills (at the first size)")
    ap.add_argument("--haproxy", default="haproxy")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.changes, args.heal = [20], 20, 3
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
