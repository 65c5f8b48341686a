"""The master CLI client (``haproxy -W -S <path>``): ``show proc`` and a confirmed ``reload``.

HAProxy 2.6 facts this relies on (measured; see docs/haproxy-notes.md):
- the master CLI answers one command per connection in non-interactive mode once the client has
  half-closed its side (without the half-close the master keeps the connection open);
- ``reload`` answers nothing and the connection closes: the master re-executes itself (the master CLI
  refuses connections for a few milliseconds), re-reads the config and forks a new worker;
- ``show proc`` shows the master's reload counter, which counts every reload, failed or not, and a
  ``[failed: N]`` counter of failed reloads since the last successful one (reset to 0 on success);
- a failed reload (the new config does not parse) keeps the previous worker: no new pid appears, the
  worker's own counter shows it survived one more reload, ``failed`` goes up, the master prompt becomes
  ``master[ReloadFailed]>``, and the master prints the ALERT lines on its stderr.

So a reload is confirmed by polling ``show proc`` until the master's counter has moved and either a worker
pid that was not there before appears (success) or ``failed`` is non-zero (failure), within a timeout.

Who calls what: ``reload.reload_with_last_good`` (for ``HAProxyProcess`` and ``AttachedHAProxy``) calls
``reload()``; the process and the controls call ``show_proc()`` (is it alive, how many reloads).
"""

from __future__ import annotations

import asyncio
import os
import socket

from haplane.errors import HAProxyUnavailable, ReloadFailed
from haplane.haproxy.parse import parse_show_proc
from haplane.haproxy.runtime import validate_command
from haplane.model.observed import ProcInfo

__all__ = ["MasterClient"]


class MasterClient:
    """The master CLI at ``socket_path``. ``timeout`` bounds one command."""

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.socket_path = os.fspath(socket_path)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"MasterClient({self.socket_path!r})"

    async def command(self, command: str) -> str:
        """Send one command; the whole answer (the master closes after it). ``HAProxyUnavailable`` if the
        master cannot be reached or does not answer within ``timeout``."""
        line = validate_command(command).encode() + b"\n"
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(self.socket_path)
                try:
                    writer.write(line)
                    await writer.drain()
                    sock = writer.get_extra_info("socket")
                    if sock is not None:
                        sock.shutdown(socket.SHUT_WR)  # the master answers once the client half-closes
                    return (await reader.read()).decode("utf-8", "replace")
                finally:
                    writer.close()
                    try:
                        await writer.wait_closed()
                    except OSError:
                        pass
        except TimeoutError:
            raise HAProxyUnavailable(f"{self.socket_path}: no answer to {command!r} within {self.timeout:g}s"
                                     ) from None
        except OSError as exc:
            raise HAProxyUnavailable(f"{self.socket_path}: {exc.strerror or exc}") from exc

    async def show_proc(self) -> ProcInfo:
        text = await self.command("show proc")
        try:
            return parse_show_proc(text)
        except ValueError as exc:
            raise HAProxyUnavailable(f"{self.socket_path}: unexpected answer to show proc: {text[:200]!r}") from exc

    async def worker_command(self, command: str, worker: int | None = None) -> str:
        """Run a Runtime API command in a worker through the master (``@1`` = the current worker, or
        ``@!<pid>`` for a given one, old workers included)."""
        prefix = "@1" if worker is None else f"@!{int(worker)}"
        return await self.command(f"{prefix} {command}")

    async def send_reload(self) -> None:
        """Ask for a reload and return at once (no confirmation)."""
        await self.command("reload")

    async def reload(self, *, timeout: float = 10.0, interval: float = 0.01,
                     before: ProcInfo | None = None) -> ProcInfo:
        """Reload and confirm: returns ``show proc`` as it is with the new worker up. Raises ``ReloadFailed``
        when the master reports a failed reload, or when no new worker appears within ``timeout``."""
        if before is None:
            before = await self.show_proc()
        await self.send_reload()
        return await self.wait_reloaded(before, timeout=timeout, interval=interval)

    async def wait_reloaded(self, before: ProcInfo, *, timeout: float = 10.0, interval: float = 0.01) -> ProcInfo:
        """Poll ``show proc`` until the reload that followed ``before`` has completed (see the module doc)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        old = set(before.worker_pids)
        last: ProcInfo | None = None
        last_error: HAProxyUnavailable | None = None
        while True:
            try:
                now = await self.show_proc()
                last, last_error = now, None
                if now.master_pid != before.master_pid:
                    raise ReloadFailed(f"the master changed during the reload ({before.master_pid} → "
                                       f"{now.master_pid}): HAProxy was restarted, not reloaded")
                if now.reloads > before.reloads:
                    new = [p for p in now.worker_pids if p not in old]
                    if new:
                        return now
                    if now.failed_reloads > 0:
                        raise ReloadFailed(
                            f"HAProxy refused the new configuration (reload {now.reloads}, {now.failed_reloads} "
                            f"failed in a row); worker {now.worker_pid} goes on with the previous one")
            except HAProxyUnavailable as exc:  # the master re-executes: its CLI is briefly away
                last_error = exc
            if loop.time() >= deadline:
                state = f"last show proc: reloads {last.reloads}, workers {list(last.worker_pids)}" if last else (
                    f"master CLI unreachable: {last_error}")
                raise ReloadFailed(f"no new worker within {timeout:g}s after reload ({state})")
            await asyncio.sleep(interval)
