"""Public fakes shipped beside the real thing, for fast tests of code that drives HAProxy.

``FakeHAProxy`` implements the agent's ``HAProxyControl`` in memory. It takes its server slots from the model
of the configs it is given (``Rendered.config``, never their text), applies the plan's typed operations
(``haplane.model.ops``) as HAProxy does, refuses what HAProxy or the runtime adapter refuses (an unknown
server or map, a map key to change or delete that is not there, a value the adapter's builders reject), carries
runtime state across a reload the way ``load-server-state-from-file`` does with haplane's filtered state file
(a server the new config leaves where it is keeps its weight and admin state; one it moves takes the config's),
and can be told to reject lines (``poison``) so quarantine paths can be tested.

tests/contract/test_haproxy_control_contract.py holds it and the real control (``ManagedHAProxy`` over a real
HAProxy 2.6) to the same behaviour for the same operations. Tests of real behaviour still use a real HAProxy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from haplane.errors import HAProxyUnavailable, ReloadFailed, ValidationError
from haplane.haproxy.runtime import command_of
from haplane.model.observed import CheckResult, OpResult, SlotObs
from haplane.model.ops import CertDel, CertPut, MapAdd, MapDel, MapSet, RuntimeOp, SetAddress, SetState, SetWeight
from haplane.render import Rendered

__all__ = ["FakeHAProxy"]


class FakeHAProxy:
    def __init__(self, poison: Iterable[str] = ()) -> None:
        self.config_path = "fake://haproxy.cfg"
        self.poison = list(poison)  # any config line containing one of these fails the check
        self.config: str | None = None  # the text of the config in force
        self.rendered: Rendered | None = None  # and the config itself
        self.last_good: Rendered | None = None
        self.backends: dict[str, dict[str, SlotObs]] = {}
        self.map_entries: dict[str, dict[str, str]] = {}
        self.certs: dict[str, str] = {}  # crt-list path → the leaf SHA1 of what it serves
        self.ops: list[RuntimeOp] = []  # every operation received, in order
        self.commands: list[str] = []  # the Runtime API text of each one the adapter's builders accepted
        self.reload_count = 0
        self.running = False
        self.fail_next_reload = False
        self.exit_callbacks: list[Callable[[], None]] = []

    # --- HAProxyControl ------------------------------------------------------------------------------------

    async def start(self, config: Rendered) -> None:
        self._load(config, keep_state=False)
        self.running = True

    async def alive(self) -> bool:
        return self.running

    async def restart_from_last_good(self) -> None:
        if self.last_good is None:
            raise HAProxyUnavailable("no last good config")
        self._load(self.last_good, keep_state=False)
        self.running = True

    async def serve_last_good(self) -> bool:
        if not self.running and self.last_good is not None:
            self._load(self.last_good, keep_state=False)
            self.running = True
        return self.running

    def on_exit(self, callback: Callable[[], None]) -> None:
        self.exit_callbacks.append(callback)

    def kill(self) -> None:
        """HAProxy dies (as a SIGKILL would do): nothing answers, the exit callbacks are called."""
        self.running = False
        for callback in self.exit_callbacks:
            callback()

    async def check(self, config: Rendered) -> CheckResult:
        bad = [n for n, line in enumerate(config.text.splitlines(), 1) if any(p in line for p in self.poison)]
        if bad:
            return CheckResult(False, tuple(f"[ALERT] config : parsing [haproxy.cfg:{n}] : poisoned line"
                                            for n in bad), tuple(bad))
        return CheckResult(True)

    async def reload(self, config: Rendered) -> int:
        self._require()
        if self.fail_next_reload:
            self.fail_next_reload = False
            raise ReloadFailed("the new worker did not start (fake)")
        self._load(config, keep_state=True)
        self.reload_count += 1
        return self.reload_count

    async def servers(self, backends: Iterable[str] | None = None) -> dict[str, dict[str, SlotObs]]:
        self._require()
        names = self.backends.keys() if backends is None else [b for b in backends if b in self.backends]
        return {b: dict(self.backends[b]) for b in names if self.backends[b]}  # no servers: not in the state

    async def execute(self, ops: Sequence[RuntimeOp]) -> list[OpResult]:
        self._require()
        return [self._execute(op) for op in ops]

    async def execute_and_read(self, ops: Sequence[RuntimeOp], backends: Iterable[str]
                               ) -> tuple[list[OpResult], dict[str, dict[str, SlotObs]]]:
        results = await self.execute(ops)
        return results, await self.servers(list(backends))

    async def maps(self, paths: Iterable[str]) -> dict[str, dict[str, str]]:
        return {p: dict(self.map_entries.get(p, {})) for p in paths}

    async def map_entries_of(self, keys: Mapping[str, Iterable[str]]) -> dict[str, dict[str, str]]:
        return {p: {k: v for k in ks if (v := self.map_entries.get(p, {}).get(k)) is not None}
                for p, ks in keys.items()}

    async def certificates(self, crt_list: str, paths: Iterable[str] | None = None) -> dict[str, str]:
        self._require()
        wanted = None if paths is None else set(paths)
        return {p: fp for p, fp in self.certs.items() if wanted is None or p in wanted}

    async def reloads(self) -> int:
        return self.reload_count

    async def stop(self) -> None:
        self.running = False

    # --- helpers -------------------------------------------------------------------------------------------

    def slot(self, backend: str, server: str) -> SlotObs:
        return self.backends[backend][server]

    def set_sessions(self, backend: str, server: str, sessions: int) -> None:
        """Pretend ``sessions`` clients are connected to a server (what a drain waits for)."""
        self.backends[backend][server] = replace(self.backends[backend][server], sessions=sessions)

    def _require(self) -> None:
        if not self.running:
            raise HAProxyUnavailable("fake HAProxy is not running")

    def _load(self, config: Rendered, keep_state: bool) -> None:
        old = self.backends
        backends: dict[str, dict[str, SlotObs]] = {}
        for be in config.config.backends:
            slots = backends[be.name] = {}
            for s in be.servers:
                # as rendered: a draining server is written with weight 0, a server in maintenance disabled
                slot = SlotObs(s.address, s.port, 0 if s.state == "drain" else s.weight, s.state == "maint", False)
                prev = old.get(be.name, {}).get(s.name) if keep_state else None
                if prev is not None and (prev.address, prev.port) == (slot.address, slot.port):
                    slot = replace(prev, sessions=0)  # the state file carries weight and admin state
                slots[s.name] = slot
        self.backends = backends
        for path, content in config.maps.items():
            self.map_entries[path] = dict(line.split(" ", 1) for line in content.splitlines() if line)
        if any(f.tls is not None for f in config.config.frontends):  # the crt-list on disk, as it was synced
            self.certs = {c.path: c.sha1 for c in config.config.certificates}
        self.config = config.text
        self.rendered = self.last_good = config

    def _execute(self, op: RuntimeOp) -> OpResult:
        self.ops.append(op)
        try:
            command = command_of(op)
        except ValueError as exc:
            return OpResult(op, "", False, f"not sent: {exc}")
        self.commands.append(command)
        match op:
            case SetAddress() | SetWeight() | SetState():
                be = self.backends.get(op.backend)
                if be is None:
                    return OpResult(op, command, False, "No such backend.")
                slot = be.get(op.server)
                if slot is None:
                    return OpResult(op, command, False, "No such server.")
                be[op.server] = slot.after(op)
            case CertPut():
                import time

                from haplane.tls.certs import parse_bundle, split_combined

                try:  # HAProxy refuses what does not load or whose key is not the leaf's (at commit)
                    chain, key = split_combined(op.pem)
                    self.certs[op.path] = parse_bundle(chain, key, time.time(), allow_expired=True).info.sha1
                except (ValueError, ValidationError) as exc:
                    return OpResult(op, command, False, f"inconsistencies between private key and certificate "
                                                        f"loaded, or no certificate: {exc}")
            case CertDel():
                self.certs.pop(op.path, None)
            case MapAdd() | MapSet() | MapDel():
                entries = self.map_entries.get(op.path)
                if entries is None:
                    return OpResult(op, command, False, "Unknown map identifier. Please use #<id> or <file>.")
                match op:
                    case MapAdd():
                        entries.setdefault(op.key, op.value)  # HAProxy appends; lookups find the first
                    case MapSet() if op.key not in entries:
                        return OpResult(op, command, False, "entry not found.")
                    case MapDel() if op.key not in entries:
                        return OpResult(op, command, False, "Key not found.")
                    case MapSet():
                        entries[op.key] = op.value
                    case MapDel():
                        del entries[op.key]
        return OpResult(op, command, True, "")
