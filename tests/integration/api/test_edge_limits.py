"""A real `haplane serve` against hostile requests without a token: a 70 MB login body (announced, and chunked)
and 50 MB of headers are refused early (413, 431) and the process' peak memory stays bounded."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.procs import Proc, free_port, short_tmpdir

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def serve() -> Iterator[tuple[int, Proc]]:
    tmp = short_tmpdir("edge")
    port = free_port()
    env = {**os.environ, "HAPLANE_TOKEN": "integration-admin-token"}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    proc = Proc([sys.executable, "-m", "haplane", "serve", "--state-dir", str(tmp / "state"), "--listen",
                 f"127.0.0.1:{port}"], tmp / "serve.log", env=env)
    proc.wait_answering(f"http://127.0.0.1:{port}/health")
    yield port, proc
    assert proc.stop() == 0, proc.log_tail()


def peak_mib(proc: Proc) -> float:
    """The process' peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def exchange(port: int, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` then the chunks until the server answers or closes; the answer and the bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(head)
            sent += len(head)
            for chunk in body_chunks:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: what it answered first is read below
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer, sent


def mib_chunks(n: int, prefix: bytes = b"") -> Iterator[bytes]:
    if prefix:
        yield prefix
    for _ in range(n):
        yield b"a" * MiB


def test_a_70_mb_login_is_refused_before_it_is_read(serve: tuple[int, Proc]) -> None:
    port, proc = serve
    before = peak_mib(proc)
    head = (b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
            + str(70 * MiB + 13).encode() + b"\r\n\r\n")
    answer, sent = exchange(port, head, mib_chunks(70, b'{"token": "'))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["setting"] == "max_body_bytes" and body["limit"] == MiB
    # chunked: no length announced; cut off once past the limit
    head = b"POST /auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = (b"%x\r\n%s\r\n" % (len(c), c) for c in mib_chunks(70, b'{"token": "'))
    answer, sent = exchange(port, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 70 * MiB, "the server read the whole body"
    assert peak_mib(proc) - before < 40, (before, peak_mib(proc))
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200


def test_50_mb_of_headers_are_refused_431(serve: tuple[int, Proc]) -> None:
    port, proc = serve
    before = peak_mib(proc)
    answer, sent = exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ", mib_chunks(50))
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"max_header_bytes" in answer
    assert sent < 50 * MiB and peak_mib(proc) - before < 40, (sent, before, peak_mib(proc))
    # a long URL is part of the head too
    answer, _ = exchange(port, b"GET /services/" + b"a" * (40 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n", iter(()))
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    # headers under the limit are served as before
    r = httpx.get(f"http://127.0.0.1:{port}/health", headers={"X-Pad": "p" * 20_000})
    assert r.status_code == 200
