"""An expected error with a real HAProxy is one clear line from haplane, never a traceback: the proxy's port is
taken, so HAProxy cannot bind it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.procs import short_tmpdir


def test_proxy_port_in_use_is_one_line(haproxy_bin: str, tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAPLANE_")}
    try:
        r = subprocess.run([sys.executable, "-m", "haplane", "agent", "--state-dir", str(short_tmpdir("hpee")),
                            "--store", "memory://", "--http-port", str(port), "--http-address", "127.0.0.1",
                            "--haproxy-bin", haproxy_bin], capture_output=True, text=True, timeout=60, env=env)
    finally:
        taken.close()
    assert r.returncode == 1
    assert "Traceback" not in r.stderr, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("haplane agent:")]
    assert len(errors) == 1 and "already in use" in errors[0] and f"127.0.0.1:{port}" in errors[0], r.stderr
    assert not any(" ERROR " in x for x in r.stderr.splitlines()), r.stderr  # said once, in that line
