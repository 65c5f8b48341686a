"""A real agent driving a real HAProxy, in-process, with real HTTP backends on 127.0.0.x."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from haplane.agent.runner import AgentBundle, build_agent
from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.settings import load

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Backend._Server

    def do_GET(self) -> None:
        self.server.owner.hits += 1
        delay = self.server.owner.delay
        if delay:
            threading.Event().wait(delay)
        body = f"backend={self.server.owner.name}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Backend:
    name: str
    address: str
    port: int
    hits: int = 0
    delay: float = 0.0
    _srv: Any = field(default=None, repr=False)

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        owner: Backend

    def start(self) -> Backend:
        self._srv = self._Server((self.address, self.port), _Handler)
        self._srv.owner = self
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    made: list[Backend] = []
    yield made
    for b in made:
        b.stop()


class LogLines(logging.Handler):
    """The messages haplane logs (logger ``haplane``) while the ``log_lines`` fixture runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    lines = LogLines()
    logger = logging.getLogger("haplane")
    logger.addHandler(lines)
    yield lines
    logger.removeHandler(lines)


_next_ip = [10]


def new_backend(made: list[Backend], name: str) -> Backend:
    _next_ip[0] = _next_ip[0] % 250 + 1
    addr = f"127.0.0.{_next_ip[0] + 1}"
    b = Backend(name, addr, free_port(addr)).start()
    made.append(b)
    return b


@dataclass
class Rig:
    bundle: AgentBundle
    reg: RegistryStore
    proxy: str
    client: httpx.AsyncClient

    async def get(self, host: str, path: str = "/", **kw: Any) -> httpx.Response:
        kw.setdefault("headers", {"Host": host})
        return await self.client.get(self.proxy + path, **kw)

    async def reloads(self) -> int:
        return await self.bundle.control.reloads()

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until the agent has applied everything in the store (reloads included)."""
        agent = self.bundle.agent
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            rev = await self.bundle.store.revision()
            if agent.status.revision >= rev and agent.idle:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("agent did not settle")
            await asyncio.sleep(0.01)

    async def until_status(self, host: str, status: int, timeout: float = 5.0, path: str = "/") -> httpx.Response:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                r = await self.get(host, path)
            except httpx.TransportError:  # HAProxy restarting: not an answer yet
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            if r.status_code == status:
                return r
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{host}{path}: still {r.status_code} {r.text!r} after {timeout}s")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def agent_rig(tmp_path: Path, env: dict[str, str] | None = None, **settings: Any) -> AsyncIterator[Rig]:
    """A real agent and HAProxy; ``settings`` are options, ``env`` the environment they are read with."""
    if not Path(HAPROXY).exists():
        pytest.skip("haproxy is not installed")
    port = free_port()
    base = {"state_dir": str(tmp_path / "state"), "store": "memory://", "http_port": port,
            "http_address": "127.0.0.1", "ramp_interval": 0, "drain_timeout": 0, "reload_interval": 0.2,
            "resync_interval": 3600, "haproxy_bin": HAPROXY}
    base.update(settings)
    bundle = build_agent(load(base, env=env or {}))
    await bundle.open()
    task = asyncio.create_task(bundle.agent.run())
    try:
        await asyncio.wait_for(bundle.agent.ready.wait(), 20)
        async with httpx.AsyncClient(timeout=5) as client:
            yield Rig(bundle, RegistryStore(bundle.store), f"http://127.0.0.1:{base['http_port']}", client)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await bundle.close()


@contextlib.asynccontextmanager
async def rig_with_app(tmp_path: Path, backends: list[Backend], instance: str) -> AsyncIterator[Rig]:
    """``agent_rig`` routing service ``app`` (host app.test) to one instance, ``instance`` on backend ``a``."""
    async with agent_rig(tmp_path) as rig:
        a = new_backend(backends, "a")
        await rig.reg.put_service(Service("app", "host", "app.test"))
        await rig.reg.put_instance(Instance(instance, "app", a.address, a.port))
        await rig.until_status("app.test", 200)
        yield rig
