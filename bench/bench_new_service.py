"""A new service → its first request answered, counting HAProxy's reloads; each figure next to its floor.

A real HAProxy driven by the in-process agent (``agent.runner.build_agent``, from settings) over a SQLite store,
backends in a separate process on 127.0.0.x, a prober in its own process; the rig is bench_heal.py's. At each
size (SERVICES services of MIN_SLOTS slots, one instance each, written before the agent starts):

1. new service: NEW times, a service and its first instance written through the registry as an operator would
   (``put_service`` then ``put_instance``), to the first request answered through its host; p50/p95/p99, and
   HAProxy's reloads during it (its own counter, the master's ``show proc``). With the pools setting on when
   haplane has one (spare backends: no reload), then the same with it off (the reload path) on the same store;
   without a pools setting the figure is the reload path and the bench says "pools: not available".
2. the floor: what a new service needs at the least, sent by hand over the Runtime API of the same HAProxy: a
   host map entry to a backend nobody routes to (``add map``) and one of its slots filled (``set server ... addr``,
   ``state ready``), to the first request answered.
3. membership change: an instance added to an existing service → the first request it answers, p50/p95/p99,
   without load (bench_heal.py's), next to a bare ``set server`` round trip.
4. the agent's RSS and CPU time; and, at the first size, HAProxy SIGKILL → routable again (bench_heal.py's;
   it measures that fully, with its floor).

    .venv/bin/python bench/bench_new_service.py                            # sizes 100, 1000, 10000
    .venv/bin/python bench/bench_new_service.py --sizes 10000 --new 50
    .venv/bin/python bench/bench_new_service.py --quick                    # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
import typing
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _rig import bench_parser, over_sizes
from bench_agent import pct
from bench_heal import Rig, cpu_s, healed, membership, row, rss_mb, settled, show_proc

from haplane.haproxy.runtime import RuntimeClient, add_map_command, set_server_commands
from haplane.model.records import Instance, Service
from haplane.settings import Settings

AIM_NEW_MS, AIM_MEMBERSHIP_MS, AIM_HEAL_S = 50.0, 15.0, 1.0


def pools_setting() -> tuple[str, Any, Any] | None:
    """The agent setting that turns spare backends (pools) on, with its on and off values; None when haplane has
    none. A bool is True/False; a number (a pool size) its default when not 0, else 16, and 0."""
    for name, info in Settings.model_fields.items():
        if "pool" not in name and "spare" not in name:
            continue
        kind = info.annotation
        if kind is bool:
            return name, True, False
        if kind in (int, float) or (typing.get_origin(kind) is not None and int in typing.get_args(kind)):
            default = info.default if isinstance(info.default, (int, float)) else 0
            return name, default or 16, 0
    return None


async def reloads(rig: Rig) -> int:
    """HAProxy's own reload counter (the master's ``show proc``)."""
    return int((await show_proc(rig.bundle.control.process)).reloads)  # type: ignore[attr-defined]


async def settled_within(rig: Rig, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(settled(rig), seconds)


def refills(rig: Rig, since: int) -> int:
    """Reloads since activity record ``since`` that only refilled pools (cause ``pool-refill``): in the background,
    after the service that took a spare was routable."""
    recs = rig.bundle.activity.query(since=since, kind="reload", limit=100_000)
    return sum(1 for r in recs if r.result == "ok" and r.detail.get("causes")
               and all(c.get("kind") == "pool-refill" for c in r.detail["causes"]))


async def new_services(rig: Rig, tag: str, count: int, give_up: float) -> tuple[list[float], int, float, int]:
    """``count`` new services, one at a time: (seconds to the first answer each, HAProxy's reloads, agent CPU, the
    reloads among them that only refilled pools). The parts of the agent's reloads meanwhile are printed (their
    median), and its failed reloads; a service not answering within ``give_up`` seconds ends the series (said,
    not counted as a figure)."""
    await settled_within(rig, give_up)
    before, cpu0 = await reloads(rig), cpu_s()
    seq0 = rig.bundle.agent.activity.seq
    lat: list[float] = []
    for k in range(count):
        name = f"{tag}{k}"
        t = time.monotonic()
        await rig.reg.put_service(Service(name, "host", f"{name}.test"))
        await rig.reg.put_instance(Instance("n0", name, *rig.addr(k + 5)))
        try:
            lat.append(await rig.prober.until(f"{name}.test", rig.want(k + 5), timeout=give_up) - t)
        except TimeoutError:
            print(f"    {name}: not routable within {give_up:.0f} s; the series ends here")
            break
        await settled_within(rig, give_up)  # each alone: the next one does not wait for the reload this one asked
    cpu = cpu_s() - cpu0
    failed = rig.bundle.agent.activity.query(since=seq0, kind="reload-failed")
    if failed:
        print(f"    reloads failed: {len(failed)}, the first: {failed[0].detail.get('error')}")
    parts: dict[str, list[float]] = {}
    for rec in rig.bundle.agent.activity.query(since=seq0, kind="reload"):
        for part, ms in rec.detail.get("timings_ms", {}).items():
            parts.setdefault(part, []).append(float(ms) / 1000)
    if parts:
        print("    the agent's reloads, median: " + ", ".join(f"{part} {pct(v, 50) * 1000:.0f} ms"
                                                       for part, v in parts.items()))
    return lat, await reloads(rig) - before, cpu, refills(rig, seq0)


async def floor(rig: Rig, count: int) -> list[float]:
    """A host map entry to an unrouted backend and a slot of it filled, by hand: to the first answer. The backends
    are those of the last services, their slot 1 taken out of service first (untimed), as a spare backend is."""
    desired = rig.bundle.agent.desired
    assert desired is not None and desired.maps, "the bench needs the host map (host_map: true)"
    host_map = desired.maps[0][0]
    rt = RuntimeClient(rig.bundle.state_dir / "admin.sock")
    lat: list[float] = []
    for k in range(count):
        backend = f"svc{rig.services - 1 - k}"
        await rt.execute(set_server_commands(backend, "s1", state="maint"))
        addr, port = rig.addr(k + 7)
        host = f"floor{k}.test"
        t = time.monotonic()
        await rt.execute([add_map_command(host_map, host, backend),
                          *set_server_commands(backend, "s1", addr=addr, port=port, state="ready")])
        lat.append(await rig.prober.until(host, rig.want(k + 7)) - t)
    return lat


def verdict(values: list[float], aim_ms: float, reloads: int | None = None) -> str:
    p99 = pct(values, 99) * 1000
    met = p99 <= aim_ms and (reloads is None or reloads == 0)
    said = f"p99 {p99:.1f} ms" + (f", {reloads} reload(s)" if reloads is not None else "")
    return f"  {said}: aim {'met' if met else 'NOT met'}"


async def at_size(tmp: Path, services: int, args: argparse.Namespace, first: bool) -> None:
    pools = pools_setting()
    if pools and args.pools is not None:
        pools = (pools[0], args.pools, pools[2])
    on = {pools[0]: pools[1]} if pools else {}
    rig = Rig(tmp, services, args.min_slots, on)
    try:
        filled = await rig.fill()
        started = await rig.start()
        print(f"\n=== {services} services x {args.min_slots} slots ({services * args.min_slots} server slots); "
              f"store written in {filled:.1f} s; agent ready in {started:.1f} s; load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"new service -> first request answered (aim p99 <= {AIM_NEW_MS:.0f} ms, 0 reloads, at every size):")
        if pools:
            lat, n_reloads, cpu, n_refills = await new_services(rig, "new", args.new, args.give_up)
            row(f"pools on ({pools[0]}={pools[1]})", lat)
            print(f"    HAProxy reloads: {n_reloads} ({n_refills} pool refill(s) in the background, after the "
                  f"service was routable; {n_reloads - n_refills} on the path of a new service); agent CPU "
                  f"{cpu / max(1, len(lat)) * 1000:.1f} ms a new service")
            print(verdict(lat, AIM_NEW_MS, n_reloads - n_refills))
            await rig.stop_agent()
            rig.settings = {pools[0]: pools[2]}
            await rig.start()
        else:
            print("  pools: not available (haplane has no pools setting): the figure below is the reload path")
        if args.new_reload:
            lat_r, n_reloads_r, cpu_r, _ = await new_services(rig, "rl", args.new_reload, args.give_up)
            row("reload path" + (f" ({pools[0]}={pools[2]})" if pools else ""), lat_r)
            print(f"    HAProxy reloads: {n_reloads_r}; agent CPU {cpu_r / max(1, len(lat_r)) * 1000:.1f} ms a new "
                  "service")
            if not pools:
                print(verdict(lat_r, AIM_NEW_MS, n_reloads_r))
        else:
            print("  reload path: not measured (--new-reload 0)")

        await settled(rig)
        before, cpu0 = await reloads(rig), cpu_s()
        lat_m, steps = await membership(rig, args.changes)
        cpu_m = cpu_s() - cpu0
        n_reloads_m = await reloads(rig) - before
        rt = RuntimeClient(rig.bundle.state_dir / "admin.sock")
        bare: list[float] = []
        for i in range(100):
            t = time.perf_counter()
            await rt.execute([f"set server probe/s1 weight {10 + i % 2}"])
            bare.append(time.perf_counter() - t)
        print(f"membership change (an instance added to a service) -> routable, no load "
              f"(aim p99 <= {AIM_MEMBERSHIP_MS:.0f} ms at 10,000 services):")
        row("store write -> first answer", lat_m)
        row("  of which the agent's step", steps)
        row("floor: bare set server", bare)
        print(f"    HAProxy reloads: {n_reloads_m}; agent CPU {cpu_m / max(1, len(lat_m)) * 1000:.2f} ms a change")
        print(verdict(lat_m, AIM_MEMBERSHIP_MS, n_reloads_m))

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"agent: RSS {rss_mb():.0f} MB (peak {peak:.0f} MB), CPU time {cpu_s():.1f} s in all")
        if first and args.heal:
            kills, _ = await healed(rig, args.heal)
            every = [v for vs in kills.values() for v in vs]
            print(f"healed: HAProxy SIGKILL -> routable again (aim <= {AIM_HEAL_S:.0f} s; bench_heal.py measures "
                  "it fully, next to its floor):")
            row("SIGKILL of master/worker/both", every)
            print(f"  worst {max(every) * 1000:.0f} ms: aim {'met' if max(every) <= AIM_HEAL_S else 'NOT met'}")
            await settled(rig)

        # last: the agent is not told of these runtime changes (a resync would undo them)
        lat_f = await floor(rig, args.new)
        print("floor: add map + set server addr + state ready by hand -> first answer:")
        row("bare Runtime API, same HAProxy", lat_f)
    finally:
        await rig.close()


async def run(args: argparse.Namespace) -> int:
    return await over_sizes("haproxy", args.sizes, "hp-new-", lambda tmp, size, n: at_size(tmp, size, args, n == 0))


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--pools", type=int, metavar="N", help="spares per pool profile with pools on (default: "
                    "haplane's default pool_size); the pools-off run is always pool_size 0")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--min-slots", type=int, default=8)
    ap.add_argument("--new", type=int, default=30, help="new services measured at each size (and floor trials)")
    ap.add_argument("--new-reload", type=int, default=10,
                    help="new services through the reload path at each size (0: none)")
    ap.add_argument("--give-up", type=float, default=120, help="seconds a new service may take to answer")
    ap.add_argument("--changes", type=int, default=200, help="membership changes measured at each size")
    ap.add_argument("--heal", type=int, default=6, help="HAProxy kills at the first size (0: none)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.new, args.new_reload, args.changes, args.heal = [20], 3, 2, 10, 1
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
