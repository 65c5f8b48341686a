"""haplane's own logs: JSON lines for shippers, HAProxy's routine reload warnings at INFO, and expected errors as
one line without a traceback."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

from tests.support.procs import up_args

from haplane import logsetup
from haplane.haproxy.process import output_level


def test_json_lines() -> None:
    buf = io.StringIO()
    logsetup.configure("info", "json", stream=buf)
    try:
        logging.getLogger("haplane.test").info("reload %s: %s", "haproxy", 'backend "web" added')
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("haplane.test").exception("failed")
        logging.getLogger("haplane.test").debug("not shown")
    finally:
        logsetup.configure("warning", "text")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2  # one record, one line, even with a traceback
    first, second = (json.loads(x) for x in lines)
    assert first["level"] == "info" and first["logger"] == "haplane.test"
    assert first["message"] == 'reload haproxy: backend "web" added' and first["time"].endswith("Z")
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]


def test_routine_haproxy_warnings_are_info() -> None:
    # as HAProxy 2.6 prints them on every reload and stop (captured from a real one)
    routine = [
        "[WARNING]  (5183) : Proxy http stopped (cumulated conns: FE: 0, BE: 0).",
        "[WARNING]  (5183) : Proxy <HTTPCLIENT> stopped (cumulated conns: FE: 0, BE: 0).",
        "[WARNING]  (5167) : Former worker (5183) exited with code 0 (Exit)",
        "[WARNING]  (5167) : Exiting Master process...",
        "[WARNING]  (5167) : Current worker (5325) exited with code 0 (Exit)",
        "[WARNING]  (5167) : All workers exited. Exiting... (0)",
    ]
    assert {output_level(x) for x in routine} == {logging.INFO}
    assert output_level("[WARNING]  (5167) : Former worker (5183) exited with code 139 (Segmentation fault)") \
        == logging.WARNING
    assert output_level("[WARNING]  (1) : config : parsing [h.cfg:5] : 'option httplog' not usable") == logging.WARNING
    assert output_level("[ALERT]    (1) : Binding [h.cfg:22] for frontend http: cannot bind socket") == logging.ERROR
    assert output_level("[ALERT]    (1) : cannot bind socket", starting=True) == logging.DEBUG
    assert output_level("[NOTICE]   (5167) : Reloading HAProxy") == logging.INFO


def _haplane(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "haplane", *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_expected_errors_are_one_line(tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    free_port = free.getsockname()[1]
    free.close()
    cases = [
        (["serve", "--store", "bogus://x", "--listen", f"127.0.0.1:{free_port}"], "unknown store scheme"),
        (["serve", "--store", "memory://", "--listen", f"127.0.0.1:{port}"], "Address already in use"),
        (up_args("--state-dir", str(tmp_path / "a"), "--no-docker", "--listen", f"127.0.0.1:{free_port}",
                 "--haproxy-bin", str(tmp_path / "no-haproxy")), "cannot run"),
        (["--log-format", "json", "agent", "--state-dir", str(tmp_path / "b"), "--store", "bogus://",
          "--haproxy-bin", str(tmp_path / "no-haproxy")], "unknown store scheme"),
    ]
    for args, expected in cases:
        r = _haplane(*args)
        assert r.returncode == 1, (args, r.stderr)
        errors = [x for x in r.stderr.splitlines() if x.startswith("haplane ")]
        assert len(errors) == 1 and expected in errors[0], r.stderr
        assert "Traceback" not in r.stderr, r.stderr
    taken.close()
    r = _haplane("status", env={"HAPLANE_LOG_FORMAT": "jsn"})
    assert r.returncode == 2 and r.stderr.strip().endswith("must be one of text, json")
