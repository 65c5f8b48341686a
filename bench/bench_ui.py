"""The cost of looking: what the UI's live overview, its stats sampler and a /metrics scrape cost per tick, next
to the floor any live view pays — HAProxy answering ``show stat`` over its admin socket.

Starts a real HAProxy (as haplane runs it) in a temporary directory on 127.0.0.1 with N services of 4 instances
each (8 slots per backend; the instances point at 127.0.0.1:1, nothing is routed), then measures, best of a few:

- floor: ``show stat`` fetched over the admin socket (bytes only);
- sample: StatsSampler.sample() (fetch + parse + per-server rates), what the UI pays once a second;
- overview: building the overview document from the desired model + the sample, and JSON-encoding it (what the
  overview stream sends);
- metrics: the per-server and per-service families rendered by prometheus_client (after the sample).

    .venv/bin/python bench/bench_ui.py            # 100, 1,000 and 5,000 services
    .venv/bin/python bench/bench_ui.py --quick    # 100 and 1,000 services, fewer runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry

from haplane.agent.stats import StatsSampler
from haplane.compose import ComposeOptions, compose
from haplane.haproxy.process import HAProxyProcess, control_globals
from haplane.metrics import Gathered, Metrics
from haplane.model.haproxy import Bind, Globals
from haplane.model.records import Instance, Registry, Service
from haplane.overview import build
from haplane.render import render, render_maps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry(n: int) -> Registry:
    services = tuple(Service(f"svc{s}", "host", f"svc{s}.example.com") for s in range(n))
    instances = tuple(Instance(f"i{s}x{i}", f"svc{s}", "127.0.0.1", 1, slot=i + 1, version="1.0", zone=f"z{i % 3}")
                      for s in range(n) for i in range(4))
    return Registry(services, instances, (), (), 1)


async def best(fn: Callable[[], Awaitable[Any]], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


async def measure(n: int, runs: int, haproxy: str) -> None:
    with tempfile.TemporaryDirectory(prefix="hpbui") as d:
        ctl = control_globals(d)
        options = ComposeOptions(binds=(Bind("127.0.0.1", free_port()),), min_slots=8, host_map=f"{d}/hosts.map",
                                 globals=Globals(log_target=None, control_global=ctl.global_lines,
                                                 control_defaults=ctl.defaults_lines))
        reg = registry(n)
        config = compose(reg, options)
        proc = HAProxyProcess(d, haproxy)
        await proc.start(render(config), render_maps(config))
        try:
            runtime = proc.runtime
            floor = await best(lambda: runtime.execute(["show stat"]), runs)
            raw = (await runtime.execute(["show stat"]))[0]
            sampler = StatsSampler(lambda: runtime.command("show stat"))
            t_sample = await best(sampler.sample, runs)
            rows = sampler.rows

            async def overview() -> None:
                json.dumps(build(config, reg, rows))

            t_overview = await best(overview, runs)
            metrics = Metrics(CollectorRegistry())
            doc = build(config, reg, rows)

            async def scrape() -> None:
                metrics._collector.gathered = Gathered(rows=dict(rows), overview=doc)
                from prometheus_client.exposition import generate_latest

                generate_latest(metrics.registry)

            t_metrics = await best(scrape, runs)
            servers = sum(len(b.servers) for b in config.backends)
            print(f"{n:>8} {servers:>8} {len(raw) / 1024:>9.0f} {floor:>10.1f} {t_sample:>10.1f} {t_overview:>11.1f} "
                  f"{t_metrics:>10.1f} {(t_sample + t_overview) / floor:>12.1f}x")
        finally:
            await proc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # HAProxy's own lines (health checks failing on purpose) stay out
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    sizes, runs = ([100, 1000], 2) if args.quick else ([100, 1000, 5000], 5)
    print("floor = HAProxy answering `show stat` over the admin socket; sample/overview/metrics = haplane's own work "
          "per tick (ms, best of runs)")
    print(f"{'services':>8} {'servers':>8} {'stat KiB':>9} {'floor ms':>10} {'sample ms':>10} {'overview ms':>11} "
          f"{'metrics ms':>10} {'(s+o)/floor':>13}")
    for n in sizes:
        asyncio.run(measure(n, runs, haproxy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
