"""The one reload with last good: what both a HAProxy haplane runs (``process.HAProxyProcess``) and one the
operator runs (``control.AttachedHAProxy``) do to make a checked config the running one.

1. note the master's ``show proc`` (what "a new worker" will mean);
2. save ``show servers state`` into the server-state file, minus the servers the new config moves to another
   address or port (``parse.filter_server_state``: the config wins whole for those; the others keep their
   runtime weight, drain and maintenance across the reload);
3. write the config and its maps atomically (``files.ConfigFiles.write_current``);
4. ``reload`` through the master CLI and confirm it: a new worker in ``show proc``, then that worker answering
   the admin socket (an old worker may hold it a moment longer);
5. on success, keep the files as the last good; on failure, put the last good files back on disk (HAProxy goes
   on with its previous worker) and raise ``ReloadFailed`` with what HAProxy said.

Who calls it: ``HAProxyProcess.reload`` (with its output's ALERT lines, and failing at once if the master
exits) and ``AttachedHAProxy.reload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from haplane.errors import HAProxyUnavailable, ReloadFailed
from haplane.haproxy.files import ConfigFiles
from haplane.haproxy.master import MasterClient
from haplane.haproxy.parse import filter_server_state
from haplane.haproxy.runtime import RuntimeClient
from haplane.model.observed import ProcInfo

__all__ = ["Servers", "confirm_timeout", "reload_with_last_good", "save_server_state"]

log = logging.getLogger("haplane.haproxy")
T = TypeVar("T")
Servers = Mapping[tuple[str, str], tuple[str, int | None]]  # (backend, server) → (address, port): Rendered.servers

# HAProxy's time to parse a config and start a worker grows with its servers: measured on 2 cores under load,
# a reload of 10,000 services (100,000 server slots) took longer than 15 s to confirm, so a fixed bound
# reported reloads that went on to succeed as failed (and put the old files back under a new worker).
SECONDS_PER_SERVER = 0.0005  # 100,000 slots: +50 s


async def save_server_state(runtime: RuntimeClient, files: ConfigFiles, servers: Servers | None = None) -> bool:
    """Dump ``show servers state`` into the server-state file (read by the next worker at start). With
    ``servers`` (the next config's servers and their addresses), the servers that config moves are left out.
    False when the Runtime API does not answer (the next worker then starts from the config's states)."""
    try:
        text = (await runtime.execute(["show servers state"]))[0]
    except HAProxyUnavailable as exc:
        log.warning("server state not saved before reload: %s", exc)
        return False
    if servers is not None:
        text, dropped = filter_server_state(text, servers)
        if dropped:
            log.info("server state: %d server(s) take their state from the new config: %s", len(dropped),
                     ", ".join(f"{b}/{s}" for b, s in dropped[:20]))
    await files.write_server_state(text)
    return True


async def _unless(abort: asyncio.Event | None, step: Awaitable[T]) -> T:
    """``step``, or ``HAProxyUnavailable`` as soon as ``abort`` is set (the master exited: a dead master
    confirms nothing, so the reload fails at once instead of polling it until the timeout)."""
    if abort is None:
        return await step
    task = asyncio.ensure_future(step)
    aborted = asyncio.ensure_future(abort.wait())
    try:
        await asyncio.wait({task, aborted}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise HAProxyUnavailable("HAProxy's master exited during the reload")
    finally:
        for t in (task, aborted):
            if not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t


def confirm_timeout(base: float, servers: Servers | None) -> float:
    """The bound of one reload confirmation: ``base`` plus :data:`SECONDS_PER_SERVER` for each server of the
    config (unknown: ``base``)."""
    return base + SECONDS_PER_SERVER * (len(servers) if servers else 0)


async def reload_with_last_good(files: ConfigFiles, master: MasterClient, runtime: RuntimeClient,
                                config: str | None, maps: Mapping[str, str] | None = None, *,
                                servers: Servers | None = None, timeout: float = 15.0,
                                abort: asyncio.Event | None = None,
                                alerts: Callable[[], Awaitable[list[str]]] | None = None) -> ProcInfo:
    """Make ``config`` (already checked; None: reload the files as they are) with ``maps`` the running one (see
    the module docstring); ``show proc`` after the reload. ``timeout`` bounds each of the two confirmations
    for a config with no servers (``confirm_timeout`` adds to it for each of ``servers``);
    ``abort`` (set when the master exits, for a HAProxy haplane runs) fails them at once; ``alerts`` reads
    HAProxy's ALERT lines since the reload began, for the error."""
    timeout = confirm_timeout(timeout, servers)
    before = await master.show_proc()
    await save_server_state(runtime, files, servers)
    if config is not None:
        await files.write_current(config, maps)
    try:
        after = await _unless(abort, master.reload(timeout=timeout, before=before))
        if after.worker_pid is not None:
            await _unless(abort, _serving(runtime, after.worker_pid, timeout))
    except (ReloadFailed, HAProxyUnavailable) as exc:
        said = await alerts() if alerts is not None else []
        if config is not None:
            await files.restore_last_good()
        raise ReloadFailed(f"{exc}" + ("; HAProxy said: " + " | ".join(said) if said else "")) from exc
    if config is not None:
        await files.mark_good(maps)
    return after


async def _serving(runtime: RuntimeClient, worker_pid: int, timeout: float) -> None:
    """Until the admin socket is answered by ``worker_pid`` (not by an old worker still holding it)."""
    try:
        await runtime.wait_worker(worker_pid, timeout)
    except HAProxyUnavailable as exc:
        raise HAProxyUnavailable(f"{exc} (is the stats socket of control_globals() in the config?)") from exc
