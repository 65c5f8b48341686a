"""The agent's control over a real HAProxy (``haplane.typing.HAProxyControl``): one haplane starts itself
(``ManagedHAProxy``) or one the operator runs (``AttachedHAProxy``). Both speak to the admin socket for
membership (the plan's typed operations, through ``RuntimeClient.apply``) and reads, check configs with
``haproxy -c`` (``check.check_rendered``), and reload through the one reload with last good
(``reload.reload_with_last_good``); they differ only in who owns the process.

``RuntimeReader`` is the read half alone (``typing.HAProxyReader``): ``haplane plan`` plans with it.
The fake beside them (``haplane.testing.FakeHAProxy``) is held to the same behaviour by
tests/contract/test_haproxy_control_contract.py."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from haplane.errors import HAProxyError, HAProxyUnavailable, RuntimeCommandError
from haplane.haproxy.check import check_rendered
from haplane.haproxy.files import ConfigFiles
from haplane.haproxy.limits import budget
from haplane.haproxy.master import MasterClient
from haplane.haproxy.parse import answer_error, parse_get_map, parse_servers_state, parse_show_map, parse_stat
from haplane.haproxy.ports import PortHeld, listening_binds, refuse_held_ports
from haplane.haproxy.process import HAProxyProcess
from haplane.haproxy.reload import reload_with_last_good
from haplane.haproxy.runtime import RuntimeClient, get_map_command, show_map_command
from haplane.model.observed import CheckResult, OpResult, SlotObs
from haplane.model.ops import CertDel, CertPut, RuntimeOp
from haplane.render import Rendered
from haplane.tls.crtlist import CertFiles


def _write_cert_files(files: CertFiles, ops: Sequence[RuntimeOp]) -> None:
    puts: dict[str, str] = {}
    removes: set[str] = set()
    for op in ops:  # in order: the last word on a name wins
        if isinstance(op, CertPut):
            puts[op.name] = op.pem
            removes.discard(op.name)
        elif isinstance(op, CertDel):
            removes.add(op.name)
            puts.pop(op.name, None)
    files.apply(puts, removes)

__all__ = ["AttachedHAProxy", "DescriptorLimit", "ManagedHAProxy", "RuntimeReader"]

log = logging.getLogger("haplane.haproxy")


class DescriptorLimit(HAProxyError):
    """HAProxy's connections and health checks would not fit in the hard limit on open files."""


async def _reload_count(master: MasterClient, timeout: float = 3.0) -> int:
    """The master's reload counter. The master re-executes itself on every reload, so its CLI is briefly
    away: retry for a moment before calling it unavailable."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return (await master.show_proc()).reloads
        except HAProxyUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.02)


class RuntimeReader:
    """What planning reads of HAProxy over its admin socket (``typing.HAProxyReader``): server slots and map
    entries, and ``show stat`` for the live views. ``haplane plan`` uses one alone; both controls are one."""

    def __init__(self, runtime: RuntimeClient) -> None:
        self.runtime = runtime

    async def servers(self, backends: Iterable[str] | None = None) -> dict[str, dict[str, SlotObs]]:
        cmds = ["show servers state"] if backends is None else [f"show servers state {b}" for b in backends]
        if not cmds:
            return {}
        return await self._observed(cmds, await self.runtime.execute(cmds))

    async def _observed(self, cmds: Sequence[str], answers: Sequence[str]) -> dict[str, dict[str, SlotObs]]:
        """The slots in HAProxy's answers to ``show servers state`` commands, with the sessions of the backends
        where a slot drains (one more read, of those alone)."""
        out: dict[str, dict[str, SlotObs]] = {}
        draining: set[int] = set()
        for cmd, text in zip(cmds, answers, strict=True):
            err = answer_error(cmd, text)
            if err is not None:
                if "Can't find backend" in text or "No such backend" in text:
                    continue  # not in the running config yet: it arrives with the next reload
                raise RuntimeCommandError(cmd, err)
            for st in parse_servers_state(text):
                out.setdefault(st.backend, {})[st.name] = SlotObs(st.addr, st.port, st.uweight, st.maint, st.drain)
                if st.drain:
                    draining.add(st.backend_id)
        if draining:  # sessions matter only where a drain waits for them to end
            stats = await self.runtime.execute([f"show stat {i} 4 -1" for i in sorted(draining)])
            for text in stats:
                for row in parse_stat(text):
                    slot = out.get(row.pxname, {}).get(row.svname)
                    if slot is not None:
                        out[row.pxname][row.svname] = SlotObs(slot.address, slot.port, slot.weight, slot.maint,
                                                              slot.drain, row.scur)
        return out

    async def maps(self, paths: Iterable[str]) -> dict[str, dict[str, str]]:
        paths = list(paths)
        if not paths:
            return {}
        answers = await self.runtime.execute([show_map_command(p) for p in paths])
        return {p: parse_show_map(t) if answer_error("show map", t) is None else {}
                for p, t in zip(paths, answers, strict=True)}

    async def map_entries_of(self, keys: Mapping[str, Iterable[str]]) -> dict[str, dict[str, str]]:
        asked = [(p, k) for p, ks in keys.items() for k in sorted(ks)]
        out: dict[str, dict[str, str]] = {p: {} for p in keys}
        if not asked:
            return out
        answers = await self.runtime.execute([get_map_command(p, k) for p, k in asked])
        for (p, k), text in zip(asked, answers, strict=True):
            value = parse_get_map(text, k) if answer_error("get map", text) is None else None
            if value is not None:
                out[p][k] = value
        return out

    async def show_stat(self) -> str:
        return await self.runtime.command("show stat")

    async def certificates(self, crt_list: str, paths: Iterable[str] | None = None) -> dict[str, str]:
        from haplane.tls.runtime import read_state

        if paths is None:  # a full pass: every listed certificate (two round trips)
            paths = (await read_state(self.runtime, crt_list)).listed
        asked = sorted(set(paths))
        state = await read_state(self.runtime, crt_list, asked)  # one connection: the list and the fingerprints
        listed = set(state.listed)
        return {path: state.fingerprints.get(path, "") for path in asked if path in listed}


class _RuntimeOps(RuntimeReader):
    """What both controls share: reads and operations over the admin socket, ``haproxy -c``."""

    haproxy_bin: str
    check_dir: Path

    async def check(self, config: Rendered) -> CheckResult:
        return await check_rendered(config, self.haproxy_bin, directory=self.check_dir, resolve=True)

    async def execute_and_read(self, ops: Sequence[RuntimeOp], backends: Iterable[str]
                               ) -> tuple[list[OpResult], dict[str, dict[str, SlotObs]]]:
        """``execute(ops)`` and ``servers(backends)`` in one round trip: the operations, then ``show servers
        state`` of each backend, pipelined in one batch (a certificate operation among them: the two one after
        the other)."""
        names = list(backends)
        if any(isinstance(op, CertPut | CertDel) for op in ops):
            return await self.execute(ops), await self.servers(names) if names else {}
        reads = [f"show servers state {b}" for b in names]
        results, answers = await self.runtime.apply_then(ops, reads)
        return results, await self._observed(reads, answers) if reads else {}

    async def execute(self, ops: Sequence[RuntimeOp]) -> list[OpResult]:
        results = await self.runtime.apply(ops)
        done = [r.op for r in results if r.ok and isinstance(r.op, CertPut | CertDel)]
        if done:
            # the files HAProxy loads at the next reload or start: the same set as it serves now
            await asyncio.to_thread(_write_cert_files, CertFiles(self.check_dir), done)
        return results

    async def _sync_cert_files(self, config: Rendered) -> None:
        """Before HAProxy loads ``config`` (start, reload): the certificate files and the crt-list it names."""
        if any(f.tls is not None for f in config.config.frontends):
            wanted = {c.name: c.pem for c in config.config.certificates}
            await asyncio.to_thread(CertFiles(self.check_dir).sync, wanted)


class ManagedHAProxy(_RuntimeOps):
    """haplane starts HAProxy (master-worker) in ``state_dir`` and restarts it from the last good config if
    it dies. HAProxy outlives haplane: ``start`` first attaches to an HAProxy a previous haplane left running in
    ``state_dir`` (same master, no restart: traffic never stops), reloading it only if the config differs.
    ``stop`` stops HAProxy, unless ``keep_running`` (then it is left serving for the next haplane)."""

    def __init__(self, state_dir: str | os.PathLike[str], haproxy_bin: str = "haproxy", *,
                 keep_running: bool = False, fd_limit: int | None = None) -> None:
        self.process = HAProxyProcess(state_dir, haproxy_bin, on_exit=self._exited)
        self.fd_limit = fd_limit  # the hard limit HAProxy runs under (ulimit-n in its config), if sized
        self._exit_callbacks: list[Callable[[], None]] = []
        self.keep_running = keep_running
        self.haproxy_bin = haproxy_bin
        self.check_dir = Path(state_dir)
        self.runtime = self.process.held  # one connection held open to the worker (the process drops it)
        self.config_path = str(self.process.config_path)

    async def start(self, config: Rendered) -> None:
        if not self.process.running and await self.process.adopt() is None:
            try:
                self._refuse_over_budget(config)
                await asyncio.to_thread(refuse_held_ports, config.config)
            except (PortHeld, DescriptorLimit):
                await self.process.stop()  # lets go of the state directory's lock
                raise
            await self._sync_cert_files(config)
            await self.process.start(config.text, config.maps)
            return
        last = await self.process.files.read_last_good()
        if last is not None and last == (config.text, dict(config.maps)):
            await self._sync_cert_files(config)  # what a restart would load
            return  # it runs this very config: nothing to reload
        await self.reload(config)

    async def alive(self) -> bool:
        return await self.process.alive()

    async def restart_from_last_good(self) -> None:
        await self.process.restart_from_last_good()

    async def serve_last_good(self) -> bool:
        if self.process.running or await self.process.adopt() is not None:
            return True
        last = await self.process.files.read_last_good()
        if last is None:
            await self.process.stop()  # lets go of the state directory's lock
            return False
        await self.process.start(*last)
        return True

    def on_exit(self, callback: Callable[[], None]) -> None:
        self._exit_callbacks.append(callback)

    def _exited(self, _code: int) -> None:
        for callback in self._exit_callbacks:
            callback()

    async def reload(self, config: Rendered) -> int:
        over = self._over_budget(config)
        if over is not None:
            log.warning("HAProxy may run out of file descriptors: %s", over)
        await self._sync_cert_files(config)
        info = await self.process.reload(config.text, config.maps, servers=config.servers)
        return info.reloads

    def _over_budget(self, config: Rendered) -> str | None:
        """What does not fit in the hard limit on open files, and what to change; None if all fits."""
        if self.fd_limit is None:
            return None
        b = budget(config.config, self.fd_limit, listeners=len(listening_binds(config.config)))
        if b.fits:
            if b.asked > b.limit:
                log.info("HAProxy reserves %d descriptors (one per health-checked slot: %d) but needs %d at most "
                         "(%d instances checked now); hard limit %d: running with ulimit-n %d and no "
                         "strict-limits", b.asked, b.slots, b.needed, b.checked, b.limit, b.limit)
            return None
        return f"{b.describe()}: {b.advice()}"

    def _refuse_over_budget(self, config: Rendered) -> None:
        over = self._over_budget(config)
        if over is not None:
            raise DescriptorLimit(f"HAProxy would not fit in this machine's limit on open files: {over}")

    async def reloads(self) -> int:
        return await _reload_count(self.process.master)

    async def stop(self) -> None:
        if self.keep_running:
            await self.process.leave_running()
        else:
            await self.process.stop()


class AttachedHAProxy(_RuntimeOps):
    """An HAProxy the operator runs: haplane writes ``config_path`` (and keeps its last good copy beside it)
    and reloads through the master CLI at ``master_socket``; it never starts or stops the process.
    ``reload_timeout`` bounds each confirmation of a reload (a new worker; that worker on the admin socket)."""

    def __init__(self, admin_socket: str, master_socket: str, config_path: str, haproxy_bin: str = "haproxy",
                 reload_timeout: float = 10.0) -> None:
        self.runtime = RuntimeClient(admin_socket)
        self.master = MasterClient(master_socket)
        self.haproxy_bin = haproxy_bin
        self.config_path = config_path
        self.check_dir = Path(config_path).parent
        self.files = ConfigFiles(self.check_dir)
        self.reload_timeout = reload_timeout

    async def start(self, config: Rendered) -> None:
        await self.reload(config)

    async def alive(self) -> bool:
        try:
            await self.runtime.execute(["show info"])
            return True
        except HAProxyUnavailable:
            return False

    async def restart_from_last_good(self) -> None:
        raise HAProxyUnavailable("the attached HAProxy is not answering; haplane does not run it, so it cannot "
                                 "restart it: restart it yourself (its last good config is "
                                 f"{self.files.last_good_path})")

    async def serve_last_good(self) -> bool:
        return await self.alive()  # the operator runs it, with what it was last given

    def on_exit(self, callback: Callable[[], None]) -> None:
        return None  # haplane does not run this HAProxy: it sees it gone when the admin socket stops answering

    async def reload(self, config: Rendered) -> int:
        """``reload.reload_with_last_good``: save server state (minus servers the new config moves), write the
        files, reload through the master CLI, wait until the new worker holds the admin socket; on failure the
        last good files are back and ``ReloadFailed`` raised."""
        await self._sync_cert_files(config)
        info = await reload_with_last_good(self.files, self.master, self.runtime, config.text, config.maps,
                                           servers=config.servers, timeout=self.reload_timeout)
        return info.reloads

    async def reloads(self) -> int:
        return await _reload_count(self.master)

    async def stop(self) -> None:
        return None
