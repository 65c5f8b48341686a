"""A prober in its own process, so polling never competes with the agent for its event loop.

    python bench/_probe.py http://127.0.0.1:PORT/

Reads lines ``HOST WANT [TIMEOUT]`` on stdin (TIMEOUT in seconds, default 10); polls ``GET /`` with that Host
header over one keep-alive connection
until the body equals WANT, then prints the CLOCK_MONOTONIC time (``time.monotonic()``, comparable across
processes on Linux) at which the answer arrived, or ``timeout``.
"""

from __future__ import annotations

import http.client
import sys
import time
from urllib.parse import urlsplit


def main() -> None:
    url = urlsplit(sys.argv[1])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=5)
    for line in sys.stdin:
        host, want, *rest = line.split()
        deadline = time.monotonic() + (float(rest[0]) if rest else 10)
        result = "timeout"
        while time.monotonic() < deadline:
            try:
                conn.request("GET", "/", headers={"Host": host})
                resp = conn.getresponse()
                body = resp.read().decode()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=5)
                continue
            if resp.status == 200 and body == want:
                result = repr(time.monotonic())
                break
        print(result, flush=True)


if __name__ == "__main__":
    main()
