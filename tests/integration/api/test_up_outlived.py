"""`haplane up` as a real process, killed and started again: HAProxy keeps serving while haplane is gone, the
next haplane attaches to the same HAProxy master (no restart, no request lost to it), and changes flow again;
a second haplane on the same state directory, or on a proxy port another process holds, is refused in one
line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.procs import MakeHttpBackend, Proc, free_port, short_tmpdir, up_args, wait_until

pytestmark = pytest.mark.integration

HAPLANE = [sys.executable, "-m", "haplane"]
TOKEN = "integration-admin-token"
H = {"Authorization": f"Bearer {TOKEN}"}


def start_up(state: Path, api_port: int, proxy_port: int, log: Path, *extra: str) -> Proc:
    env = {**os.environ, "HAPLANE_TOKEN": TOKEN, "HAPLANE_RAMP_MIN": "10", "HAPLANE_DRAIN_TIMEOUT": "0"}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    return Proc([*HAPLANE, *up_args("--state-dir", str(state), "--listen", f"127.0.0.1:{api_port}", "--http-port",
                 str(proxy_port), "--http-address", "127.0.0.1", "--no-docker", *extra)], log, env=env)


def master_pid(state: Path) -> int:
    return int(json.loads((state / "haproxy.master").read_text())["pid"])


def wait_ready(api: str, proc: Proc) -> None:
    def ready() -> bool:
        assert proc.alive(), proc.log_tail()
        r = httpx.get(api + "/health", headers=H, timeout=1)
        agent = r.json()["agent"] if r.status_code == 200 else {}
        return bool(agent.get("haproxy_ok") and agent.get("config_hash"))  # HAProxy runs the registry's config

    wait_until(ready, 30, what=f"{api} ready")


@pytest.fixture
def state() -> Iterator[Path]:
    state = short_tmpdir("upk")
    yield state
    # whatever a test left running (HAProxy outlives a killed haplane by design)
    record = state / "haproxy.master"
    if record.exists():
        with_pid = json.loads(record.read_text())["pid"]
        try:
            os.kill(with_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Prober:
    """Requests through the proxy, one after another, from a thread: how many were answered 200 and how many
    were not, while haplane is killed and started again."""

    def __init__(self, url: str, host: str) -> None:
        self.url, self.host = url, host
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=3, headers={"Host": self.host}) as client:
            while not self._stop.is_set():
                try:
                    r = client.get(self.url)
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failed += 1
                        self.errors.append(str(r.status_code))
                except httpx.HTTPError as exc:
                    self.failed += 1
                    self.errors.append(repr(exc))
                time.sleep(0.01)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_killed_haplane_leaves_haproxy_serving_and_the_next_one_adopts_it(
        tmp_path: Path, state: Path, http_backends: MakeHttpBackend, loopback: Callable[[], str]) -> None:
    api_port, proxy_port = free_port(), free_port()
    api, proxy = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{proxy_port}/"
    first = start_up(state, api_port, proxy_port, tmp_path / "first.log")
    wait_ready(api, first)
    a, b = http_backends("a", loopback()), http_backends("b", loopback())
    web = {"predicate": "web.test", "port": a.port}
    assert httpx.put(f"{api}/services/web", json=web, headers=H).status_code == 201
    assert httpx.put(f"{api}/services/web/instances/a", json={"address": a.host}, headers=H).status_code == 201
    wait_until(lambda: httpx.get(proxy, headers={"Host": "web.test"}).status_code == 200, 20, what="web routed")
    pid = master_pid(state)

    with Prober(proxy, "web.test") as probe:
        time.sleep(0.3)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        time.sleep(1.0)  # haplane is gone: HAProxy alone answers
        answered_alone = probe.ok
        second = start_up(state, api_port, proxy_port, tmp_path / "second.log")
        wait_ready(api, second)
        time.sleep(0.3)
    assert probe.failed == 0, probe.errors[:5]
    assert answered_alone > 10 and probe.ok > answered_alone
    assert master_pid(state) == pid  # the same HAProxy master: adopted, not replaced
    os.kill(pid, 0)
    assert "attached to the HAProxy left running" in second.log.read_text()

    # changes flow again through the adopted HAProxy: a new instance is routed
    assert httpx.put(f"{api}/services/web/instances/b", json={"address": f"{b.host}:{b.port}"},
                     headers=H).status_code == 201

    def both() -> bool:
        seen = {httpx.get(proxy, headers={"Host": "web.test"}).headers.get("x-backend") for _ in range(12)}
        return seen == {"a", "b"}

    wait_until(both, 20, what="the new instance routed by the adopted HAProxy")
    # a clean stop still stops HAProxy (no --keep-haproxy)
    assert second.stop(sig=signal.SIGTERM) == 0, second.log_tail()
    wait_until(lambda: not _alive(pid), 10, what="HAProxy stopped with haplane")
    assert not (state / "haproxy.master").exists()


def test_keep_haproxy_leaves_it_serving_after_a_clean_stop(tmp_path: Path, state: Path) -> None:
    api_port, proxy_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    first = start_up(state, api_port, proxy_port, tmp_path / "first.log", "--keep-haproxy")
    wait_ready(api, first)
    pid = master_pid(state)
    assert first.stop(sig=signal.SIGTERM) == 0, first.log_tail()
    assert _alive(pid) and _accepts(proxy_port)
    second = start_up(state, api_port, proxy_port, tmp_path / "second.log")
    wait_ready(api, second)
    assert master_pid(state) == pid
    assert second.stop(sig=signal.SIGTERM) == 0
    wait_until(lambda: not _alive(pid), 10, what="HAProxy stopped")


def test_a_second_haplane_on_the_same_state_dir_is_refused(tmp_path: Path, state: Path) -> None:
    api_port, proxy_port = free_port(), free_port()
    first = start_up(state, api_port, proxy_port, tmp_path / "first.log")
    wait_ready(f"http://127.0.0.1:{api_port}", first)
    r = subprocess.run([*HAPLANE, *up_args("--state-dir", str(state), "--listen", f"127.0.0.1:{free_port()}",
                        "--http-port", str(free_port()), "--http-address", "127.0.0.1", "--no-docker")],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "HAPLANE_TOKEN": TOKEN})
    assert r.returncode != 0
    assert "another haplane" in r.stderr and str(state) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert first.alive() and first.stop(sig=signal.SIGTERM) == 0


def test_a_proxy_port_already_held_is_refused_in_one_line(tmp_path: Path, state: Path) -> None:
    """Another process (here a plain listening socket, as another HAProxy would hold it) has the proxy port:
    haplane up says which port, exits non-zero, and HAProxy does not share it (no SO_REUSEPORT)."""
    proxy_port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", proxy_port))
        held.listen()
        r = subprocess.run([*HAPLANE, *up_args("--state-dir", str(state), "--listen", f"127.0.0.1:{free_port()}",
                            "--http-port", str(proxy_port), "--http-address", "127.0.0.1", "--no-docker")],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "HAPLANE_TOKEN": TOKEN})
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("haplane")]
    assert len(errors) == 1 and f"127.0.0.1:{proxy_port}" in errors[0], r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert not (state / "haproxy.master").exists()


def test_a_second_haplane_on_a_held_proxy_port_is_refused(tmp_path: Path, state: Path) -> None:
    """Another haplane already serves the proxy port: the second one (its own state directory) fails in one
    line naming the port, and the first keeps the port to itself (no SO_REUSEPORT sharing)."""
    api_port, proxy_port = free_port(), free_port()
    first = start_up(state, api_port, proxy_port, tmp_path / "first.log")
    wait_ready(f"http://127.0.0.1:{api_port}", first)
    other = short_tmpdir("upk2")
    r = subprocess.run([*HAPLANE, *up_args("--state-dir", str(other), "--listen", f"127.0.0.1:{free_port()}",
                        "--http-port", str(proxy_port), "--http-address", "127.0.0.1", "--no-docker")],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "HAPLANE_TOKEN": TOKEN})
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("haplane")]
    assert len(errors) == 1 and f"127.0.0.1:{proxy_port}" in errors[0], r.stderr
    assert "Traceback" not in r.stderr and not (other / "haproxy.master").exists(), r.stderr
    assert first.alive() and _accepts(proxy_port)
    assert first.stop(sig=signal.SIGTERM) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0
