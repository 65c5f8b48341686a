"""An AutoScaling group followed by a real HAProxy: 3 -> 10 -> 2 instances through server slots, without a
reload, new servers ramped up; AWS throttling and errors back off and never empty the backend.

moto (server mode) gives the instances addresses in the test's 127.0.N.0/24 subnet; a real HTTP backend listens
on each of those addresses, so HAProxy routes to loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.agent.conftest import Backend, Rig, agent_rig, free_port
from tests.integration.aws.conftest import Account

from haplane.model.records import Service
from haplane.registry import RegistryStore
from haplane.sources.aws_autoscaling import AwsAutoScalingSource
from haplane.sources.base import StoreSink
from haplane.store.memory import MemoryStore

pytestmark = pytest.mark.integration


async def live_slots(rig: Rig, backend: str = "web") -> dict[str, tuple[str, int]]:
    """server name -> (address, weight) of the slots HAProxy has in use (not in maintenance), in the backend that
    holds service ``backend`` inside HAProxy (its own, or a pool's spare it took)."""
    desired = rig.bundle.agent.desired
    held = [b.name for b in desired.backends if b.label == backend] if desired is not None else []
    backend = held[0] if held else backend
    state = await rig.bundle.control.servers([backend])
    return {name: (s.address, s.weight) for name, s in state.get(backend, {}).items() if not s.maint}


async def test_asg_scaled_3_10_2_is_followed_by_haproxy_slots_without_reload(
        tmp_path: Path, account: Account) -> None:
    port = free_port()
    servers: dict[str, Backend] = {}

    def serve(addresses: dict[str, str]) -> None:
        for iid, addr in addresses.items():
            if addr not in servers:
                servers[addr] = Backend(iid, addr, port).start()

    g = account.group("web-hp", 3)
    async with agent_rig(tmp_path, min_slots=16, ramp_interval=0.25, ramp_step=3, ramp_min=1) as rig:
        await rig.reg.put_service(Service("web", "host", "web.test"))
        await rig.settled()
        await rig.until_status("web.test", 503)
        reloads = await rig.reloads()
        source = AwsAutoScalingSource([g], "web", port, interval=0.2, endpoint_url=account.url, region="us-east-1")
        task = asyncio.create_task(source.run(StoreSink(rig.reg)))
        try:
            previous: set[str] = set()
            for n in (3, 10, 2):
                account.scale(g, n)
                want = account.addresses(g)
                assert len(want) == n
                serve(want)
                ramped: dict[str, list[int]] = {}
                deadline = asyncio.get_running_loop().time() + 30
                while True:  # follow HAProxy's slots until they hold exactly the group, at full weight
                    slots = await live_slots(rig)
                    for addr, weight in slots.values():
                        ramped.setdefault(addr, []).append(weight)
                    if sorted(a for a, _ in slots.values()) == sorted(want.values()) and \
                            all(w == 10 for _, w in slots.values()):
                        break
                    assert asyncio.get_running_loop().time() < deadline, f"slots {slots} never matched {want}"
                    await asyncio.sleep(0.02)
                for addr in set(want.values()) - previous:  # a new server starts low and ramps up
                    assert ramped[addr][0] < 10 and ramped[addr][-1] == 10, (addr, ramped[addr])
                previous = set(want.values())
                seen = {(await rig.get("web.test")).text for _ in range(4 * n)}
                assert seen <= {f"backend={servers[a].name}" for a in want.values()}
            assert await rig.reloads() == reloads, "membership and weights through the Runtime API only"
        finally:
            task.cancel()
            for b in servers.values():
                b.stop()


class FlakyAws:
    """An HTTP proxy in front of moto that answers like an overloaded AWS when told to: ``mode`` is "pass",
    "throttle" (400 Throttling, as AutoScaling's query API sends it) or "error" (500 InternalFailure)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.refused = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if owner.mode != "pass":
                    owner.refused += 1
                    code, status = ("Throttling", 400) if owner.mode == "throttle" else ("InternalFailure", 500)
                    doc = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>Rate exceeded"
                           "</Message></Error><RequestId>x</RequestId></ErrorResponse>").encode()
                    self._answer(status, {"Content-Type": "text/xml"}, doc)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                r = httpx.post(owner.upstream + self.path, content=body, headers=headers, timeout=30)
                self._answer(r.status_code, {"Content-Type": r.headers.get("content-type", "text/xml")}, r.content)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky(account: Account) -> Iterator[FlakyAws]:
    proxy = FlakyAws(account.url)
    yield proxy
    proxy.close()


@pytest.mark.parametrize("mode", ["throttle", "error"])
async def test_throttling_and_errors_back_off_and_keep_the_backend(
        account: Account, flaky: FlakyAws, mode: str) -> None:
    g = account.group(f"flaky-{mode}", 3)
    reg = RegistryStore(MemoryStore())
    source = AwsAutoScalingSource([g], "web", 80, interval=0.05, max_backoff=0.4, retries=1,
                                  endpoint_url=flaky.url, region="us-east-1")
    task = asyncio.create_task(source.run(StoreSink(reg)))

    async def members() -> set[str]:
        return {i.id for i, _ in await reg.list_instances("web")}

    async def until(pred: Any, timeout: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await pred():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.02)

    try:
        async def three() -> bool:
            return await members() == set(account.addresses(g))
        await until(three)
        flaky.mode = mode
        account.scale(g, 1)  # AWS changes meanwhile: the source cannot see it, so it keeps the last view

        async def failing() -> bool:
            return source.errors >= 6
        await until(failing)
        assert len(await members()) == 3, "errors never empty the backend"
        backoff = source.delays[-6:]
        assert backoff == sorted(backoff) and backoff[-1] == 0.4, f"exponential, capped: {backoff}"
        assert backoff[0] >= 0.1
        flaky.mode = "pass"

        async def one() -> bool:
            return await members() == set(account.addresses(g)) and len(await members()) == 1
        await until(one)
        assert flaky.refused >= 6
        with contextlib.suppress(IndexError):
            assert source.delays[-1] == 0.05, "back to the normal interval"
    finally:
        task.cancel()
