"""HAProxy as a child process that haplane supervises, in master-worker mode.

``HAProxyProcess(state_dir, haproxy_bin)`` runs::

    haproxy -W -S <state_dir>/master.sock,mode,600 -f <state_dir>/haproxy.cfg

in the foreground (not daemonized: the master is our child, so we see it exit), reads its output (so the
pipe never fills and blocks HAProxy) into a ring of recent lines and the ``haplane.haproxy`` logger, and
watches it with a task. The config must carry the control lines of ``control_globals(state_dir)`` (the
admin socket at ``<state_dir>/admin.sock`` with ``expose-fd listeners`` for seamless reloads, the
server-state file, ``hard-stop-after``, ``mworker-max-reloads``); the renderer includes them.

HAProxy 2.6 behaviour this is built on (measured; docs/haproxy-notes.md):
- if the worker dies (SIGKILL, crash), the master kills every process and exits (``exit-on-failure``): the
  watcher sees the master exit, whichever of the two died;
- if the master is killed, the worker notices and exits by itself shortly after;
- ``reload`` keeps the old worker when the new config does not load, and says so in ``show proc``.

Who calls what (``control.ManagedHAProxy``, the agent's control, one call at a time):
``start(config, maps)`` once; ``reload(config, maps, servers=...)`` for structural changes (the one reload
with last good, ``reload.reload_with_last_good``); ``alive()`` / ``exited`` to
notice a death and ``restart_from_last_good()`` to recover; ``stop()`` at shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from haplane.errors import HAProxyError, HAProxyUnavailable
from haplane.haproxy.files import ConfigFiles, atomic_write
from haplane.haproxy.master import MasterClient
from haplane.haproxy.reload import Servers, reload_with_last_good, save_server_state
from haplane.haproxy.runtime import RuntimeClient
from haplane.model.observed import ProcInfo

__all__ = ["ADMIN_SOCKET", "MASTER_SOCKET", "ControlLines", "HAProxyProcess", "control_globals"]

log = logging.getLogger("haplane.haproxy")

ADMIN_SOCKET = "admin.sock"
MASTER_SOCKET = "master.sock"
MASTER_RECORD = "haproxy.master"  # the master haplane runs: {pid, started (/proc start time), config}
LOCK_FILE = "haproxy.lock"  # held (flock) by the haplane that manages the HAProxy of this state directory
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./@+-]+")


@dataclass(frozen=True, slots=True)
class ControlLines:
    """Config lines haplane needs to control HAProxy: ``global_lines`` go in the ``global`` section,
    ``defaults_lines`` in every ``defaults`` section (HAProxy 2.6 reads ``load-server-state-from-file``
    from defaults/backends only)."""

    global_lines: tuple[str, ...]
    defaults_lines: tuple[str, ...]


def control_globals(state_dir: str | os.PathLike[str], *, hard_stop_after: str = "30s",
                    mworker_max_reloads: int = 50, stats_timeout: str = "30s",
                    admin_socket: str | os.PathLike[str] | None = None, fd_limit: int | None = None
                    ) -> ControlLines:
    """The control lines for a HAProxy whose state lives in ``state_dir`` (an absolute path is best: HAProxy
    resolves relative ones against its working directory).

    - ``stats socket <admin_socket> mode 600 level admin expose-fd listeners``: the Runtime API, and the
      listening sockets handed to the new worker on reload (no refused connection during a reload); the
      socket is ``<dir>/admin.sock`` unless ``admin_socket`` names another (an HAProxy the operator runs keeps
      its admin socket where the operator put it);
    - ``stats timeout``: an idle CLI connection is closed after this;
    - ``server-state-file <dir>/server-state`` + ``load-server-state-from-file global`` (defaults): runtime
      addresses, weights and admin states survive a reload (haplane dumps ``show servers state`` into the
      file just before each reload);
    - ``hard-stop-after``: an old worker finishing its connections after a reload is stopped after this;
    - ``mworker-max-reloads``: a worker that survived this many reloads gets SIGTERM;
    - ``noreuseport``: the listeners are not SO_REUSEPORT, so a second HAProxy cannot bind haplane's ports;
    - with ``fd_limit`` (the hard limit of an HAProxy haplane starts): ``ulimit-n <fd_limit>`` and ``no
      strict-limits``, so HAProxy starts whatever its slot count (one reserved descriptor each) and haplane checks
      what it really needs itself (``limits.py``).
    """
    d = os.fspath(state_dir).rstrip("/") or "/"
    if not _SAFE_PATH.fullmatch(d):
        raise ValueError(f"state directory {d!r} must be a plain path (letters, digits, '_./@+-') to be "
                         "written unquoted in haproxy.cfg")
    admin = f"{d}/{ADMIN_SOCKET}" if admin_socket is None else os.fspath(admin_socket)
    if not _SAFE_PATH.fullmatch(admin):
        raise ValueError(f"admin socket {admin!r} must be a plain path (letters, digits, '_./@+-') to be "
                         "written unquoted in haproxy.cfg")
    if not re.fullmatch(r"\d+(us|ms|s|m|h|d)?", hard_stop_after):
        raise ValueError(f"hard_stop_after {hard_stop_after!r} is not a HAProxy time")
    if not re.fullmatch(r"\d+(us|ms|s|m|h|d)?", stats_timeout):
        raise ValueError(f"stats_timeout {stats_timeout!r} is not a HAProxy time")
    return ControlLines(
        global_lines=(
            f"stats socket {admin} mode 600 level admin expose-fd listeners",
            f"stats timeout {stats_timeout}",
            f"server-state-file {d}/server-state",
            f"hard-stop-after {hard_stop_after}",
            f"mworker-max-reloads {int(mworker_max_reloads)}",
            # no SO_REUSEPORT: no other process can share (and split) haplane's ports; reloads hand the
            # listening sockets over instead of binding them again (haproxy/ports.py)
            "noreuseport",
            *((f"ulimit-n {int(fd_limit)}", "no strict-limits") if fd_limit is not None else ()),
        ),
        defaults_lines=("load-server-state-from-file global",),
    )


# HAProxy's [WARNING] lines that every normal reload or stop prints (an old worker leaving, its proxies
# stopping, the master re-executing): logged at INFO, so a WARNING from haplane always means something
_ROUTINE_WARNINGS = re.compile(
    r"\[WARNING\].*(?:: Former worker \(\d+\) exited with code 0|: Current worker \(\d+\) exited with code 0"
    r"|: Proxy \S+ stopped \(cumulated conns|: Stopping (?:proxy|frontend|backend) |: Exiting Master process"
    r"|: All workers exited\. Exiting\.\.\. \(0\)|: Reexecuting Master process"
    # a slot that haplane fills, frees, drains or readies through the Runtime API
    r"|: Server \S+ is UP/READY \(leaving forced (?:maintenance|drain)\)|: Server \S+ is going DOWN for maintenance"
    r"|: Server \S+ was DOWN and now enters maintenance|: Server \S+ enters drain state"
    r"|: Server \S+ is (?:UP|DOWN) \(leaving forced drain\))")


# what HAProxy says when its slots reserve more descriptors than ``ulimit-n`` allows: expected with ``no
# strict-limits`` (haplane checks the real need itself, limits.py), so not an error
_SIZED_LIMIT = re.compile(r"\[(?:ALERT|WARNING)\].*(?:FD limit \(\d+\) too low for maxconn|Cannot raise FD limit to)")


def output_level(line: str, starting: bool = False) -> int:
    """The level HAProxy's output ``line`` is logged at: ALERT is ERROR (DEBUG while starting: the failed start
    raises with those lines in its message, so the operator reads them once, in one line); a routine WARNING of
    a reload or a stop is INFO; other WARNINGs are WARNING; NOTICE and the rest INFO."""
    if _SIZED_LIMIT.search(line):
        return logging.INFO
    if "[ALERT]" in line:
        return logging.DEBUG if starting else logging.ERROR
    if "[WARNING]" in line:
        return logging.INFO if _ROUTINE_WARNINGS.search(line) else logging.WARNING
    return logging.INFO


class _Master:
    """HAProxy's master process as haplane holds it: a child it started (``popen``) or one it adopted from a
    haplane that died (no parent link: only its pid). Its exit is seen through a pidfd (Linux; polled elsewhere),
    so both kinds are watched alike and nothing ties HAProxy's life to haplane's (no asyncio transport that
    kills its child when closed, no parent-death signal)."""

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.popen = popen
        self.returncode: int | None = None
        self._done = asyncio.Event()
        self._task = asyncio.create_task(self._watch(), name=f"haproxy-master-{pid}")

    @property
    def adopted(self) -> bool:
        return self.popen is None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        fd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            fd = os.pidfd_open(self.pid)
        try:
            if fd is not None:
                readable: asyncio.Future[None] = loop.create_future()

                def ready() -> None:
                    if not readable.done():
                        readable.set_result(None)

                loop.add_reader(fd, ready)
                try:
                    await readable
                finally:
                    loop.remove_reader(fd)
            else:  # pragma: no cover - no pidfd (not Linux >= 5.3)
                while self._running():
                    await asyncio.sleep(0.05)
        finally:
            if fd is not None:
                os.close(fd)
        if self.popen is not None:
            self.returncode = await asyncio.to_thread(self.popen.wait)  # exited: reaps at once
        else:
            self.returncode = -1  # not our child: its exit status went to its new parent
        self._done.set()

    def _running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_alive(self.pid)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    async def wait(self) -> int:
        await self._done.wait()
        assert self.returncode is not None
        return self.returncode

    async def forget(self) -> None:
        """Stop watching (haplane leaves HAProxy running)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class HAProxyProcess:
    """One supervised HAProxy (master + worker) with its state in ``state_dir``.

    HAProxy outlives haplane: it runs in its own session with no parent-death signal, so a haplane killed (or
    upgraded) leaves it serving; ``adopt()`` (called by ``start``) attaches a new haplane to it again. While
    haplane manages it, it holds ``<state_dir>/haproxy.lock``: a second haplane on the same state directory is
    refused instead of driving the same HAProxy twice."""

    def __init__(self, state_dir: str | os.PathLike[str], haproxy_bin: str = "haproxy", *,
                 start_timeout: float = 10.0, reload_timeout: float = 15.0, stop_timeout: float = 10.0,
                 on_exit: Callable[[int], None] | None = None, keep_lines: int = 500) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.haproxy_bin = haproxy_bin
        self.start_timeout = start_timeout
        self.reload_timeout = reload_timeout
        self.stop_timeout = stop_timeout
        self.on_exit = on_exit
        self.files = ConfigFiles(self.state_dir)
        self.admin_socket = self.state_dir / ADMIN_SOCKET
        self.master_socket = self.state_dir / MASTER_SOCKET
        self.record_path = self.state_dir / MASTER_RECORD
        self.runtime = RuntimeClient(self.admin_socket)
        # the agent's: one connection held open to the current worker, dropped whenever the worker changes
        self.held = RuntimeClient(self.admin_socket, hold=True)
        self.master = MasterClient(self.master_socket)
        self.output: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self._lines_seen = 0
        self._proc: _Master | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._exited = asyncio.Event()
        self._stopping = False
        self._starting = False
        self._worker_pid: int | None = None
        self._lock_fd: int | None = None
        self.returncode: int | None = None
        self.starts = 0
        self.adoptions = 0

    def __repr__(self) -> str:
        return f"HAProxyProcess({str(self.state_dir)!r}, pid={self.pid})"

    # -- state -----------------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.files.config_path

    @property
    def pid(self) -> int | None:
        """The master's pid while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def worker_pid(self) -> int | None:
        """The current worker's pid as of the last start or reload."""
        return self._worker_pid if self.running else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def adopted(self) -> bool:
        """The running master was started by an earlier haplane and adopted by this one."""
        return self._proc is not None and self._proc.adopted

    @property
    def exited(self) -> asyncio.Event:
        """Set when the master exits (whether we stopped it or it died); cleared by ``start``."""
        return self._exited

    async def alive(self) -> bool:
        """The master runs and its CLI answers."""
        if not self.running:
            return False
        try:
            await self.master.show_proc()
        except HAProxyUnavailable:
            return False
        return True

    def recent_output(self, since: int = 0) -> list[str]:
        """HAProxy's output lines numbered ``since`` and later (that are still in the ring)."""
        first = self._lines_seen - len(self.output)
        return list(self.output)[max(0, since - first):]

    # -- lifecycle -------------------------------------------------------------------------------------

    async def adopt(self) -> ProcInfo | None:
        """Attach to the HAProxy a previous haplane started in this state directory and left running (it was
        killed, or stopped with HAProxy kept): the master recorded in ``haproxy.master`` is alive, is the same
        process (its start time matches), and its master CLI answers with its pid. Returns its ``show proc``,
        or None when there is none to adopt (the record is then removed). The config it runs is the last good
        one: a reload is marked good only once HAProxy confirmed it."""
        if self.running:
            raise HAProxyError(f"HAProxy already runs (pid {self.pid})")
        self._lock()
        record = _read_record(self.record_path)
        if record is None:
            return None
        pid = record["pid"]
        if not (_pid_alive(pid) and _is_haproxy(pid) and _start_time(pid) == record["started"]):
            log.info("the HAProxy recorded in %s (pid %s) no longer runs", self.record_path, pid)
            self._forget_record()
            return None
        try:
            info = await self.master.show_proc()
        except HAProxyUnavailable as exc:
            log.warning("HAProxy %s runs but its master CLI does not answer (%s): not adopted", pid, exc)
            return None
        if info.master_pid != pid or info.worker_pid is None:
            log.warning("the master CLI of %s answers for pid %s, not %s: not adopted", self.state_dir,
                        info.master_pid, pid)
            return None
        self._proc = _Master(pid)
        self._stopping = False
        self.returncode = None
        self._exited.clear()
        self._worker_pid = info.worker_pid
        self._watcher = asyncio.create_task(self._watch(self._proc), name="haproxy-watch")
        self.adoptions += 1
        log.warning("attached to the HAProxy left running by a previous haplane: master %s, worker %s (its output "
                    "is not read until its next restart)", pid, info.worker_pid)
        return info

    async def start(self, config: str | None = None, maps: Mapping[str, str] | None = None) -> ProcInfo:
        """Write ``config`` (and ``maps``) if given, start HAProxy on ``haproxy.cfg`` and wait until the worker
        serves the Runtime API. The config becomes the last good once HAProxy runs it. Raises
        ``HAProxyUnavailable`` (with HAProxy's ALERT lines) if HAProxy exits or does not come up."""
        if self.running:
            raise HAProxyError(f"HAProxy already runs (pid {self.pid})")
        self.held.drop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        if config is not None:
            await self.files.write_current(config, maps)
        if not self.files.state_file.exists():
            # an empty state (format version line only), so the first start does not warn about a missing file
            await self.files.write_server_state("1")
        mark = self._lines_seen
        args = [self.haproxy_bin, "-W", "-S", f"{self.master_socket},mode,600", "-f", str(self.config_path)]
        out_r, out_w = os.pipe()
        try:
            # its own session: a Ctrl-C or a SIGKILL of haplane does not reach HAProxy, which keeps serving
            popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out_w, stderr=subprocess.STDOUT,
                                     cwd=self.state_dir, start_new_session=True)
        except OSError as exc:
            os.close(out_r)
            self._unlock()
            raise HAProxyUnavailable(f"cannot run {self.haproxy_bin!r}: {exc.strerror or exc}") from exc
        finally:
            os.close(out_w)
        self.starts += 1
        self._stopping = False
        self.returncode = None
        self._exited.clear()
        proc = self._proc = _Master(popen.pid, popen)
        self._reader = asyncio.create_task(self._read_output(out_r), name="haproxy-output")
        self._watcher = asyncio.create_task(self._watch(proc), name="haproxy-watch")
        self._starting = True
        try:
            info = await self._wait_started(proc, mark)
        except BaseException:
            await self._kill(proc)
            self._unlock()
            raise
        finally:
            self._starting = False
        await self.files.mark_good(maps)
        self._write_record(popen.pid)
        log.info("HAProxy started: master %s, worker %s", info.master_pid, info.worker_pid)
        return info

    async def reload(self, config: str | None = None, maps: Mapping[str, str] | None = None, *,
                     servers: Servers | None = None) -> ProcInfo:
        """Make ``config`` (already checked) the running one: save server state, write the files atomically,
        reload through the master CLI, and confirm that a new worker serves the Runtime API (``reload.
        reload_with_last_good``, the one the attached control uses too). ``servers`` (the new config's
        (backend, server) → (address, port), ``Rendered.servers``) leaves the servers it moves out of the saved
        state. Returns ``show proc`` after the reload. On failure the last good files are put back on disk
        (HAProxy goes on with its previous worker) and ``ReloadFailed`` says what HAProxy said; if the master
        dies meanwhile, at once."""
        if not self.running:
            raise HAProxyUnavailable("HAProxy is not running")
        mark = self._lines_seen
        self.held.drop()  # held open, it would keep the old worker soft-stopping (and talk to it)
        try:
            after = await reload_with_last_good(self.files, self.master, self.runtime, config, maps, servers=servers,
                                                timeout=self.reload_timeout, abort=self._exited,
                                                alerts=lambda: self._alerts_since(mark))
        finally:
            self.held.drop()  # one opened meanwhile may be to the old worker
        self._worker_pid = after.worker_pid
        log.info("HAProxy reloaded: reload %s, worker %s", after.reloads, after.worker_pid)
        return after

    async def save_server_state(self, servers: Servers | None = None) -> bool:
        """``reload.save_server_state`` for this HAProxy (see there)."""
        return await save_server_state(self.runtime, self.files, servers)

    async def restart_from_last_good(self) -> ProcInfo:
        """HAProxy died (or must be restarted): start it again from the last good config on disk. Waits for a
        worker orphaned by a killed master to leave the ports first."""
        if self.running:
            await self.stop(graceful=False)
        last = await self.files.read_last_good()
        if last is None:
            raise HAProxyUnavailable(f"no last good config in {self.state_dir}")
        await self._wait_orphan_gone()
        config, maps = last
        log.warning("restarting HAProxy from the last good config")
        return await self.start(config, maps)

    async def stop(self, *, graceful: bool = True, timeout: float | None = None) -> int | None:
        """Stop HAProxy: SIGUSR1 (soft stop: finish connections, bounded by ``hard-stop-after``) when
        ``graceful``, else SIGTERM; SIGKILL if it has not exited within ``timeout``. Returns the exit code
        (-1 for an adopted master, whose status goes to its own parent)."""
        proc = self._proc
        self.held.drop()  # held open, it would keep a soft-stopping worker until hard-stop-after
        if proc is None:
            self._unlock()
            return self.returncode
        self._stopping = True
        wait = self.stop_timeout if timeout is None else timeout
        if proc.returncode is None:
            proc.send_signal(signal.SIGUSR1 if graceful else signal.SIGTERM)
            if not await self._wait_exit(proc, wait):
                proc.send_signal(signal.SIGTERM)
                if not await self._wait_exit(proc, 2.0):
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
        await self._finish_tasks()
        self._forget_record()
        self._unlock()
        return proc.returncode

    async def leave_running(self) -> None:
        """Stop managing HAProxy and leave it serving (a clean stop of haplane with ``keep_haproxy``): the next
        haplane on this state directory adopts it."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            await self.stop()
            return
        self._stopping = True
        self.held.drop()
        await proc.forget()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._proc = None
        self._unlock()
        log.info("HAProxy left running (master %s): the next haplane on %s attaches to it", proc.pid, self.state_dir)

    async def wait_exit(self) -> int:
        """Wait until the master exits; its exit code."""
        await self._exited.wait()
        return self.returncode if self.returncode is not None else -1

    # -- internals -------------------------------------------------------------------------------------

    def _lock(self) -> None:
        """Hold ``haproxy.lock`` (released when this process ends, however it ends)."""
        if self._lock_fd is not None:
            return
        import fcntl

        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise HAProxyError(f"another haplane (pid {holder}) manages the HAProxy of {self.state_dir}: stop it "
                               "first, or use another state directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _write_record(self, pid: int) -> None:
        data = {"pid": pid, "started": _start_time(pid), "config": str(self.config_path)}
        try:
            atomic_write(self.record_path, json.dumps(data) + "\n", mode=0o600)
        except OSError as exc:
            log.warning("cannot record HAProxy's master in %s (%s): a restarted haplane will not find it",
                        self.record_path, exc.strerror or exc)

    def _forget_record(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()

    async def _wait_started(self, proc: _Master, mark: int) -> ProcInfo:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        while True:
            if proc.returncode is not None or self._exited.is_set():
                alerts = await self._alerts_since(mark)
                raise HAProxyUnavailable(f"HAProxy exited at start (code {proc.returncode})"
                                         + ("; HAProxy said: " + " | ".join(alerts) if alerts else ""))
            try:
                info = await self.master.show_proc()
                if info.worker_pid is not None and info.master_pid == proc.pid:
                    self._worker_pid = info.worker_pid
                    await self._wait_serving(info.worker_pid, max(0.1, deadline - loop.time()))
                    return info
            except HAProxyUnavailable:
                pass
            if loop.time() >= deadline:
                alerts = await self._alerts_since(mark)
                raise HAProxyUnavailable(f"HAProxy did not come up within {self.start_timeout:g}s"
                                         + ("; HAProxy said: " + " | ".join(alerts) if alerts else ""))
            await asyncio.sleep(0.01)

    async def _wait_serving(self, worker_pid: int, timeout: float) -> None:
        """Until the admin socket is answered by ``worker_pid`` (not by an old worker still holding it)."""
        try:
            await self.runtime.wait_worker(worker_pid, timeout)
        except HAProxyUnavailable as exc:
            raise HAProxyUnavailable(f"{exc} (is the stats socket of control_globals() in the config?)") from exc

    async def _alerts_since(self, mark: int) -> list[str]:
        # The master prints its ALERTs before its CLI reports the failure, but our reader may lag a little.
        for _ in range(20):
            lines = self.recent_output(mark)
            if any("Loading failure" in ln or "exit" in ln.lower() for ln in lines):
                break
            await asyncio.sleep(0.01)
        return [ln for ln in self.recent_output(mark) if "[ALERT]" in ln]

    async def _read_output(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 16, loop=loop)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                                    os.fdopen(fd, "rb", buffering=0))
        try:
            while True:
                try:
                    raw = await reader.readline()
                except ValueError:  # an over-long line
                    continue
                except OSError:  # the pipe broke
                    return
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip()
                self.output.append(line)
                self._lines_seen += 1
                log.log(output_level(line, starting=self._starting), "%s", line)
        finally:
            transport.close()

    async def _watch(self, proc: _Master) -> None:
        code = await proc.wait()
        self.held.drop()
        self.returncode = code
        self._exited.set()
        if proc is self._proc and not self._stopping:
            self._forget_record()
        if self._stopping:
            log.info("HAProxy stopped (code %s)", code)
            return
        if self._starting:  # start() raises with what HAProxy said
            log.debug("HAProxy exited while starting (code %s)", code)
            return
        log.error("HAProxy exited unexpectedly (code %s)", code)
        if self.on_exit is not None:
            try:
                self.on_exit(code)
            except Exception:  # a callback must not kill the watcher
                log.exception("on_exit callback failed")

    async def _wait_orphan_gone(self, timeout: float = 5.0) -> None:
        pid = self._worker_pid
        if pid is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while _pid_alive(pid) and _is_haproxy(pid):
            if loop.time() >= deadline:
                log.warning("old worker %s still alive after %gs: SIGTERM", pid, timeout)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                await asyncio.sleep(0.1)
                return
            await asyncio.sleep(0.01)

    async def _wait_exit(self, proc: _Master, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
            return True
        except TimeoutError:
            return False

    async def _kill(self, proc: _Master) -> None:
        self._stopping = True
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        await self._finish_tasks()

    async def _finish_tasks(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._reader is not None:
            # The pipe stays open while an orphaned worker holds it: do not wait for its end.
            try:
                async with asyncio.timeout(0.5):
                    await self._reader
            except TimeoutError:
                pass


def _read_record(path: Path) -> dict[str, int] | None:
    try:
        data = json.loads(path.read_text())
        return {"pid": int(data["pid"]), "started": int(data["started"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _start_time(pid: int) -> int:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22): with the pid, who it is."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return -1


def _pid_alive(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait long for a reaper in a container)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_haproxy(pid: int) -> bool:
    """Guard against pid reuse: only wait for (or signal) a process that is still a haproxy."""
    try:
        return "haproxy" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return True  # no /proc: assume it is
