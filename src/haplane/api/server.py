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
from typing import TYPE_CHECKING, Any

import uvicorn

from haplane.errors import ConfigurationError

if TYPE_CHECKING:
    from haplane.metrics import Metrics


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


def metrics_app(metrics: Metrics) -> Any:
    """A bare ASGI app serving ``/metrics`` and ``/health`` (``haplane agent`` with ``metrics_port``): health
    answers 200 with the version and the agent's status while the process serves (the container image's
    HEALTHCHECK asks it)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    from haplane import __version__
    from haplane.metrics import CONTENT_TYPE

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def get_health() -> JSONResponse:
        body: dict[str, Any] = {"status": "ok", "version": __version__}
        if metrics.agent is not None:
            body["agent"] = metrics.agent.status()
        return JSONResponse(body)

    @app.get("/metrics")
    async def get_metrics() -> Response:
        return Response(await metrics.scrape(), media_type=CONTENT_TYPE)

    return app


async def serve_metrics(metrics: Metrics, host: str, port: int, started: asyncio.Event | None = None) -> None:
    """Serve ``/metrics`` alone on ``host:port`` until cancelled."""
    await serve_api(metrics_app(metrics), host, port, started=started)
