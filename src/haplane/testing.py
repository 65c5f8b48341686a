"""Public fakes shipped beside the real thing, for fast tests of code that drives HAProxy.

``FakeHAProxy`` implements the agent's ``HAProxyControl`` in memory: it reads the server slots out of the
configs it is given, applies ``set server`` / map commands like HAProxy does, carries runtime state across a
reload the way ``load-server-state-from-file`` does, and can be told to reject lines (``poison``) so
quarantine paths can be tested. Tests of real behaviour still use a real HAProxy (tests/integration).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from haplane.agent.control import CheckVerdict, CommandResult
from haplane.errors import HAProxyUnavailable, ReloadFailed
from haplane.plan import SlotObs

_SERVER = re.compile(r"^\s+server (\S+) (\S+?):(\d+)(.*)$")
_SET = re.compile(r"^set server (\S+)/(\S+) (addr (\S+) port (\d+)|weight (\d+)|state (ready|drain|maint))$")


@dataclass
class _Slot:
    address: str
    port: int
    weight: int
    maint: bool
    drain: bool
    sessions: int = 0


class FakeHAProxy:
    def __init__(self, poison: Iterable[str] = ()) -> None:
        self.config_path = "fake://haproxy.cfg"
        self.poison = list(poison)  # any config line containing one of these fails the check
        self.config: str | None = None
        self.last_good: str | None = None
        self.backends: dict[str, dict[str, _Slot]] = {}
        self.map_entries: dict[str, dict[str, str]] = {}
        self.commands: list[str] = []
        self.reload_count = 0
        self.running = False
        self.fail_next_reload = False

    # --- HAProxyControl ------------------------------------------------------------------------------------

    async def start(self, config: str, maps: Mapping[str, str]) -> None:
        self._load(config, maps, keep_state=False)
        self.running = True

    async def alive(self) -> bool:
        return self.running

    async def restart_from_last_good(self) -> None:
        if self.last_good is None:
            raise HAProxyUnavailable("no last good config")
        self._load(self.last_good, {}, keep_state=False)
        self.running = True

    async def check(self, config: str, maps: Mapping[str, str]) -> CheckVerdict:
        bad = [n for n, line in enumerate(config.splitlines(), 1) if any(p in line for p in self.poison)]
        if bad:
            return CheckVerdict(False, tuple(f"[ALERT] config : parsing [haproxy.cfg:{n}] : poisoned line"
                                             for n in bad), tuple(bad))
        return CheckVerdict(True, (), ())

    async def reload(self, config: str, maps: Mapping[str, str]) -> int:
        self._require()
        if self.fail_next_reload:
            self.fail_next_reload = False
            raise ReloadFailed("the new worker did not start (fake)")
        self._load(config, maps, keep_state=True)
        self.reload_count += 1
        return self.reload_count

    async def servers(self, backends: Iterable[str] | None = None) -> dict[str, dict[str, SlotObs]]:
        self._require()
        names = self.backends.keys() if backends is None else [b for b in backends if b in self.backends]
        return {b: {s: SlotObs(x.address, x.port, x.weight, x.maint, x.drain, x.sessions)
                    for s, x in self.backends[b].items()} for b in names}

    async def execute(self, commands: list[str]) -> list[CommandResult]:
        self._require()
        out = []
        for cmd in commands:
            self.commands.append(cmd)
            out.append(self._execute(cmd))
        return out

    async def maps(self, paths: Iterable[str]) -> dict[str, dict[str, str]]:
        return {p: dict(self.map_entries.get(p, {})) for p in paths}

    async def reloads(self) -> int:
        return self.reload_count

    async def stop(self) -> None:
        self.running = False

    # --- helpers -------------------------------------------------------------------------------------------

    def kill(self) -> None:
        self.running = False

    def slot(self, backend: str, server: str) -> _Slot:
        return self.backends[backend][server]

    def _require(self) -> None:
        if not self.running:
            raise HAProxyUnavailable("fake HAProxy is not running")

    def _load(self, config: str, maps: Mapping[str, str], keep_state: bool) -> None:
        old = self.backends
        backends: dict[str, dict[str, _Slot]] = {}
        current: dict[str, _Slot] | None = None
        name = ""
        for line in config.splitlines():
            if line.startswith("backend "):
                name = line.split()[1]
                current = backends[name] = {}
            elif line and not line[0].isspace():
                current = None
            elif current is not None and (m := _SERVER.match(line)):
                rest = m.group(4)
                w = re.search(r" weight (\d+)", rest)
                slot = _Slot(m.group(2).strip("[]"), int(m.group(3)), int(w.group(1)) if w else 1,
                             " disabled" in rest, False)
                if keep_state and m.group(1) in old.get(name, {}):
                    prev = old[name][m.group(1)]
                    slot = replace(prev, sessions=0)
                current[m.group(1)] = slot
        self.backends = backends
        for path, content in maps.items():
            self.map_entries[path] = dict(line.split(" ", 1) for line in content.splitlines() if line)
        self.config = config
        self.last_good = config

    def _execute(self, cmd: str) -> CommandResult:
        if m := _SET.match(cmd):
            be, srv = m.group(1), m.group(2)
            slot = self.backends.get(be, {}).get(srv)
            if slot is None:
                return CommandResult(cmd, False, "No such server.")
            if m.group(4):
                slot.address, slot.port = m.group(4), int(m.group(5))
            elif m.group(6):
                slot.weight = int(m.group(6))
            else:
                state = m.group(7)
                slot.maint, slot.drain = state == "maint", state == "drain"
            return CommandResult(cmd, True, "")
        parts = cmd.split()
        if parts[:2] in (["add", "map"], ["set", "map"]) and len(parts) == 5:
            self.map_entries.setdefault(parts[2], {})[parts[3]] = parts[4]
            return CommandResult(cmd, True, "")
        if parts[:2] == ["del", "map"] and len(parts) == 4:
            self.map_entries.setdefault(parts[2], {}).pop(parts[3], None)
            return CommandResult(cmd, True, "")
        return CommandResult(cmd, False, "Unknown command.")
