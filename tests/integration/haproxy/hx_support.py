"""Helpers for tests (and bench/) that drive a real HAProxy on loopback.

- ``haproxy_bin()``: the binary (``HAPLANE_HAPROXY_BIN``, else ``haproxy`` on PATH, else ``/usr/sbin/haproxy``)
  or None;
- ``free_port(host)``: a TCP port nothing listens on at ``host`` now;
- ``Backend``: a tiny asyncio HTTP/1.1 server on 127.0.0.x answering its own name (and ``/health``);
- ``http_get``: one request on a fresh connection, returning status, headers and body;
- ``short_tmpdir``: a short temporary directory (UNIX socket paths are limited to 107 bytes, and HAProxy
  binds ``<path>.<pid>.tmp`` first).

Network rule: everything listens on 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from support.tlsclient import Served, tls_served  # noqa: F401 - for the tests beside this module

if TYPE_CHECKING:
    from haplane.haproxy.process import HAProxyProcess

StartHAProxy = Callable[..., Awaitable["HAProxyProcess"]]  # the start_haproxy fixture (conftest.py)


def haproxy_bin() -> str | None:
    explicit = os.environ.get("HAPLANE_HAPROXY_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("haproxy")
    if found:
        return found
    for candidate in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def short_tmpdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="hx")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Backend:
    """An HTTP server at ``host:port`` whose every answer is its ``name`` (status ``status``)."""

    name: str
    host: str
    port: int = 0
    status: int = 200
    requests: int = 0
    health_requests: int = 0
    server: asyncio.AbstractServer | None = field(default=None, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await self.server.wait_closed()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                if path.startswith("/health"):
                    self.health_requests += 1
                else:
                    self.requests += 1
                body = self.name.encode()
                close = headers.get("connection", "").lower() == "close" or lines[0].endswith("HTTP/1.0")
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(body)}\r\nX-Server: {self.name}\r\n"
                    f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode() + body)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def backends(*specs: tuple[str, str]) -> AsyncIterator[list[Backend]]:
    """Start one ``Backend(name, host)`` per spec; stop them all at the end."""
    started = [await Backend(name, host).start() for name, host in specs]
    try:
        yield started
    finally:
        for b in started:
            await b.stop()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def server(self) -> str | None:
        return self.headers.get("x-server")


async def http_get(port: int, path: str = "/", *, host: str = "127.0.0.1", headers: dict[str, str] | None = None,
                   timeout: float = 5.0) -> Response:
    """GET ``path`` on a fresh connection (``Connection: close``); status, lower-cased headers, body."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            hdrs = {"Host": "test", "Connection": "close", **(headers or {})}
            req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
            writer.write(req.encode())
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and len(lines[0].split(" ")) > 1 else 0
    out: dict[str, str] = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        key = k.strip().lower()
        out[key] = (out[key] + ", " + v.strip()) if key in out else v.strip()
    return Response(status, out, body.decode("latin-1"))


def base_config(state_dir: str, port: int, backend_body: str, *, frontend_extra: str = "",
                defaults_extra: str = "", global_extra: str = "") -> str:
    """A small config with haplane's control lines, one frontend on 127.0.0.1:``port`` and ``backend_body``
    (whole ``backend ...`` sections)."""
    from haplane.haproxy.process import control_globals

    ctl = control_globals(state_dir, hard_stop_after="3s")
    g = "\n".join(f"    {ln}" for ln in ctl.global_lines)
    d = "\n".join(f"    {ln}" for ln in ctl.defaults_lines)
    return f"""global
{g}
    nbthread 2
{global_extra}
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
{d}
{defaults_extra}
frontend fe
    bind 127.0.0.1:{port}
{frontend_extra}
    default_backend b

{backend_body}
"""

