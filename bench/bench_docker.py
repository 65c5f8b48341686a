"""Container start to first request answered through HAProxy, with Docker's own delays shown apart.

A real dockerd (Debian's docker.io, vfs, no bridge, in a temporary directory, as the tests start it), the
busybox-static image, a real HAProxy driven by an in-process agent, and the Docker source writing the store.
For each of N containers (``--network host``, httpd on its own 127.0.0.x, one service): create it, then time
from the ``POST /containers/{id}/start`` call
  - to the call returning (Docker starting the process),
  - to the ``start`` event arriving on a separate events stream; split into the container's
    ``State.StartedAt`` -> the event's ``timeNano`` (the daemon emitting it) -> its arrival (delivery),
  - to the first request through HAProxy answered by that container (what an operator sees).
haplane's share is the last minus the event's arrival: inspect, push, store, agent, Runtime API, HAProxy.
At most ``--keep`` containers run at once, so finding the newcomer takes a bounded number of round-robin
requests whatever N is. The oldest leaves by ``POST /containers/{id}/stop`` (``docker stop``); the containers
ignore SIGTERM, so they go on serving until killed, and the time to their last request through HAProxy is
haplane's own (the watcher takes a container out at the stop signal's ``kill`` event, before it dies), shown
next to that event's arrival.

    python bench/bench_docker.py            # 50 containers
    python bench/bench_docker.py --quick    # 5 containers
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.agent.conftest import agent_rig
from tests.support.procs import Dockerd, build_busybox_image, free_port, next_loopback

from haplane.sources.base import StoreSink
from haplane.sources.docker import DockerSource


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def unix_time(rfc3339: str) -> float:
    """Docker's StartedAt (nanoseconds, trailing zeros trimmed, Z) as Unix time."""
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    base = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC).timestamp()
    return base + (float(f"0.{frac}") if frac else 0.0)


async def bench(n: int, keep: int) -> None:
    dockerd = Dockerd().start()
    try:
        image = build_busybox_image(dockerd)
        tmp = Path(tempfile.mkdtemp(prefix="bench-docker-"))
        async with agent_rig(tmp) as rig:
            source = DockerSource(host=dockerd.host, name="docker-bench")
            watcher = asyncio.create_task(source.run(StoreSink(rig.reg)))
            await asyncio.wait_for(source.connected.wait(), 30)
            port = free_port()
            api = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(dockerd.socket)),
                                    base_url="http://docker", timeout=60)
            events: dict[str, tuple[float, float]] = {}  # container id -> (arrival, timeNano) in Unix time
            kills: dict[str, float] = {}  # container id -> arrival of its first kill event

            async def listen() -> None:
                filters = json.dumps({"type": ["container"], "event": ["start", "kill"]})
                async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(dockerd.socket)),
                                             base_url="http://docker", timeout=None) as c, \
                        c.stream("GET", "/events", params={"filters": filters}) as s:
                    async for line in s.aiter_lines():
                        if line.strip():
                            e = json.loads(line)
                            if e["status"] == "kill":
                                kills.setdefault(e["id"], time.time())
                            else:
                                events.setdefault(e["id"], (time.time(), e["timeNano"] / 1e9))

            async def answered_by(count: int) -> set[str]:
                seen = set()
                for _ in range(count):
                    with contextlib.suppress(httpx.TransportError):
                        r = await rig.get("web.test")
                        if r.status_code == 200:
                            seen.add(r.text.strip())
                return seen

            listener = asyncio.create_task(listen())
            await asyncio.sleep(0.2)
            call, routable, started_to_event, delivery, event_at, gone, kill_at = [], [], [], [], [], [], []
            running: list[tuple[str, str]] = []
            for i in range(n + 1):
                addr, name = next_loopback(), f"bench-asteroid-{i}"
                body = {"Image": image, "Cmd": ["sh", "-c", f"trap '' TERM; echo {name} > /tmp/index.html; httpd -f -p "
                                                            f"{addr}:{port} -h /tmp"],
                        "Env": ["SERVICE_NAME=web", "PREDICATE=web.test", f"PORT={port}"], "StopSignal": "SIGTERM",
                        "Labels": {"haplane.address": addr}, "HostConfig": {"NetworkMode": "host"}}
                r = await api.post("/containers/create", params={"name": name}, json=body)
                r.raise_for_status()
                cid = r.json()["Id"]
                if len(running) >= keep:  # make room: the oldest is stopped, timed out of HAProxy
                    old_cid, old_name = running.pop(0)
                    w0, t0 = time.time(), time.perf_counter()
                    stopping = asyncio.create_task(api.post(f"/containers/{old_cid}/stop", params={"t": "60"}))
                    while old_name in await answered_by(2 * len(running) + 2):
                        pass
                    gone.append(time.perf_counter() - t0)
                    kill_at.append(kills.get(old_cid, time.time()) - w0)
                    (await api.post(f"/containers/{old_cid}/kill")).raise_for_status()
                    (await stopping).raise_for_status()
                w0, t0 = time.time(), time.perf_counter()
                (await api.post(f"/containers/{cid}/start")).raise_for_status()
                t_call = time.perf_counter() - t0
                while name not in await answered_by(len(running) + 1):
                    pass
                t_routed = time.perf_counter() - t0
                running.append((cid, name))
                for _ in range(400):
                    if cid in events:
                        break
                    await asyncio.sleep(0.005)
                if i == 0:  # the first one creates the service (a reload): not what this measures
                    continue
                arrival, emitted = events[cid]
                state = (await api.get(f"/containers/{cid}/json")).json()["State"]
                call.append(t_call)
                routable.append(t_routed)
                event_at.append(arrival - w0)
                started_to_event.append(emitted - unix_time(state["StartedAt"]))
                delivery.append(arrival - emitted)
            reloads = await rig.reloads()
            listener.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await api.aclose()
        share = [r - e for r, e in zip(routable, event_at, strict=True)]

        def line(label: str, values: list[float]) -> str:
            return f"  {label:<44} p50 {pct(values, .5):7.1f} ms  p99 {pct(values, .99):7.1f} ms"

        print(f"Docker source: {len(routable)} containers started one after another (at most {keep} running), "
              "one HAProxy, one service")
        print(line("start call -> first request answered", routable))
        print("  floor, Docker's own:")
        print(line("  start call -> call returns", call))
        print(line("  start call -> start event arrives", event_at))
        print(line("    of which StartedAt -> event emitted", started_to_event))
        print(line("    of which event emitted -> arrived", delivery))
        print(line("haplane's share: event arrived -> answered", share))
        print(line("stop call -> out of HAProxy (still serving)", gone))
        print(line("  floor: stop call -> its kill event arrives", kill_at))
        print(f"  HAProxy reloads over the run: {reloads} (creating the service; membership is runtime-only)")
        print(f"  mean haplane share {statistics.mean(share) * 1000:.1f} ms over {len(share)} containers")
    finally:
        dockerd.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 containers")
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--keep", type=int, default=4, help="at most this many running at once (default: 4)")
    args = ap.parse_args()
    asyncio.run(bench(5 if args.quick else args.containers, args.keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
