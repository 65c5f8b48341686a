"""Container start to first request answered through HAProxy, with Docker's own event delay shown apart.

A real dockerd (Debian's docker.io, vfs, no bridge, in a temporary directory, as the tests start it), the
busybox-static image, a real HAProxy driven by an in-process agent, and the Docker source writing the store.
For each of N containers (``--network host``, httpd on its own 127.0.0.x): create it, then time from the
``POST /containers/{id}/start`` call to
  - the ``start`` event arriving on a separate events stream (Docker's own delay: the floor), and
  - the first request through HAProxy answered by that container (what an operator sees).
Containers are then stopped one by one, timed to the last request they answer.

    python bench/bench_docker.py            # 50 containers
    python bench/bench_docker.py --quick    # 5 containers
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


async def bench(n: int) -> None:
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
            events: dict[str, float] = {}

            async def listen() -> None:
                filters = json.dumps({"type": ["container"], "event": ["start"]})
                async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(dockerd.socket)),
                                             base_url="http://docker", timeout=None) as c, \
                        c.stream("GET", "/events", params={"filters": filters}) as s:
                    async for line in s.aiter_lines():
                        if line.strip():
                            events.setdefault(json.loads(line)["id"], time.perf_counter())

            listener = asyncio.create_task(listen())
            await asyncio.sleep(0.2)
            event_delay, routable, gone = [], [], []
            ids = []
            for i in range(n):
                addr, name = next_loopback(), f"bench-asteroid-{i}"
                body = {"Image": image, "Cmd": ["sh", "-c", f"echo {name} > /tmp/index.html && exec httpd -f -p "
                                                            f"{addr}:{port} -h /tmp"],
                        "Env": ["SERVICE_NAME=web", "PREDICATE=web.test", f"PORT={port}"],
                        "Labels": {"haplane.address": addr}, "HostConfig": {"NetworkMode": "host"}}
                r = await api.post("/containers/create", params={"name": name}, json=body)
                r.raise_for_status()
                cid = r.json()["Id"]
                ids.append((cid, name))
                if i == 0:  # the first one creates the service: a reload, not what this measures
                    await api.post(f"/containers/{cid}/start")
                    while (await rig.get("web.test")).status_code != 200:
                        await asyncio.sleep(0.01)
                    continue
                t0 = time.perf_counter()
                (await api.post(f"/containers/{cid}/start")).raise_for_status()
                seen = False
                while not seen:
                    # the newest server gets a share of requests: ask until it answers
                    for _ in range(i + 1):
                        r = await rig.get("web.test")
                        if r.status_code == 200 and r.text.strip() == name:
                            seen = True
                            break
                t1 = time.perf_counter()
                routable.append(t1 - t0)
                for _ in range(200):
                    if cid in events:
                        break
                    await asyncio.sleep(0.005)
                event_delay.append(events.get(cid, t1) - t0)
            for cid, name in ids[1:]:
                t0 = time.perf_counter()
                await api.post(f"/containers/{cid}/kill")
                while True:
                    texts = {(await rig.get("web.test")).text.strip() for _ in range(4)}
                    if name not in texts:
                        break
                gone.append(time.perf_counter() - t0)
            reloads = await rig.reloads()
            listener.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await api.aclose()
        m = len(routable)
        print(f"Docker source: {m} containers (after the first, which creates the service), one HAProxy")
        print(f"  start -> first request answered   p50 {pct(routable, .5):7.1f} ms  p99 {pct(routable, .99):7.1f} ms")
        print(f"  floor: start -> Docker's event    p50 {pct(event_delay, .5):7.1f} ms  p99 "
              f"{pct(event_delay, .99):7.1f} ms  (Docker's own delay)")
        share = [r - e for r, e in zip(routable, event_delay, strict=True)]
        print(f"  haplane's share (event -> routed) p50 {statistics.median(share) * 1000:7.1f} ms")
        print(f"  kill -> no longer answering       p50 {pct(gone, .5):7.1f} ms  p99 {pct(gone, .99):7.1f} ms")
        print(f"  HAProxy reloads over the run: {reloads} (creating the service, then slots growing "
              "8 -> 16 -> 32 -> 64; membership itself is runtime-only)")
    finally:
        dockerd.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--containers", type=int, default=50)
    args = ap.parse_args()
    asyncio.run(bench(6 if args.quick else args.containers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
