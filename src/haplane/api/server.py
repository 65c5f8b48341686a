"""Serve the API inside the caller's event loop (``haplane serve``, ``haplane up``, tests).

uvicorn normally installs its own signal handlers; here the caller owns signals (one loop, one place that
decides to stop), so they are left alone, and cancelling ``serve_api`` shuts the server down gracefully.
The listening socket is bound here first, so an address in use is a clear ``ConfigurationError``, not a
``SystemExit`` from inside uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import uvicorn

from haplane.errors import ConfigurationError

if TYPE_CHECKING:
    from haplane.metrics import Metrics


def http_protocol(max_header_bytes: int) -> type[asyncio.Protocol] | str:
    """uvicorn's HTTP protocol with the request line and headers bounded to ``max_header_bytes``: beyond it the
    request is answered 431 and the connection closed. httptools (the C parser, picked when installed: twice
    h11's requests/s) buffers a header however long it grows, so its protocol counts the bytes of a request's
    head as they arrive; h11 (without httptools) takes the bound itself (``h11_max_incomplete_event_size``)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is a dependency
        return "h11"

    class HeadTooLarge(Exception):
        pass

    class HeadBounded(HttpToolsProtocol):
        _head = 0  # bytes received since the request began, while its head is incomplete
        _in_head = True
        _too_large = False

        def on_message_begin(self) -> None:
            self._head, self._in_head = 0, True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > max_header_bytes:  # the whole head came in one read
                self._too_large = True
                raise HeadTooLarge  # httptools stops parsing; uvicorn answers 400, send_400_response makes it 431
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            in_head = self._in_head
            super().data_received(data)
            if in_head and self._in_head and not self.transport.is_closing():
                self._head += len(data)
                if self._head > max_header_bytes:  # still no end of the head: stop before it grows further
                    self._refuse()

        def send_400_response(self, msg: str) -> None:
            if self._too_large:
                self._refuse()
            else:
                super().send_400_response(msg)

        def _refuse(self) -> None:
            body = json.dumps({"error": "TooLarge", "field": "headers",
                               "detail": f"headers: more than the limit of {max_header_bytes} bytes (setting "
                                         "max_header_bytes, HAPLANE_MAX_HEADER_BYTES)",
                               "limit": max_header_bytes, "setting": "max_header_bytes"}).encode()
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json"
                                 b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + body)
            self.transport.close()

    return HeadBounded


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
                    sock: socket.socket | None = None, max_header_bytes: int = 32 * 1024) -> None:
    """Run until cancelled. ``started`` is set once the socket accepts connections; a request whose line and
    headers pass ``max_header_bytes`` is refused (431)."""
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise ConfigurationError("TLS needs both a certificate (tls_cert) and its key (tls_key)")
    sock = sock or bind_socket(host, port)
    config = uvicorn.Config(app, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                            log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3,
                            server_header=False, http=http_protocol(max_header_bytes),
                            h11_max_incomplete_event_size=max_header_bytes)
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
