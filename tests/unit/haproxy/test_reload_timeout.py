"""A reload's confirmation bound grows with the config's servers (a reload of 10,000 services took longer than
a fixed 15 s to confirm on 2 cores, and was reported failed although HAProxy went on to serve it)."""

from __future__ import annotations

import asyncio
from typing import Any

from haplane.haproxy.reload import SECONDS_PER_SERVER, confirm_timeout, reload_with_last_good


def test_confirm_timeout_grows_with_servers() -> None:
    assert confirm_timeout(15.0, None) == 15.0
    assert confirm_timeout(15.0, {}) == 15.0
    servers = {("b", f"s{i}"): ("127.0.0.1", 80) for i in range(100_000)}
    assert confirm_timeout(15.0, servers) == 15.0 + 100_000 * SECONDS_PER_SERVER
    assert confirm_timeout(15.0, servers) >= 60.0


class _Proc:
    worker_pid = None
    reloads = 1


class _Master:
    def __init__(self) -> None:
        self.timeouts: list[float] = []

    async def show_proc(self) -> _Proc:
        return _Proc()

    async def reload(self, *, timeout: float, before: Any) -> _Proc:
        self.timeouts.append(timeout)
        return _Proc()


class _Runtime:
    async def execute(self, commands: list[str]) -> list[str]:
        return ["1\n# be_id be_name srv_id srv_name srv_addr\n"]


class _Files:
    async def write_server_state(self, text: str) -> None:
        return None


def test_reload_waits_by_the_size_of_the_config() -> None:
    master = _Master()
    servers = {("b", f"s{i}"): ("127.0.0.1", 80) for i in range(20_000)}
    asyncio.run(reload_with_last_good(_Files(), master, _Runtime(), None, servers=servers,  # type: ignore[arg-type]
                                      timeout=15.0))
    assert master.timeouts == [15.0 + 20_000 * SECONDS_PER_SERVER]
