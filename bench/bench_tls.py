"""Certificates at the edge: how soon a new certificate is served, next to its floor and to a reload.

A real HAProxy (master-worker, as haplane runs it) on 127.0.0.1 with N certificates loaded through a crt-list
(P-256 leaves from a test CA; N=1,000 by default), and a TLS client that verifies the chain against the test CA
and reads the served serial. Measured:

1. haplane: ``PUT /certificates/{name}`` (the API in-process over ASGI, the SQLite store, an in-process agent
   watching it) → the first TLS handshake that presents the new serial, p50/p99 over ROTATIONS rotations of
   one certificate among the N; the reload counter before and after (it must not move). The TLS client runs
   in its own process (bench/_tls_probe.py), as real clients do, polling from before the PUT;
2. the floor: the bare Runtime API ``set ssl cert`` + ``commit ssl cert`` round trip for the same rotation
   (one connection, interactive mode), then its first handshake;
3. the alternative: a reload-based rotation (write the file, reload through the master CLI, wait for the
   handshake presenting the new serial) on the same config, p50/p99 over a few reloads;
4. the TLS handshake rate through HAProxy (full handshakes, no resumption, SNI spread over the N names) with
   the N certificates loaded, next to the same client against only the default certificate.

    .venv/bin/python bench/bench_tls.py            # N=1,000 certificates, 100 rotations, 5 reloads
    .venv/bin/python bench/bench_tls.py --quick    # N=50, 10 rotations, 2 reloads
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509

from haplane.haproxy.process import HAProxyProcess, control_globals
from haplane.testing_tls import TestCA
from haplane.tls import runtime as ssl_cmds
from haplane.tls.crtlist import CertFiles


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def row(label: str, samples_s: list[float], note: str = "") -> None:
    ms = [s * 1000 for s in samples_s]
    print(f"  {label:<58} p50 {pct(ms, 0.5):8.2f} ms   p99 {pct(ms, 0.99):8.2f} ms   n={len(ms):<4} {note}",
          flush=True)


def served_serial(port: int, sni: str, ctx: ssl.SSLContext) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def wait_serial(port: int, sni: str, ctx: ssl.SSLContext, serial: int, timeout: float = 30.0) -> float:
    """Handshake until the served serial is ``serial``; the time it took (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while True:
        with contextlib.suppress(OSError, ssl.SSLError):
            if served_serial(port, sni, ctx) == serial:
                return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{sni} never presented serial {serial:X}")
        time.sleep(0.0005)


class TlsProber:
    """bench/_tls_probe.py in its own process (as real clients are): its handshakes never take the GIL from the
    in-process agent. Asked before the change is made, it polls while the change happens."""

    def __init__(self, cafile: str, pause_ms: float) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "_tls_probe.py"), cafile,
                                      str(pause_ms)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, port: int, sni: str, serial: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{port} {sni} {serial:x}\n")
        self.proc.stdin.flush()

    async def seen(self) -> float:
        """time.monotonic() of the first handshake presenting the serial asked for."""
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if line.strip() in ("timeout", ""):
            raise TimeoutError("the serial asked for was never presented")
        return float(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def config(state_dir: str, files: CertFiles, http_port: int, https_port: int) -> str:
    ctl = control_globals(state_dir)
    return "\n".join([
        "global", *(f"    {ln}" for ln in ctl.global_lines), "defaults", "    mode http", "    timeout connect 1s",
        "    timeout client 5s", "    timeout server 5s", *(f"    {ln}" for ln in ctl.defaults_lines),
        "frontend fe", f"    bind 127.0.0.1:{http_port}",
        f"    bind 127.0.0.1:{https_port} ssl crt {files.default_path} crt-list {files.crt_list_path} "
        "alpn h2,http/1.1",
        "    http-request return status 200 content-type text/plain string ok", ""])


def handshake_rate(port: int, names: list[str], ctx: ssl.SSLContext, seconds: float, threads: int = 2) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def work(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            sni = names[(n * threads + i) % len(names)]
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname=sni):
                pass
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


async def bench_haplane(base: Path, ca: TestCA, n: int, rotations: int, ctx: ssl.SSLContext,
                        prober: TlsProber) -> None:
    """PUT through the API → first handshake presenting it, with an in-process agent and HAProxy."""
    import httpx

    from haplane.agent.runner import build_agent
    from haplane.api import ApiDeps, create_app
    from haplane.registry import RegistryStore
    from haplane.settings import Settings

    state = base / "haplane"
    http_port, https_port = free_port(), free_port()
    token = "bench-admin-token"
    settings = Settings(state_dir=state, http_port=http_port, http_address="127.0.0.1", https_port=https_port,
                        https_address="127.0.0.1", token=token, drain_timeout=0, resync_interval=3600)
    bundle = build_agent(settings)
    agent = asyncio.create_task(bundle.agent.run())
    await asyncio.wait_for(bundle.agent.ready.wait(), 60)
    app = create_app(ApiDeps(registry=RegistryStore(bundle.store), settings=settings))
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     headers=headers) as api:
            t0 = time.perf_counter()
            for i in range(n):
                leaf = ca.issue([f"b{i}.bench.test"])
                r = await api.put(f"/certificates/b{i}", json={"certificate": leaf.chain_pem, "key": leaf.key_pem})
                r.raise_for_status()
            await asyncio.to_thread(wait_serial, https_port, f"b{n - 1}.bench.test", ctx, leaf.serial)
            while bundle.agent.status.revision < await bundle.store.revision() or not bundle.agent.idle:
                await asyncio.sleep(0.01)  # every one applied (and its files written), not only the last
            print(f"  {n} certificates PUT one by one and served: {time.perf_counter() - t0:.1f} s", flush=True)
            reloads0 = await bundle.control.reloads()
            samples, answered = [], []
            for k in range(rotations):
                leaf = ca.issue([f"b{k % n}.bench.test"])
                prober.ask(https_port, f"b{k % n}.bench.test", leaf.serial)
                t0 = time.monotonic()
                r = await api.put(f"/certificates/b{k % n}",
                                  json={"certificate": leaf.chain_pem, "key": leaf.key_pem})
                answered.append(time.monotonic() - t0)
                r.raise_for_status()
                samples.append(await prober.seen() - t0)
                while bundle.agent.status.revision < await bundle.store.revision() or not bundle.agent.idle:
                    await asyncio.sleep(0.002)  # its files written too: rotations one after the other
            reloads1 = await bundle.control.reloads()
            row(f"haplane: PUT -> first handshake presenting it ({n} certs)", samples,
                f"reloads during the rotations: {reloads1 - reloads0}  (aim: p99 <= 100 ms, 0 reloads)")
            row("  of which the PUT's answer (validation, store write)", answered)
            slow = sorted(samples)[-3:]
            print(f"  (slowest: {', '.join(f'{s * 1000:.0f}' for s in slow)} ms)", flush=True)
    finally:
        agent.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await agent
        await bundle.control.stop()
        bundle.activity.close()
        await bundle.store.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N=50, 10 rotations, 2 reloads, 1 s handshake runs")
    ap.add_argument("--certs", type=int, default=None)
    ap.add_argument("--rotations", type=int, default=None)
    ap.add_argument("--reloads", type=int, default=None)
    ap.add_argument("--only-haplane", action="store_true", help="measure 1. only")
    ap.add_argument("--probe-pause-ms", type=float, default=0.5,
                    help="pause of the TLS prober between handshakes (default 0.5; each handshake costs CPU)")
    ap.add_argument("--haproxy-bin", default=os.environ.get("HAPLANE_HAPROXY_BIN", "haproxy"))
    args = ap.parse_args()
    n = args.certs or (50 if args.quick else 1000)
    rotations = args.rotations or (10 if args.quick else 100)
    reloads = args.reloads or (2 if args.quick else 5)
    seconds = 1.0 if args.quick else 5.0
    if shutil.which(args.haproxy_bin) is None:
        print(f"no {args.haproxy_bin} binary", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="hp-btls-", dir="/tmp"))
    ca = TestCA("bench CA")
    cafile = ca.write_root(base / "ca.pem")
    ctx = ssl.create_default_context(cafile=cafile)
    logging.getLogger("haplane").setLevel(logging.ERROR)  # HAProxy's own start/stop chatter
    print(f"bench_tls: {n} certificates loaded, HAProxy {args.haproxy_bin}, 2-core machine shared with the client "
          f"(load {os.getloadavg()[0]:.1f}; prober pause {args.probe_pause_ms:g} ms)", flush=True)
    prober = TlsProber(cafile, args.probe_pause_ms)
    try:
        print("1. haplane (API -> store -> agent -> Runtime API; the TLS client in its own process)", flush=True)
        await bench_haplane(base, ca, n, rotations, ctx, prober)
        if args.only_haplane:
            return 0

        state = base / "raw"
        files = CertFiles(state)
        files.ensure_default()
        t0 = time.perf_counter()
        issued = {f"c{i}": ca.issue([f"c{i}.bench.test"]) for i in range(n)}
        files.sync({name: c.pem for name, c in issued.items()})
        print(f"  ({n} certificates made and written: {time.perf_counter() - t0:.1f} s)", flush=True)
        http_port, https_port = free_port(), free_port()
        cfg = config(str(state), files, http_port, https_port)
        hp = HAProxyProcess(state, args.haproxy_bin, start_timeout=120, reload_timeout=120)
        t0 = time.perf_counter()
        await hp.start(cfg)
        print(f"  (HAProxy started with {n} certificates in {time.perf_counter() - t0:.2f} s)", flush=True)
        try:
            print("2. the floor: bare set ssl cert + commit ssl cert (one connection)", flush=True)
            rt, first = [], []
            lst = str(files.crt_list_path)
            for k in range(rotations):
                name = f"c{k % n}"
                leaf = ca.issue([f"{name}.bench.test"])
                prober.ask(https_port, f"{name}.bench.test", leaf.serial)
                t0 = time.monotonic()
                answers = await hp.runtime.run([ssl_cmds.set_ssl_cert(files.path_of(name), leaf.pem),
                                                ssl_cmds.commit_ssl_cert(files.path_of(name))],
                                               stop_on_error=True, judge=ssl_cmds.ssl_answer_error)
                t1 = time.monotonic()
                assert all(a.ok for a in answers), answers
                t2 = await prober.seen()
                rt.append(t1 - t0)
                first.append(t2 - t0)
                issued[name] = leaf
            row("set ssl cert + commit ssl cert round trip", rt)
            row("set + commit -> first handshake presenting it", first)
            t0 = time.perf_counter()
            await ssl_cmds.read_state(hp.runtime, lst)
            row("show ssl cert + show ssl crt-list (one connection)", [time.perf_counter() - t0])

            print("3. the alternative: rotation by reload (file written, master reload, handshake)", flush=True)
            samples = []
            for k in range(reloads):
                name = f"c{k % n}"
                leaf = ca.issue([f"{name}.bench.test"])
                prober.ask(https_port, f"{name}.bench.test", leaf.serial)
                t0 = time.monotonic()
                files.put(name, leaf.pem, issued)
                await hp.reload(cfg)
                t1 = await prober.seen()
                samples.append(t1 - t0)
                issued[name] = leaf
            row(f"write + reload -> first handshake presenting it ({n} certs)", samples)

            print("4. TLS handshake rate (full handshakes, no resumption, 2 client threads)", flush=True)
            names = [f"c{i}.bench.test" for i in range(n)]
            rate = await asyncio.to_thread(handshake_rate, https_port, names, ctx, seconds)
            print(f"  {n} certificates, SNI spread over all of them, chain verified: {rate:8.0f} handshakes/s",
                  flush=True)
        finally:
            await hp.stop(graceful=False, timeout=5)
        # the floor of 4: the same client, same verification, against a HAProxy with one certificate loaded
        state1 = base / "one"
        files1 = CertFiles(state1)
        files1.ensure_default()
        files1.sync({"c0": ca.issue(["c0.bench.test"]).pem})
        http1, https1 = free_port(), free_port()
        hp1 = HAProxyProcess(state1, args.haproxy_bin)
        await hp1.start(config(str(state1), files1, http1, https1))
        try:
            rate1 = await asyncio.to_thread(handshake_rate, https1, ["c0.bench.test"], ctx, seconds)
            print(f"  floor: 1 certificate loaded, same client:                  {rate1:8.0f} handshakes/s",
                  flush=True)
        finally:
            await hp1.stop(graceful=False, timeout=5)
    finally:
        prober.close()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
