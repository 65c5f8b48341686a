"""Real processes and servers for tests and benchmarks, on loopback only. No pytest in here.

- ``free_port(host)``: a TCP port nothing listens on at ``host`` now.
- ``LoopbackAllocator`` / ``next_loopback()``: distinct ``127.0.0.x`` addresses for backends (Linux routes all
  of 127.0.0.0/8 to ``lo``, so any of them can be bound without set-up).
- ``short_tmpdir(prefix)``: a short directory under ``/tmp`` (UNIX socket paths are limited to 107 bytes),
  removed at interpreter exit at the latest.
- ``HttpBackend`` / ``http_backend(addr, port, name)``: a threaded HTTP/1.1 server (keep-alive) answering
  ``backend=<name>``, with ``/health``.
- ``EtcdCluster``: n real ``etcd`` members on 127.0.0.1; kill (SIGKILL) and restart members, find the leader,
  talk to the v3 JSON gateway. With ``tls=EtcdTLS(...)`` the client port speaks only TLS and (by default)
  demands a client certificate signed by the CA; ``enable_auth(user, password)`` turns on etcd's
  username/password authentication.
- ``Dockerd``: a real ``dockerd`` with its own data root, exec root and socket; restart it mid-test.
  ``build_busybox_image`` imports a tiny image made of the host's static busybox.

Every process started here runs in its own session (process group), its output goes to a log file beside its
data, and it is killed when stopped, at ``cleanup_all()`` and at interpreter exit; anything else still running
from one of our directories (dockerd's containerd and shims) is killed too, and mounts left under them are
detached. Blocking methods are synchronous: from async code call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import ctypes.util
import io
import itertools
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from .pki import Pki

__all__ = [
    "BUSYBOX_IMAGE",
    "MakeEtcdCluster",
    "MakeHttpBackend",
    "Dockerd",
    "EtcdCluster",
    "EtcdMember",
    "EtcdTLS",
    "SecureEtcd",
    "HttpBackend",
    "LoopbackAllocator",
    "Proc",
    "ProcessError",
    "build_busybox_image",
    "cleanup_all",
    "find_binary",
    "free_port",
    "http_backend",
    "next_loopback",
    "short_tmpdir",
    "up_args",
    "wait_until",
]

BUSYBOX_IMAGE = "haplane-test/busybox:1"


class ProcessError(RuntimeError):
    """A test process did not start, did not become ready, or died; the message carries its log's tail."""


# --------------------------------------------------------------------------------------------------------------
# ports, addresses, directories, waiting


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` right now (the kernel's pick; another process may take it
    before you bind it, so bind soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LoopbackAllocator:
    """Hands out distinct ``127.0.0.x`` addresses, ``first`` to ``last`` and round again; thread-safe.

    The default range (100-254) keeps clear of the low addresses tests pick by hand (127.0.0.1-.99)."""

    def __init__(self, first: int = 100, last: int = 254) -> None:
        if not 1 <= first <= last <= 254:
            raise ValueError(f"bad loopback range {first}-{last}")
        self._cycle = itertools.cycle(range(first, last + 1))
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            return f"127.0.0.{next(self._cycle)}"

    __call__ = next


_LOOPBACK = LoopbackAllocator()


def next_loopback() -> str:
    """The next address from the process-wide allocator."""
    return _LOOPBACK.next()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; ``TimeoutError`` naming ``what`` after ``timeout`` seconds.
    Exceptions from ``predicate`` count as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def _tmp_base() -> str:
    # /tmp keeps socket paths short; a long $TMPDIR would not.
    return "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else tempfile.gettempdir()


_OWNED_DIRS: list[Path] = []
_PROCS: list[Proc] = []
_EXTRA_CLEANUPS: list[Callable[[], None]] = []
_LOCK = threading.RLock()


def short_tmpdir(prefix: str = "hp") -> Path:
    """A fresh directory with a short path (e.g. ``/tmp/hp-dk-1a2b3c4d``), owned by this module: at
    ``cleanup_all`` or exit, processes whose command line names it are killed, mounts under it are detached, and
    it is removed. Remove it earlier with ``release_dir``."""
    d = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=_tmp_base()))
    with _LOCK:
        _OWNED_DIRS.append(d)
    return d


def release_dir(d: Path, background: bool = False) -> None:
    """Kill what still runs from ``d``, detach mounts under it, remove it; ``background``: renamed at once and
    removed by an ``rm`` of its own that nobody waits for (where that takes long: dockerd's vfs layers)."""
    _kill_processes_mentioning(str(d))
    _detach_mounts_under(d)
    if not (background and _remove_in_background(d)):
        shutil.rmtree(d, ignore_errors=True)
    with _LOCK:
        if d in _OWNED_DIRS:
            _OWNED_DIRS.remove(d)


def _remove_in_background(d: Path) -> bool:
    """Rename ``d`` aside and start ``rm -rf`` on it in a session of its own (``setsid -f``: it outlives us and is
    nobody's child to reap); False (``d`` left in place) where that cannot be done."""
    setsid, rm = shutil.which("setsid"), shutil.which("rm")
    if setsid is None or rm is None:
        return False
    trash = d.with_name(f"{d.name}.removing")
    try:
        d.rename(trash)
    except OSError:
        return False
    try:
        started = subprocess.run([setsid, "-f", rm, "-rf", "--one-file-system", "--", str(trash)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 timeout=10, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        started = False
    if not started:
        shutil.rmtree(trash, ignore_errors=True)
    return True


def find_binary(name: str, *candidates: str, env: str | None = None) -> str | None:
    """``$env`` if set (and executable), else ``name`` on PATH, else the first executable of ``candidates``."""
    if env and os.environ.get(env):
        explicit = os.environ[env]
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which(name)
    if found:
        return found
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    return None


# --------------------------------------------------------------------------------------------------------------
# processes


_SETPRIV = shutil.which("setpriv")


def up_args(*args: str, https_port: int = 0, https_address: str = "127.0.0.1") -> list[str]:
    """``haplane``'s arguments for ``up ARGS`` in a test: HTTPS off (``--https-port 0``), or on ``https_port`` at
    ``https_address`` only. ``up``'s own default, HTTPS on *:8443 (every address), would collide between test
    runs that overlap on one machine; ``Proc`` refuses a ``haplane up`` that says nothing about HTTPS."""
    https = ["--https-port", str(https_port)]
    if https_port:
        https += ["--https-address", https_address]
    return ["up", *https, *args]


def _binds_the_default_https(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """True for ``[... haplane [OPTIONS] up ...]`` with neither ``--https-port`` nor ``HAPLANE_HTTPS_PORT``."""
    names = [i for i, a in enumerate(argv) if a == "haplane" or a.endswith("/haplane")]
    if not names or "up" not in argv[names[0] + 1:]:
        return False
    told = any(a == "--https-port" or a.startswith("--https-port=") for a in argv)
    return not told and "HAPLANE_HTTPS_PORT" not in env


class Proc:
    """A child process in its own session, output to ``log``; registered for cleanup at exit.

    When started from the main thread it also gets SIGKILL if the test process dies (``setpriv --pdeathsig``;
    not from other threads, because the signal follows the thread that forked, not the process)."""

    def __init__(self, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log = log
        full_env = dict(os.environ if env is None else env)
        if _binds_the_default_https(self.argv, full_env):
            raise ValueError(f"a test's `haplane up` must say where HTTPS goes (it binds *:8443 by default, which "
                             f"overlapping runs share): build its arguments with up_args(...): {self.argv}")
        prefix: list[str] = []
        if _SETPRIV and threading.current_thread() is threading.main_thread():
            prefix = [_SETPRIV, "--pdeathsig", "KILL", "--"]
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                prefix + self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=full_env, cwd=cwd, start_new_session=True)
        with _LOCK:
            _PROCS.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the process only (not its group)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if still running after ``timeout``."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """``sig``, then SIGKILL to the whole process group after ``timeout``; returns the exit status."""
        if self.alive():
            self.send_signal(sig)
            if self.wait(timeout) is None:
                self.kill()
        rc = self.popen.wait()
        self._forget()
        return rc

    def kill(self) -> int:
        """SIGKILL to the process group (its session, which we created); returns the exit status."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        rc = self.popen.wait()
        self._forget()
        return rc

    def _forget(self) -> None:
        with _LOCK:
            if self in _PROCS:
                _PROCS.remove(self)

    def wait_answering(self, url: str, timeout: float = 30.0, verify: bool | ssl.SSLContext = True) -> None:
        """Poll ``url`` until it answers 200 (a server this process runs). ``ProcessError`` with the log's tail as
        soon as the process exits, ``TimeoutError`` (with it too) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ProcessError(f"{self.argv[:4]} exited with {self.popen.returncode} before {url} answered:\n"
                                   f"{self.log_tail()}")
            try:
                if httpx.get(url, verify=verify, timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not answering 200 after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _kill_processes_mentioning(needle: str) -> None:
    """SIGKILL every process (other than us) whose command line contains ``needle``: the helpers that our
    daemons started in their own sessions (dockerd's containerd, containerd's shims)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


_MNT_DETACH = 2


def _pid_state(pid: int) -> str | None:
    """The state letter of ``pid`` (``R``, ``S``, ``Z``...) or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split(" ", 1)[0]


def _kill_cgroup_members(name: str) -> None:
    """SIGKILL every process in a cgroup whose path has the component ``name`` (containers of one dockerd, run
    under ``--cgroup-parent /<name>``: their init processes outlive a killed containerd), then remove the
    emptied cgroup directories."""
    needle = f"/{name}/"
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            groups = (entry / "cgroup").read_text()
        except OSError:
            continue
        if needle in groups or groups.rstrip().endswith(f"/{name}"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
    root = Path("/sys/fs/cgroup")
    with contextlib.suppress(OSError):
        candidates = [root / name, *(h / name for h in root.iterdir() if h.is_dir())]
        for top in candidates:
            if top.is_dir():
                for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                                  reverse=True):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()


def _detach_mounts_under(d: Path) -> None:
    """Lazily unmount everything mounted under ``d`` (dockerd leaves ``<exec-root>/netns/default``, and
    containers' ``shm`` if it dies hard), deepest first."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    prefix = str(d).rstrip("/") + "/"
    points = []
    for line in lines:
        parts = line.split()
        if len(parts) > 4:
            point = parts[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    if not points:
        return
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None
    for point in sorted(points, key=len, reverse=True):
        if libc is not None and libc.umount2(point.encode(), _MNT_DETACH) == 0:
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=10, check=False)


def cleanup_all() -> None:
    """Kill every process started here and release every directory made here. Idempotent; runs at exit."""
    with _LOCK:
        procs = list(reversed(_PROCS))
        dirs = list(reversed(_OWNED_DIRS))
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    with _LOCK:
        extra = list(_EXTRA_CLEANUPS)
    for fn in extra:
        with contextlib.suppress(Exception):
            fn()
    for d in dirs:
        with contextlib.suppress(Exception):
            release_dir(d)


atexit.register(cleanup_all)


def _client(timeout: float = 2.0) -> httpx.Client:
    # trust_env=False: a proxy from the environment must never see loopback test traffic.
    return httpx.Client(timeout=timeout, trust_env=False)


# --------------------------------------------------------------------------------------------------------------
# HTTP backends


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection's thread ends after this
    server: _BackendServer

    def setup(self) -> None:
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)

    def _answer(self, body_wanted: bool) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        with owner.lock:
            owner.paths.append(self.path)
        if path == "/health":
            with owner.lock:
                owner.health_hits += 1
            status, body = (200, b"ok") if owner.healthy else (503, b"unhealthy")
        else:
            with owner.lock:
                owner.hits += 1
            if owner.delay:
                time.sleep(owner.delay)
            status, body = owner.status, f"backend={owner.name}".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", owner.name)
        self.end_headers()
        if body_wanted:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(True)

    def do_POST(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _BackendServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: HttpBackend
    conns: set[socket.socket]
    conns_lock: threading.Lock


@dataclass
class HttpBackend:
    """A real HTTP/1.1 server at ``host:port`` (port 0: pick one at start).

    ``GET/POST/HEAD <any path>`` answers ``status`` with the body ``backend=<name>`` and header
    ``X-Backend: <name>``, after ``delay`` seconds; ``/health`` answers 200 ``ok`` while ``healthy``, else 503.
    Connections are kept alive. ``hits``, ``health_hits`` and ``paths`` count what arrived. ``stop()`` closes the
    listener and every open connection; ``start()`` again binds the same port."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    status: int = 200
    healthy: bool = True
    delay: float = 0.0
    hits: int = 0
    health_hits: int = 0
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _srv: _BackendServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._srv is not None

    def start(self) -> HttpBackend:
        if self._srv is not None:
            return self
        srv = _BackendServer((self.host, self.port), _Handler)
        srv.owner = self
        srv.conns = set()
        srv.conns_lock = threading.Lock()
        self.port = int(srv.server_address[1])
        self._srv = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"backend-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        srv, self._srv = self._srv, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        with srv.conns_lock:
            conns = list(srv.conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> HttpBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MakeHttpBackend(Protocol):
    """The ``http_backends`` fixture: start a backend (``addr`` None: the next 127.0.0.x), stopped after the
    test."""

    def __call__(self, name: str = "backend", addr: str | None = None, port: int = 0) -> HttpBackend: ...


def http_backend(addr: str = "127.0.0.1", port: int = 0, name: str = "backend") -> HttpBackend:
    """Start and return an ``HttpBackend`` (the caller stops it, or uses it as a context manager)."""
    return HttpBackend(name=name, host=addr, port=port).start()


# --------------------------------------------------------------------------------------------------------------
# etcd


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


@dataclass(frozen=True)
class EtcdTLS:
    """TLS on the members' client port: etcd serves ``cert``/``key``; with ``client_cert_auth`` it refuses any
    client without a certificate signed by ``ca``. ``client_cert``/``client_key`` are what this fixture (and
    the tests, through ``client_files``) present. Peers still talk plain HTTP to each other on loopback."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    client_cert_auth: bool = True

    @classmethod
    def from_pki(cls, pki: Pki) -> EtcdTLS:
        """etcd serving ``support.pki``'s server certificate, demanding client certificates of its CA."""
        return cls(ca=pki.ca, cert=pki.server_cert, key=pki.server_key, client_cert=pki.client_cert,
                   client_key=pki.client_key)


@dataclass
class EtcdMember:
    """One member: its name, ports on ``host``, data directory and process (None while down)."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    host: str = "127.0.0.1"
    proc: Proc | None = None
    tls: bool = False

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()


class EtcdCluster:
    """``n`` real etcd members on 127.0.0.1 in ``base_dir`` (default: a fresh short tmp dir).

    ``start()`` launches them all and waits until every member reports ``/health`` true (a leader elected).
    Timings are tightened for tests (heartbeat 50 ms, election timeout 500 ms), so a killed leader is replaced
    within about a second. Member ids in this API are indexes ``0..n-1``.
    """

    def __init__(self, n: int = 3, etcd_bin: str | None = None, base_dir: Path | None = None,
                 heartbeat_ms: int = 50, election_ms: int = 500, tls: EtcdTLS | None = None,
                 auth_token_ttl: int | None = None, extra_args: Sequence[str] = ()) -> None:
        if n < 1:
            raise ValueError("an etcd cluster needs at least one member")
        found = etcd_bin or find_binary("etcd", "/usr/bin/etcd", env="HAPLANE_ETCD_BIN")
        if not found:
            raise FileNotFoundError("etcd binary not found (Debian: apt-get install etcd-server)")
        self.etcd_bin = found
        self.n = n
        self.base_dir = base_dir if base_dir is not None else short_tmpdir("hp-etcd")
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.token = f"hp-{uuid.uuid4().hex[:8]}"
        self.tls = tls
        self.auth_token_ttl = auth_token_ttl  # seconds etcd's simple auth tokens live (etcd's default: 300)
        self.extra_args = list(extra_args)  # more etcd flags, e.g. --max-txn-ops
        self.auth: tuple[str, str] | None = None  # (user, password) once enable_auth ran
        self.members: list[EtcdMember] = []
        self._allocate()

    def _allocate(self) -> None:
        self.members = []
        for i in range(self.n):
            self.members.append(EtcdMember(
                name=f"m{i}", client_port=free_port(), peer_port=free_port(), data_dir=self.base_dir / f"m{i}",
                tls=self.tls is not None))

    # -- what tests use

    @property
    def endpoints(self) -> list[str]:
        """Client URLs of all members (``http://127.0.0.1:PORT``), alive or not, in member order."""
        return [m.client_url for m in self.members]

    @property
    def endpoint(self) -> str:
        """The first live member's client URL."""
        for m in self.members:
            if m.alive:
                return m.client_url
        raise ProcessError("no etcd member is running")

    @property
    def hostports(self) -> list[str]:
        """``127.0.0.1:PORT`` of every member, for URLs like ``etcd://h:p,h:p/prefix``."""
        return [f"{m.host}:{m.client_port}" for m in self.members]

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        """Start every member of a new cluster and wait until all are healthy. Retries once with fresh ports
        if a member could not bind."""
        for attempt in range(3):
            for i in range(self.n):
                self._launch(i, state="new")
            try:
                self.wait_healthy(timeout=timeout)
                return self
            except ProcessError:
                if attempt == 2 or not any("address already in use" in (m.proc.log_tail() if m.proc else "")
                                           for m in self.members):
                    raise
                self.stop()
                for m in self.members:
                    shutil.rmtree(m.data_dir, ignore_errors=True)
                self._allocate()
        raise AssertionError("unreachable")

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (no graceful leave; its data directory stays for ``restart``)."""
        m = self.members[i]
        if m.proc is not None:
            m.proc.kill()
            m.proc = None

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start member ``i`` again on its data directory and ports; waits until it is healthy."""
        if self.members[i].alive:
            self.kill(i)
        self._launch(i, state="existing")
        self.wait_member_healthy(i, timeout)

    def stop(self) -> None:
        """Kill every member (data directories stay until ``close``)."""
        for i in range(self.n):
            self.kill(i)

    def close(self) -> None:
        """Kill every member and remove the cluster's directory."""
        self.stop()
        release_dir(self.base_dir)

    def status(self, i: int) -> dict[str, Any]:
        """Member ``i``'s ``/v3/maintenance/status`` answer (``header.member_id``, ``leader``, ``raftTerm``...)."""
        with self._http() as c:
            r = c.post(self.members[i].client_url + "/v3/maintenance/status", json={})
            r.raise_for_status()
            result: dict[str, Any] = r.json()
            return result

    def leader(self) -> int | None:
        """Index of the member that live members agree leads, or None (no live member knows a leader)."""
        ids: dict[str, int] = {}
        leaders: set[str] = set()
        for i, m in enumerate(self.members):
            if not m.alive:
                continue
            try:
                st = self.status(i)
            except (httpx.HTTPError, ValueError):
                continue
            ids[str(st["header"]["member_id"])] = i
            if st.get("leader") and str(st["leader"]) != "0":
                leaders.add(str(st["leader"]))
        if len(leaders) != 1:
            return None
        return ids.get(leaders.pop())

    def wait_leader(self, timeout: float = 15.0, not_: int | None = None) -> int:
        """Wait until a live leader (other than member ``not_``) is agreed on; returns its index."""
        found: list[int] = []

        def ok() -> bool:
            who = self.leader()
            if who is None or who == not_ or not self.members[who].alive:
                return False
            found.append(who)
            return True

        wait_until(ok, timeout, what="an etcd leader")
        return found[-1]

    def healthy(self, i: int) -> bool:
        m = self.members[i]
        if not m.alive:
            return False
        with self._http() as c:
            r = c.get(m.client_url + "/health")
            return r.status_code == 200 and r.json().get("health") in ("true", True)

    def wait_member_healthy(self, i: int, timeout: float = 30.0) -> None:
        self._wait(lambda: self.healthy(i), [i], timeout, f"etcd member m{i} healthy")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every live member reports healthy."""
        live = [i for i, m in enumerate(self.members) if m.alive] or list(range(self.n))
        self._wait(lambda: all(self.healthy(i) for i in live), live, timeout, "etcd cluster healthy")

    def enable_auth(self, user: str = "root", password: str = "test-root-password") -> None:
        """Turn on etcd's authentication: a ``root`` user (etcd needs it before auth can be enabled) and, when
        ``user`` is another name, that user with a role allowed to read and write every key. From now on
        every request of this fixture authenticates as ``root``."""
        root_password = password if user == "root" else f"{password}-root"
        self._call(None, "/v3/auth/user/add", {"name": "root", "password": root_password})
        self._call(None, "/v3/auth/role/add", {"name": "root"})
        self._call(None, "/v3/auth/user/grant", {"user": "root", "role": "root"})
        if user != "root":
            self._call(None, "/v3/auth/user/add", {"name": user, "password": password})
            self._call(None, "/v3/auth/role/add", {"name": "haplane"})
            # every key: from "\0" to the end of the key space ("\0" as range_end)
            self._call(None, "/v3/auth/role/grant", {"name": "haplane", "perm": {
                "permType": "READWRITE", "key": _b64("\0"), "range_end": _b64("\0")}})
            self._call(None, "/v3/auth/user/grant", {"user": user, "role": "haplane"})
        self._call(None, "/v3/auth/enable", {})
        self.auth = ("root", root_password)

    def client_files(self) -> dict[str, str]:
        """The TLS options of an ``etcd://`` store URL for this cluster (empty without TLS)."""
        if self.tls is None:
            return {}
        return {"cacert": str(self.tls.ca), "cert": str(self.tls.client_cert), "key": str(self.tls.client_key)}

    def store_url(self, prefix: str, user: str | None = None, password: str | None = None,
                  **files: str) -> str:
        """An ``etcd://`` store URL for haplane on this cluster: every member, ``prefix``, credentials and the
        TLS files (``client_files()``, overridden by ``files``: ``cacert``, ``cert``, ``key``; an empty value
        leaves that option out)."""
        from urllib.parse import quote

        creds = ""
        if user is not None:
            creds = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "") + "@"
        options = {**self.client_files(), **files}
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in options.items() if v)
        return f"etcd://{creds}{','.join(self.hostports)}/{prefix.strip('/')}" + (f"?{query}" if query else "")

    def put(self, key: str, value: str, member: int | None = None) -> dict[str, Any]:
        """Put through the v3 JSON gateway of ``member`` (default: first live one); returns the answer."""
        return self._call(member, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, key: str, member: int | None = None) -> str | None:
        """Linearizable get through the JSON gateway of ``member``; the value, or None if absent."""
        answer = self._call(member, "/v3/kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    # -- internals

    def _http(self, timeout: float = 2.0) -> httpx.Client:
        if self.tls is None:
            return _client(timeout)
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.tls.ca))
        ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return httpx.Client(timeout=timeout, trust_env=False, verify=ctx)

    def _call(self, member: int | None, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.members[member].client_url if member is not None else self.endpoint
        with self._http(timeout=5.0) as c:
            headers = {}
            if self.auth is not None and path != "/v3/auth/authenticate":
                r = c.post(url + "/v3/auth/authenticate", json={"name": self.auth[0], "password": self.auth[1]})
                if r.status_code != 200:
                    raise ProcessError(f"etcd refused {self.auth[0]}: {r.text}")
                headers["Authorization"] = str(r.json()["token"])
            r = c.post(url + path, json=body, headers=headers)
            if r.status_code != 200:
                raise ProcessError(f"etcd {path}: {r.status_code} {r.text}")
            result: dict[str, Any] = r.json()
            return result

    def _wait(self, pred: Callable[[], bool], watch: list[int], timeout: float, what: str) -> None:
        def check() -> bool:
            for i in watch:
                p = self.members[i].proc
                if p is None or not p.alive():
                    tail = p.log_tail() if p else "(never started)"
                    raise ProcessError(f"etcd member m{i} exited while waiting for {what}:\n{tail}")
            return pred()

        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except ProcessError:
                raise
            except Exception:
                pass
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- m{i}\n{p.log_tail(15)}" for i in watch
                                  if (p := self.members[i].proc) is not None)
                raise ProcessError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
            time.sleep(0.1)

    def _launch(self, i: int, state: str) -> None:
        m = self.members[i]
        m.data_dir.mkdir(parents=True, exist_ok=True)
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        argv = [
            self.etcd_bin, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial, "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            "--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms),
            "--logger", "zap", "--log-level", "warn", "--enable-v2=false",
        ]
        if self.tls is not None:
            argv += ["--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key),
                     "--trusted-ca-file", str(self.tls.ca)]
            if self.tls.client_cert_auth:
                argv.append("--client-cert-auth")
        if self.auth_token_ttl is not None:
            argv += ["--auth-token-ttl", str(self.auth_token_ttl)]
        argv += self.extra_args
        env = dict(os.environ)
        env.update(_etcd_arch_env())
        # Never let ETCD_* variables from the environment change what the flags above say.
        for k in list(env):
            if k.startswith("ETCD_") and k != "ETCD_UNSUPPORTED_ARCH":
                del env[k]
        m.proc = Proc(argv, self.base_dir / f"{m.name}.log", env=env)


@dataclass(frozen=True)
class SecureEtcd:
    """An ``EtcdCluster`` with TLS, client certificates and RBAC on, and the user haplane logs in as."""

    cluster: EtcdCluster
    pki: Pki
    user: str = "haplane"
    password: str = "s3cret p@ss/word"  # URL-unsafe characters on purpose

    def url(self, prefix: str, **overrides: str) -> str:
        """A store URL with TLS files and credentials; ``overrides`` replace ``user``, ``password``, ``cacert``,
        ``cert``, ``key`` (an empty string leaves that part out)."""
        user = overrides.pop("user", self.user)
        password = overrides.pop("password", self.password)
        return self.cluster.store_url(prefix, user or None, password or None, **overrides)


class MakeEtcdCluster(Protocol):
    """The ``make_etcd_cluster`` fixture: a started, healthy cluster of ``n`` members, closed after the test."""

    def __call__(self, n: int = 3) -> EtcdCluster: ...


def _etcd_arch_env() -> dict[str, str]:
    """etcd 3.4 refuses to start on architectures other than amd64 and ppc64le (arm64 included) unless
    ``ETCD_UNSUPPORTED_ARCH`` names the running one."""
    machine = platform.machine().lower()
    goarch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le",
              "s390x": "s390x", "armv7l": "arm", "i686": "386", "i386": "386", "riscv64": "riscv64"}.get(machine,
                                                                                                        machine)
    return {} if goarch in ("amd64", "ppc64le") else {"ETCD_UNSUPPORTED_ARCH": goarch}


# --------------------------------------------------------------------------------------------------------------
# dockerd


class Dockerd:
    """A real ``dockerd`` of its own: data root, exec root, pid file and socket under ``base_dir`` (default: a
    fresh short tmp dir, so ``<exec-root>/containerd/containerd.sock`` stays under the 107-byte socket limit).

    Networking is off (``--bridge=none --iptables=false --ip-masq=false``, no userland proxy), so containers
    must run with ``--network host`` and listen on 127.0.0.x. Storage is ``vfs``. dockerd starts and supervises
    its own containerd (its socket under the exec root) unless one answers at ``/run/containerd/containerd.sock``;
    either way the containerd namespaces are unique to this daemon, so nothing clashes.

    ``cli(*args)`` runs the docker client against it; ``api()`` is an httpx client over the socket
    (``base_url="http://docker"``); ``host`` is the ``DOCKER_HOST`` value.
    """

    def __init__(self, dockerd_bin: str | None = None, docker_bin: str | None = None,
                 base_dir: Path | None = None, shutdown_timeout: int = 2) -> None:
        found = dockerd_bin or find_binary("dockerd", "/usr/sbin/dockerd", "/usr/bin/dockerd",
                                           env="HAPLANE_DOCKERD_BIN")
        if not found:
            raise FileNotFoundError("dockerd not found (Debian: apt-get install docker.io)")
        self.dockerd_bin = found
        # Debian's docker.io client matches the daemon; another `docker` earlier on PATH may be much newer.
        client = docker_bin or find_binary("docker", env="HAPLANE_DOCKER_BIN")
        if docker_bin is None and os.access("/usr/bin/docker", os.X_OK) and not os.environ.get("HAPLANE_DOCKER_BIN"):
            client = "/usr/bin/docker"
        if not client:
            raise FileNotFoundError("docker client not found (Debian: apt-get install docker.io)")
        self.docker_bin = client
        self.base_dir = base_dir if base_dir is not None else short_tmpdir("hp-dk")
        self.socket = self.base_dir / "d.sock"
        self.data_root = self.base_dir / "data"
        self.exec_root = self.base_dir / "x"
        self.pidfile = self.base_dir / "d.pid"
        self.config_file = self.base_dir / "daemon.json"
        self.client_config = self.base_dir / "cli"
        self.shutdown_timeout = shutdown_timeout
        self.namespace = f"hp-{uuid.uuid4().hex[:8]}"
        self.proc: Proc | None = None
        namespace = self.namespace
        with _LOCK:
            _EXTRA_CLEANUPS.append(lambda: _kill_cgroup_members(namespace))
        self.starts = 0

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` value: ``unix://<base_dir>/d.sock``."""
        return f"unix://{self.socket}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a docker client talking to this daemon."""
        env = dict(os.environ)
        for k in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
            env.pop(k, None)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.client_config)
        env["DOCKER_BUILDKIT"] = "0"  # the classic builder: nothing to download, no buildx plugin needed
        return env

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def start(self, timeout: float = 60.0) -> Dockerd:
        """Start the daemon (on the same data root as before, if restarted) and wait for ``/_ping``."""
        if self.running:
            return self
        for d in (self.data_root, self.exec_root, self.client_config):
            d.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("{}\n")
        self._forget_dead_containerd()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        argv = [
            self.dockerd_bin, "--config-file", str(self.config_file),
            "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile), "-H", self.host,
            "--storage-driver", "vfs", "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--ip-masq=false", "--userland-proxy=false", "--ip-forward=false",
            "--containerd-namespace", self.namespace, "--containerd-plugins-namespace", self.namespace + "-p",
            "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", f"/{self.namespace}",
            "--shutdown-timeout", str(self.shutdown_timeout), "--log-level", "warn",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.proc = Proc(argv, self.base_dir / "dockerd.log", env=env)
        self.starts += 1
        proc = self.proc

        def ready() -> bool:
            if not proc.alive():
                raise ProcessError(f"dockerd exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            return self.ping()

        try:
            deadline = time.monotonic() + timeout
            while not ready():
                if time.monotonic() > deadline:
                    raise ProcessError(f"dockerd not answering /_ping after {timeout:.0f}s:\n{proc.log_tail()}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def _forget_dead_containerd(self) -> None:
        """dockerd trusts ``<exec-root>/containerd/containerd.pid`` if that pid exists; after a crash its managed
        containerd (killed with it) can linger as an unreaped zombie, and dockerd would wait on it in vain."""
        pidfile = self.exec_root / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if _pid_state(pid) in (None, "Z", "X"):
            with contextlib.suppress(OSError):
                pidfile.unlink()

    def ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with self.api(timeout=2.0) as c:
                return c.get("/_ping").text == "OK"
        except httpx.HTTPError:
            return False

    def api(self, timeout: float = 30.0) -> httpx.Client:
        """An httpx client for the Engine API over the daemon's socket (``base_url="http://docker"``)."""
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://docker",
                            timeout=timeout, trust_env=False)

    def cli(self, *args: str, check: bool = True, timeout: float = 120.0,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``docker <args>`` against this daemon; output captured as text. ``check`` raises
        ``ProcessError`` (with stderr) on a non-zero exit."""
        r = subprocess.run([self.docker_bin, *args], env=self.env, capture_output=True, timeout=timeout,
                           input=input, check=False)
        out = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                          r.stderr.decode(errors="replace"))
        if check and r.returncode != 0:
            raise ProcessError(f"docker {' '.join(args)} exited {r.returncode}: {out.stderr.strip()}")
        return out

    def remove_all_containers(self) -> None:
        """``docker rm -f`` every container (running or not)."""
        ids = self.cli("ps", "-aq").stdout.split()
        if ids:
            self.cli("rm", "-f", *ids, check=False)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (running containers are stopped within ``shutdown_timeout``), SIGKILL after ``timeout``;
        then whatever dockerd left running from our directory (containerd, shims) is killed."""
        if self.proc is not None:
            self.proc.stop(timeout=timeout)
            self.proc = None
        _kill_processes_mentioning(str(self.base_dir))
        _kill_cgroup_members(self.namespace)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def kill(self) -> None:
        """SIGKILL dockerd alone, as in a crash: its containerd and containers go on running."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc._forget()
            self.proc = None

    def restart(self, kill: bool = False, timeout: float = 60.0) -> None:
        """Stop (``kill=True``: SIGKILL dockerd only, a crash) and start again on the same data root. After a
        graceful restart, containers with a restart policy (``--restart always``) are running again."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start(timeout=timeout)

    def close(self) -> None:
        """Remove every container, stop the daemon, remove its directory: in the background, since on vfs storage
        every layer of every image is a full copy (haplane's image made it ~1 minute of a suite's end)."""
        if self.running:
            with contextlib.suppress(Exception):
                self.remove_all_containers()
        self.stop()
        release_dir(self.base_dir, background=True)

    def image_exists(self, ref: str) -> bool:
        return self.cli("image", "inspect", ref, check=False).returncode == 0

    def run(self, *args: str) -> str:
        """``docker run -d --network host <args>``; returns the container id."""
        return self.cli("run", "-d", "--network", "host", *args).stdout.strip()


def _is_static_elf(path: str) -> bool:
    """True if ``path`` is an ELF file with no program interpreter (statically linked)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64 = head[4] == 2
        endian: Literal["little", "big"] = "little" if head[5] == 1 else "big"
        if is64:
            phoff = int.from_bytes(head[32:40], endian)
            phentsize = int.from_bytes(head[54:56], endian)
            phnum = int.from_bytes(head[56:58], endian)
        else:
            phoff = int.from_bytes(head[28:32], endian)
            phentsize = int.from_bytes(head[42:44], endian)
            phnum = int.from_bytes(head[44:46], endian)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(int.from_bytes(table[k * phentsize:k * phentsize + 4], endian) != pt_interp for k in range(phnum))


def find_static_busybox() -> str | None:
    """A statically linked busybox (Debian's busybox-static installs ``/bin/busybox``), or None."""
    for c in (os.environ.get("HAPLANE_BUSYBOX_BIN", ""), "/bin/busybox", "/usr/bin/busybox",
              shutil.which("busybox") or ""):
        if c and os.access(c, os.X_OK) and _is_static_elf(c):
            return c
    return None


def busybox_rootfs_tar(busybox: str) -> bytes:
    """A root filesystem as a tar: ``/bin/busybox``, a symlink for every applet it lists, ``/www/index.html``
    (``busybox image``), ``/tmp``, ``/etc/passwd`` and ``/etc/group``."""
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "www", "proc", "sys", "dev", "root"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", Path(busybox).read_bytes(), 0o755)
        for applet in sorted(set(applets) - {"busybox"}):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
        add_file("www/index.html", b"busybox image\n")
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def build_busybox_image(dockerd: Dockerd, tag: str = BUSYBOX_IMAGE, busybox: str | None = None) -> str:
    """Build ``tag`` from a busybox root filesystem (see ``busybox_rootfs_tar``) unless it exists; returns
    ``tag``. ``PATH=/bin``, ``CMD ["sh"]``, and ``STOPSIGNAL SIGKILL``: busybox's ``httpd`` as PID 1 ignores
    SIGTERM, so without it every ``docker stop`` and every daemon shutdown waits the full 10-second stop
    timeout. Built with the classic builder from a context of ``Dockerfile`` + ``rootfs.tar`` (no network)."""
    if dockerd.image_exists(tag):
        return tag
    found = busybox or find_static_busybox()
    if not found:
        raise FileNotFoundError("no statically linked busybox (Debian: apt-get install busybox-static)")
    rootfs = busybox_rootfs_tar(found)
    dockerfile = b'FROM scratch\nADD rootfs.tar /\nENV PATH=/bin\nSTOPSIGNAL SIGKILL\nCMD ["sh"]\n'
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("rootfs.tar", rootfs)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    dockerd.cli("build", "-q", "-t", tag, "-", input=buf.getvalue())
    return tag
