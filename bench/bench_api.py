"""The write path through the API: registrations/s and heartbeats/s at 1, 10 and 50 clients (p50/p99), each
next to its floors on the same machine.

A real ``haplane serve`` process on loopback; the load comes from ``wrk`` (C, keep-alive connections, one per
client; its Lua scripts give every registration a new instance id), so the load generator takes little of the
two cores the server runs on. For each store (SQLite, and etcd: a real single-member cluster on loopback):

- ``register``: ``PUT /services/bench/instances/{new id}`` (a new instance: a slot is taken each time);
- ``heartbeat``: ``POST /services/bench/instances/{id}/heartbeat`` spread over 1,000 instances with a TTL;
- ``heartbeat batch``: ``POST /heartbeats`` renewing 100 instances per request (counted per instance);
- ``bulk``: ``PUT /sources/{source}/instances`` with 10,000 instances (1,000 with --quick): all new, the same
  set again, 100 of them moved, next to the store writing as many keys;

next to the floors:

- ``trivial endpoint``: the same HTTP stack (uvicorn + FastAPI, as ``haplane serve`` runs it) answering a
  constant from a one-line route: the ceiling of the HTTP stack itself on this machine;
- ``store txn``: the store engine's own ``txn`` (one compare-and-swap put, as a registration needs) from as many
  concurrent tasks in one process, and ``store keepalive`` for heartbeats;
- on etcd, ``bare etcd put``: ``/v3/kv/put`` through etcd's gateway, driven by wrk at the same concurrency.

    python bench/bench_api.py                 # 5 s per case, SQLite and etcd, 1/10/50 clients
    python bench/bench_api.py --quick         # a smoke run: SQLite, 1 and 10 clients, 1 s per case
    python bench/bench_api.py --store sqlite  # one store only
    python bench/bench_api.py --profile DIR   # also run py-spy (if installed) on the server: DIR/*.svg
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.procs import EtcdCluster, free_port

from haplane.store import Compare, Put, open_store

TOKEN = "bench-admin-token-123"
HEARTBEAT_INSTANCES = 1000
HEARTBEAT_BATCH = 100
ETCD_BIG_TXN = ("--max-txn-ops", "30000", "--max-request-bytes", str(32 << 20))

# wrk's Lua: every thread numbers its requests; ids are unique across threads and runs (a run prefix).
WRK_LUA = r"""
local counter = 0
local threads = {}
local tid = 0
function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
  table.insert(threads, thread)
end
local kind = os.getenv("BENCH_KIND")
local prefix = os.getenv("BENCH_PREFIX")
local token = os.getenv("BENCH_TOKEN")
local hb_n = tonumber(os.getenv("BENCH_HB_N") or "1000")
local batch = tonumber(os.getenv("BENCH_BATCH") or "100")
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. (token or "")}
local batch_body = nil
function init(args)
  if kind == "heartbeat_batch" then
    local items = {}
    for i = 1, batch do
      items[i] = string.format('{"service":"bench","id":"hb-%d"}', (tid * 7919 + i) % hb_n)
    end
    batch_body = '{"instances":[' .. table.concat(items, ",") .. ']}'
  end
end
function request()
  counter = counter + 1
  if kind == "register" then
    local body = string.format('{"address":"127.%d.%d.%d","port":8080}', tid % 250, math.floor(counter / 250) % 250,
                               counter % 250 + 1)
    return wrk.format("PUT", string.format("/services/bench/instances/%s-%d-%d", prefix, tid, counter),
                      headers, body)
  elseif kind == "heartbeat" then
    return wrk.format("POST", string.format("/services/bench/instances/hb-%d/heartbeat",
                                            (tid * 7919 + counter) % hb_n), headers, nil)
  elseif kind == "heartbeat_batch" then
    return wrk.format("POST", "/heartbeats", headers, batch_body)
  elseif kind == "etcd_put" then
    local key = string.format("/bench/%s/%d/%d", prefix, tid, counter)
    return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"},
                      string.format('{"key":"%s","value":"eA=="}', b64(key)))
  else
    return wrk.format("PUT", "/trivial", headers, '{"address":"127.0.0.2"}')
  end
end
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({"", "==", "="})[#data % 3 + 1])
end
function done(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %d, "seconds": %f, "p50": %f, "p99": %f, "status": %d, ' ..
                         '"errors": %d}\n', summary.requests, summary.duration / 1e6,
                         latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, summary.errors.status,
                         summary.errors.connect + summary.errors.read + summary.errors.write +
                         summary.errors.timeout))
end
"""

# The HTTP stack's ceiling: the same uvicorn settings as haplane serve, one route answering a constant.
TRIVIAL_APP = textwrap.dedent("""
    import asyncio, sys
    from fastapi import FastAPI
    from haplane.api.server import serve_api
    app = FastAPI()
    @app.put("/trivial")
    async def trivial() -> dict:
        return {"ok": True}
    asyncio.run(serve_api(app, "127.0.0.1", int(sys.argv[1])))
""")


@dataclass
class Result:
    rate: float
    p50: float
    p99: float
    failed: int

    def __str__(self) -> str:
        bad = f"  {self.failed} FAILED" if self.failed else ""
        return f"{self.rate:8.0f}/s  p50 {self.p50:6.1f} ms  p99 {self.p99:6.1f} ms{bad}"


def wrk(url: str, kind: str, clients: int, seconds: float, lua: Path, batch: int = 1) -> Result:
    env = {**os.environ, "BENCH_KIND": kind, "BENCH_PREFIX": uuid.uuid4().hex[:6], "BENCH_TOKEN": TOKEN,
           "BENCH_HB_N": str(HEARTBEAT_INSTANCES), "BENCH_BATCH": str(batch)}
    threads = 1 if clients < 10 else 2
    duration = f"{max(1, round(seconds))}s"  # wrk takes whole seconds
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(clients), "-d", duration, "--timeout", "10s",
                          "-s", str(lua), url], env=env, capture_output=True, text=True, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    d = json.loads(line[len("WRKJSON "):])
    return Result(d["requests"] * batch / d["seconds"], d["p50"], d["p99"], d["status"] + d["errors"])


def load() -> str:
    """The machine's load average (1 min): the figures beside it were measured on a machine this busy."""
    return f"{os.getloadavg()[0]:.1f}"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000 if values else 0.0


async def store_rate(url: str, clients: int, seconds: float, kind: str) -> Result:
    """``txn`` (one compare-and-swap put of a new key) or ``keepalive`` from ``clients`` concurrent tasks."""
    store = open_store(url)
    lat: list[float] = []
    lease = await store.grant_lease(60) if kind == "keepalive" else 0
    deadline = time.perf_counter() + seconds
    run = uuid.uuid4().hex[:6]

    async def worker(n: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            t0 = time.perf_counter()
            if kind == "keepalive":
                await store.keepalive(lease)
            else:
                key = f"/bench-floor/{run}/{n}/{i}"
                await store.txn([Compare(key, 0)], [Put(key, '{"address":"127.0.0.2","port":8080,"slot":1}')])
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(clients)))
    elapsed = time.perf_counter() - t0
    await store.close()
    return Result(len(lat) / elapsed, pct(lat, .5), pct(lat, .99), 0)


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], profile: Path | None, name: str) -> Iterator[None]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spy = None
    try:
        yield_spy = profile is not None and shutil.which("py-spy")
        if yield_spy and profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(proc.pid), "--rate", "200", "--format",
                                    "speedscope", "-o", str(profile / f"{name}.speedscope.json")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_up(url: str) -> None:
    for _ in range(400):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1, trust_env=False).status_code in (200, 405):
                return
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def prepare(api: str) -> None:
    """The bench service, and the instances heartbeats renew (registered through the bulk endpoint)."""
    h = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=api, headers=h, trust_env=False, timeout=60) as c:
        c.put("/services/bench", json={"port": 8080}).raise_for_status()
        for i in range(HEARTBEAT_INSTANCES):  # one by one: the bulk endpoint's set would share one lease
            c.put(f"/services/bench/instances/hb-{i}", json={"address": f"127.1.{i // 250}.{i % 250 + 1}",
                                                              "ttl": 600}).raise_for_status()


def bulk(api: str, store_url: str, n: int) -> None:
    """``PUT /sources/{source}/instances`` with ``n`` instances: all new, the same again, 100 moved; next to the
    store's own transaction of ``n`` puts (the floor)."""
    h = {"Authorization": f"Bearer {TOKEN}"}
    insts = [{"service": "bulk", "id": f"b{i}", "address": f"127.2.{i // 250 % 250}.{i % 250 + 1}"}
             for i in range(n)]
    moved = [dict(x, address="127.3.0.1", port=9000 + k) if k < 100 else x for k, x in enumerate(insts)]
    with httpx.Client(base_url=api, headers=h, trust_env=False, timeout=300) as c:
        c.put("/services/bulk", json={"port": 8080}).raise_for_status()
        for label, items in (("all new", insts), ("the same again", insts), ("100 moved", moved)):
            t0 = time.perf_counter()
            r = c.put("/sources/bench-bulk/instances", json={"instances": items, "ttl": 600})
            el = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            print(f"    bulk {n:,} instances, {label:15s} {el:7.0f} ms  ({len(r.json()['changes'])} changes)")
        c.delete("/services/bulk")

    async def floor() -> float:
        store = open_store(store_url)
        try:
            run = uuid.uuid4().hex[:6]
            ops = [Put(f"/bench-bulk/{run}/{i}", '{"address":"127.0.0.2","port":8080,"slot":1}') for i in range(n)]
            t0 = time.perf_counter()
            await store.txn([], ops)
            return (time.perf_counter() - t0) * 1000
        finally:
            await store.close()

    print(f"    floor: the store writing {n:,} keys        {asyncio.run(floor()):7.0f} ms  (one txn)")


def has_batch_heartbeats(api: str) -> bool:
    with httpx.Client(base_url=api, trust_env=False) as c:
        return "/heartbeats" in c.get("/openapi.json").json().get("paths", {})


def run_store(label: str, store_url: str, levels: tuple[int, ...], seconds: float, lua: Path, tmp: Path,
              trivial: dict[int, Result], profile: Path | None, etcd_gateway: str | None, quick: bool = False
              ) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HAPLANE_TOKEN": TOKEN}
    argv = [sys.executable, "-m", "haplane", "--log-level", "warning", "serve", "--state-dir", str(tmp / label),
            "--listen", f"127.0.0.1:{port}", "--store", store_url]
    flags = f" (etcd {' '.join(ETCD_BIG_TXN)})" if etcd_gateway else ""
    print(f"\n{label}: `haplane serve` over {store_url.split('?')[0]}{flags}; load average {load()}")
    with process(argv, env, profile, f"serve-{label}"):
        wait_up(api + "/health")
        prepare(api)
        batch = has_batch_heartbeats(api)
        for clients in levels:
            floor_txn = asyncio.run(store_rate(store_url, clients, seconds, "txn"))
            floor_ka = asyncio.run(store_rate(store_url, clients, seconds, "keepalive"))
            reg = wrk(api, "register", clients, seconds, lua)
            hb = wrk(api, "heartbeat", clients, seconds, lua)
            print(f"  {clients:3d} clients (load average {load()})")
            print(f"    register          {reg}")
            print(f"    heartbeat         {hb}")
            if batch:
                hbb = wrk(api, "heartbeat_batch", clients, seconds, lua, batch=HEARTBEAT_BATCH)
                print(f"    heartbeat batch   {hbb}   ({HEARTBEAT_BATCH} instances a request, counted each)")
            print(f"    floor: trivial endpoint {trivial[clients]}")
            print(f"    floor: store txn        {floor_txn}")
            print(f"    floor: store keepalive  {floor_ka}")
            if etcd_gateway:
                print(f"    floor: bare etcd put    {wrk(etcd_gateway, 'etcd_put', clients, seconds, lua)}")
        bulk(api, store_url, 1000 if quick else 10_000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="SQLite only, 1 and 10 clients, 1 s per case")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per case (default 5)")
    ap.add_argument("--store", choices=("sqlite", "etcd", "both"), default="both")
    ap.add_argument("--clients", default="1,10,50", help="concurrency levels (default 1,10,50)")
    ap.add_argument("--profile", type=Path, metavar="DIR", help="record py-spy profiles of the servers here")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench_api needs wrk (Debian: apt-get install wrk)")
    seconds = 1.0 if args.quick else args.seconds
    levels = (1, 10) if args.quick else tuple(int(c) for c in args.clients.split(","))
    stores = ("sqlite",) if args.quick else ("sqlite", "etcd") if args.store == "both" else (args.store,)
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    lua = tmp / "bench.lua"
    lua.write_text(WRK_LUA)
    try:
        tport = free_port()
        print(f"the write path through the API; wrk load, {seconds:g} s per case; p50/p99 per request; "
              f"{os.cpu_count()} cores, load average {load()}")
        trivial: dict[int, Result] = {}
        with process([sys.executable, "-c", TRIVIAL_APP, str(tport)], dict(os.environ), None, "trivial"):
            wait_up(f"http://127.0.0.1:{tport}/trivial")
            for clients in levels:
                trivial[clients] = wrk(f"http://127.0.0.1:{tport}", "trivial", clients, seconds, lua)
        if "sqlite" in stores:
            run_store("sqlite", f"sqlite:///{tmp / 'api.db'}", levels, seconds, lua, tmp, trivial, args.profile,
                      None, args.quick)
        if "etcd" in stores:
            # etcd takes 128 operations and 1.5 MiB in one txn by default: enough for the registrations'
            # batches (the registry splits a refused one), not for one source set of 10,000 instances, which
            # haplane refuses whole with 413 naming the limit. Operators raise both for big sets; so does this.
            cluster = EtcdCluster(1, extra_args=ETCD_BIG_TXN).start()
            try:
                run_store("etcd", f"etcd://{cluster.hostports[0]}/bench", levels, seconds, lua, tmp, trivial,
                          args.profile, cluster.endpoints[0], args.quick)
            finally:
                cluster.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
