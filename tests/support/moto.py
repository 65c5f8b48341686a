"""moto in server mode: a real HTTP endpoint speaking AWS's APIs (AutoScaling, EC2, DynamoDB), started as a
process, that boto3 is pointed at with ``endpoint_url``. Pytest-free; the fixtures that use it live in the
conftests that need it (``moto_server``)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from support.procs import Proc, free_port, wait_until

# moto needs credentials and a region to sign with; they are fake and never leave the machine
FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class MotoServer:
    def __init__(self, proc: Proc, url: str) -> None:
        self.proc = proc
        self.url = url

    def reset(self) -> None:
        """Forget every resource (moto's /moto-api/reset)."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()


def _moto_server_bin() -> list[str]:
    """moto's own server, with its requests serialised (moto_serial.py says why)."""
    # -P: the script's folder (which holds this moto.py) must not shadow the moto package
    return [sys.executable, "-P", str(Path(__file__).with_name("moto_serial.py"))]


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="moto")) / "moto.log"
    env = {**os.environ, **FAKE_AWS_ENV}
    proc = Proc([*_moto_server_bin(), "-H", "127.0.0.1", "-p", str(port)], log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500, timeout=60,
                   what=f"moto server on {url} (log: {log})")
        yield MotoServer(proc, url)
    finally:
        proc.stop()
