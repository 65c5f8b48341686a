"""The cost of looking: what the UI's live overview, its stats sampler and a /metrics scrape cost per tick, next
to the floor any live view pays — HAProxy answering ``show stat`` over its admin socket; and what the access log
costs HAProxy and haplane at 5,000 requests a second.

Starts a real HAProxy (as haplane runs it) in a temporary directory on 127.0.0.1 with N services of 4 instances
each (8 slots per backend; the instances point at 127.0.0.1:1, nothing is routed), then measures, best of a few:

- floor: ``show stat`` fetched over the admin socket (bytes only);
- sample: StatsSampler.sample() (fetch + parse + per-server rates), what the UI pays once a second;
- overview: building the overview document from the desired model + the sample, and JSON-encoding it (what the
  overview stream sends);
- metrics: a /metrics scrape's work after the sample: the per-server families and the traffic families per
  frontend, service and instance (names resolved from the model), rendered by prometheus_client.

Access log: a HAProxy rendered as haplane renders it, one service whose instances are a second HAProxy answering
200 by itself (so the backend's CPU is not counted), driven by wrk at a paced 5,000 req/s (50 connections, 10 ms
between requests on each) for a few seconds with the access log off, sampled (1 in 10) and full; the CPU that
HAProxy (master + worker) and haplane's collector (this process: it does nothing else meanwhile) used, as a share
of one core, from /proc and getrusage.

    .venv/bin/python bench/bench_ui.py            # 100, 1,000 and 5,000 services; 10 s wrk runs
    .venv/bin/python bench/bench_ui.py --quick    # 100 and 1,000 services, fewer runs; 3 s wrk runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import resource
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from haplane.accesslog import AccessLogCollector, FileSink, LatencyWindow, log_target, names_of, resolver
from haplane.agent.stats import StatsSampler
from haplane.compose import ComposeOptions, compose
from haplane.errors import HAProxyUnavailable
from haplane.haproxy.process import HAProxyProcess, control_globals
from haplane.metrics import Gathered, Metrics
from haplane.model.haproxy import Bind, Globals
from haplane.model.records import Instance, Registry, Service
from haplane.overview import build
from haplane.render import render, render_maps
from haplane.traffic import traffic_text


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
                from prometheus_client.exposition import generate_latest

                traffic = traffic_text(rows.values(), names_of(config))
                metrics._collector.gathered = Gathered(rows=dict(rows), overview=doc, traffic=traffic)
                generate_latest(metrics.collectors) + traffic.encode()

            t_metrics = await best(scrape, runs)
            servers = sum(len(b.servers) for b in config.backends)
            print(f"{n:>8} {servers:>8} {len(raw) / 1024:>9.0f} {floor:>10.1f} {t_sample:>10.1f} {t_overview:>11.1f} "
                  f"{t_metrics:>10.1f} {(t_sample + t_overview) / floor:>12.1f}x")
        finally:
            await proc.stop()


PACE = "function delay()\n  return 10\nend\n"  # ms between a connection's requests: 50 connections -> <= 5,000/s


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` (clock ticks), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def logging_cost(mode: str, seconds: float, haproxy: str, wrk: str) -> tuple[float, float, float, int]:
    """(requests/s, HAProxy CPU %, haplane CPU %, lines written) for the access log in ``mode``."""
    with tempfile.TemporaryDirectory(prefix="hpbal") as d:
        # the backend: another HAProxy answering 200 itself, apart from the one measured
        be_port = free_port()
        (Path(d) / "be").mkdir()
        be_cfg = (f"global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n"
                  f"    timeout server 30s\nfrontend be\n    bind 127.0.0.1:{be_port}\n"
                  f"    http-request return status 200 content-type text/plain string ok\n")
        (Path(d) / "be" / "h.cfg").write_text(be_cfg)
        backend = await asyncio.create_subprocess_exec(haproxy, "-f", f"{d}/be/h.cfg",
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.DEVNULL)
        ctl = control_globals(d)
        sock = Path(d) / "log.sock"
        port = free_port()
        options = ComposeOptions(binds=(Bind("127.0.0.1", port),), min_slots=8, host_map=f"{d}/hosts.map",
                                 globals=Globals(log_target=log_target(sock, mode, 10),  # type: ignore[arg-type]
                                                 control_global=ctl.global_lines, control_defaults=ctl.defaults_lines))
        instances = tuple(Instance(f"web-{i}", "web", "127.0.0.1", be_port, slot=i + 1) for i in range(2))
        reg = Registry((Service("web", "host", "web.example.com"),), instances, (), (), 1)
        config = compose(reg, options)
        names = names_of(config)
        sink = FileSink(Path(d) / "access.log", 1 << 30, 1)
        collector = AccessLogCollector(sock, sink, resolver(lambda: names), "json",
                                       observers=[LatencyWindow().observe])
        if mode != "off":
            await collector.start()
        proc = HAProxyProcess(d, haproxy)
        await proc.start(render(config), render_maps(config))
        (Path(d) / "pace.lua").write_text(PACE)
        try:
            await asyncio.sleep(0.3)
            pids = [p for p in (proc.pid, proc.worker_pid) if p]
            h0 = sum(cpu_ticks(p) for p in pids)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.monotonic()
            run = await asyncio.create_subprocess_exec(
                wrk, "-t2", "-c50", f"-d{seconds:g}s", "-s", f"{d}/pace.lua", "-H", "Host: web.example.com",
                f"http://127.0.0.1:{port}/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out = (await run.communicate())[0].decode()
            await asyncio.sleep(0.2)  # the last datagrams
            elapsed = time.monotonic() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            h1 = sum(cpu_ticks(p) for p in pids)
            m = re.search(r"Requests/sec:\s+([\d.]+)", out)
            rate = float(m.group(1)) if m else 0.0
            hz = os.sysconf("SC_CLK_TCK")
            haproxy_cpu = 100 * (h1 - h0) / hz / elapsed
            ours = 100 * ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / elapsed
            return rate, haproxy_cpu, ours, collector.received
        finally:
            await proc.stop()
            if mode != "off":
                await collector.stop()
            backend.terminate()
            await backend.wait()


def access_log_section(quick: bool, haproxy: str) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("\naccess log: wrk not found (Debian package wrk; scripts/setup installs it): skipped")
        return
    seconds = 3.0 if quick else 10.0
    print(f"\naccess log at a paced 5,000 req/s (wrk, 50 connections, {seconds:g} s); CPU as % of one core")
    from haplane.accesslog import dgram_queue_length

    print(f"(net.unix.max_dgram_qlen = {dgram_queue_length()}: datagrams a UNIX socket queues before HAProxy's "
          "are refused and dropped)")
    print(f"{'mode':>8} {'req/s':>8} {'HAProxy CPU':>12} {'haplane CPU':>12} {'lines':>8} {'kept':>6} "
          f"{'µs a line':>10}")
    base = None
    for mode in ("off", "sampled", "full"):
        rate, hcpu, ours, lines = asyncio.run(logging_cost(mode, seconds, haproxy, wrk))
        per_line = (ours / 100 * seconds * 1e6 / lines) if lines else 0.0
        expected = rate * seconds / (10 if mode == "sampled" else 1)
        kept = f"{100 * lines / expected:.0f}%" if mode != "off" and expected else "-"
        extra = f"  (+{hcpu - base:.1f} HAProxy)" if base is not None else ""
        base = hcpu if base is None else base
        print(f"{mode:>8} {rate:>8.0f} {hcpu:>11.1f}% {ours:>11.1f}% {lines:>8} {kept:>6} {per_line:>10.1f}{extra}")


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
        try:
            asyncio.run(measure(n, runs, haproxy))
        except HAProxyUnavailable as exc:  # e.g. 5,000 services need more file descriptors than allowed here
            print(f"{n:>8}  skipped: {exc}")
    access_log_section(args.quick, haproxy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
