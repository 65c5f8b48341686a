"""Serve the API inside the caller's event loop (``haplane serve``, ``haplane up``, tests).

uvicorn normally installs its own signal handlers; here the caller owns signals (one loop, one place that
decides to stop), so they are left alone, and cancelling ``serve_api`` shuts the server down gracefully.
The listening socket is bound here first, so an address in use is a clear ``ConfigurationError``, not a
``SystemExit`` from inside uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from haplane.errors import ConfigurationError


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the listener says it
    # is TCP; without it, keep-alive answers (headers and body written apart) wait 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve_api(app: Any, host: str, port: int, *, ssl_certfile: str | None = None,
                    ssl_keyfile: str | None = None, started: asyncio.Event | None = None,
                    sock: socket.socket | None = None) -> None:
    """Run until cancelled. ``started`` is set once the socket accepts connections."""
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise ConfigurationError("TLS needs both a certificate (tls_cert) and its key (tls_key)")
    sock = sock or bind_socket(host, port)
    config = uvicorn.Config(app, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                            log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3,
                            server_header=False)
    try:
        config.load()
    except Exception as exc:  # bad TLS files surface here
        sock.close()
        raise ConfigurationError(f"cannot start the API: {exc}") from None
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise ConfigurationError(f"the API did not start on {host}:{port}")
            await asyncio.sleep(0.005)
        if started is not None:
            started.set()
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        raise
    except SystemExit:
        raise ConfigurationError(f"the API could not start on {host}:{port}") from None
    finally:
        sock.close()
