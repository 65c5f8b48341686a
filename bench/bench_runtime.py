"""The floor figures of driving HAProxy: what a Runtime API change, a state read and a reload cost.

Starts a real HAProxy (master-worker, as haplane runs it) in a temporary directory, listening on
127.0.0.1 only, with backends of disabled slot servers at 127.0.0.1:1 (nothing is ever routed), and measures:

1. ``set server b/s1 weight N`` round trip, p50/p99 over N commands:
   - raw: blocking socket, non-interactive mode, one connection per command (the floor of any client);
   - RuntimeClient, one connection per command (``execute([cmd])``);
   - RuntimeClient, batched: N commands over one connection (per-command cost and the whole batch);
2. ``show servers state`` for a backend of 1,000 and one of 10,000 servers: fetch, and fetch + parse;
3. reload to new worker: ``HAProxyProcess.reload()`` (save state, write, master ``reload``, confirm the new
   worker in ``show proc`` and on the admin socket), small config and with the 11,000 servers loaded.

    .venv/bin/python bench/bench_runtime.py            # N=2000 commands, 10 reloads
    .venv/bin/python bench/bench_runtime.py --quick    # N=200, 3 reloads
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

from haplane.haproxy.parse import parse_servers_state
from haplane.haproxy.process import HAProxyProcess, control_globals


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(state_dir: str, port: int, big: bool) -> str:
    ctl = control_globals(state_dir)
    out = ["global", *(f"    {ln}" for ln in ctl.global_lines), "defaults", "    mode http", "    timeout connect 1s",
           "    timeout client 5s", "    timeout server 5s", *(f"    {ln}" for ln in ctl.defaults_lines),
           "frontend fe", f"    bind 127.0.0.1:{port}", "    default_backend b", "backend b"]
    out += [f"    server s{i} 127.0.0.1:1 disabled" for i in range(1, 11)]
    if big:
        for name, n in (("k1", 1000), ("k10", 10000)):
            out.append(f"backend {name}")
            out += [f"    server s{i} 127.0.0.1:1 disabled" for i in range(1, n + 1)]
    return "\n".join(out) + "\n"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def row(label: str, samples_s: list[float], floor: str = "") -> None:
    ms = [s * 1000 for s in samples_s]
    print(f"  {label:<52} p50 {pct(ms, 0.5):8.3f} ms   p99 {pct(ms, 0.99):8.3f} ms   n={len(ms):<5} {floor}")


def raw_command(path: str, cmd: str) -> bytes:
    """The floor: a blocking socket, non-interactive mode, one connection."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(cmd.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def timed(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def run(quick: bool, haproxy: str) -> None:
    n = 200 if quick else 2000
    reloads = 3 if quick else 10
    state_dir = tempfile.mkdtemp(prefix="hxb")
    try:
        port = free_port()
        hp = HAProxyProcess(state_dir, haproxy)
        t0 = time.perf_counter()
        await hp.start(config(state_dir, port, big=False))
        started = 1000 * (time.perf_counter() - t0)
        print(f"HAProxy {(await hp.runtime.info()).version}, start to serving: {started:.1f} ms")
        rt = hp.runtime
        admin = str(hp.admin_socket)
        cmds = [f"set server b/s1 weight {i % 256 + 1}" for i in range(n)]

        print("\n1. set server weight, round trip")
        it = iter(cmds)
        samples = []
        for _ in range(n):
            c = next(it)
            t = time.perf_counter()
            raw_command(admin, c)
            samples.append(time.perf_counter() - t)
        row("raw blocking socket, one connection per command", samples, "(floor)")
        it = iter(cmds)
        row("RuntimeClient.execute([cmd]), one connection each", await timed(lambda: rt.execute([next(it)]), n))
        batch_totals = []
        for _ in range(5 if quick else 20):
            t = time.perf_counter()
            answers = await rt.run(cmds)
            batch_totals.append(time.perf_counter() - t)
            assert all(a.ok for a in answers)
        per_cmd = [b / n for b in batch_totals]
        row(f"RuntimeClient.run(batch of {n}), per command", per_cmd)
        row(f"RuntimeClient.run(batch of {n}), whole batch", batch_totals)
        stop = cmds[:3]
        row("RuntimeClient.run(3 cmds, stop_on_error)", await timed(lambda: rt.run(stop, stop_on_error=True), n // 4))

        print("\n3. reload to new worker (small config)")
        small = config(state_dir, port, big=False)
        row("HAProxyProcess.reload(config)", await timed(lambda: hp.reload(small), reloads))

        big = config(state_dir, port, big=True)
        t = time.perf_counter()
        await hp.reload(big)
        print(f"  reload to a config with 11,010 servers (first load): {1000 * (time.perf_counter() - t):.1f} ms")

        print("\n2. show servers state")
        for backend, size in (("k1", 1000), ("k10", 10000)):
            runs = 5 if quick else 30
            cmd = f"show servers state {backend}"
            row(f"{size:>6} servers: raw socket fetch", [
                _t(lambda c=cmd: raw_command(admin, c)) for _ in range(runs)], "(floor)")
            row(f"{size:>6} servers: RuntimeClient.execute", await timed(lambda c=cmd: rt.execute([c]), runs))
            row(f"{size:>6} servers: RuntimeClient.servers_state (fetch+parse)",
                await timed(lambda b=backend: rt.servers_state(b), runs))
            text = (await rt.execute([cmd]))[0]
            row(f"{size:>6} servers: parse only", [_t(lambda tx=text: parse_servers_state(tx)) for _ in range(runs)])

        print("\n3. reload to new worker (11,010 servers)")
        row("HAProxyProcess.reload(config)", await timed(lambda: hp.reload(big), reloads))
        await hp.stop(graceful=False)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def _t(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--haproxy", default=os.environ.get("HAPLANE_HAPROXY_BIN") or shutil.which("haproxy")
                    or "/usr/sbin/haproxy")
    args = ap.parse_args()
    if not os.access(args.haproxy, os.X_OK):
        print(f"no haproxy binary at {args.haproxy}", file=sys.stderr)
        return 2
    asyncio.run(run(args.quick, args.haproxy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
