"""An instance that moves (same id, another address) is followed by every client, keep-alive ones included.

HAProxy 2.6 keeps a keep-alive client on the server connection it had to a server slot, even after
`set server addr` or maintenance; so a move takes a new slot and the old one drains. Without that, this client
would be answered by the old address for as long as it keeps its connection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.integration.agent.conftest import Backend, agent_rig, new_backend

from haplane.model.records import Instance, Service

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("how", ["put_instance", "replace_source"])
async def test_a_keep_alive_client_follows_a_moving_instance(tmp_path: Path, backends: list[Backend],
                                                             how: str) -> None:
    b = [new_backend(backends, "b0"), new_backend(backends, "b1")]
    async with agent_rig(tmp_path, drain_timeout=5) as rig:
        await rig.reg.put_service(Service("web", "host", "web.test"))
        reloads = None
        for i in range(4):
            to = b[i % 2]
            moving = Instance("moving", "web", to.address, to.port)
            if how == "put_instance":
                await rig.reg.put_instance(moving)
            else:
                await rig.reg.replace_source("src", [moving])
            deadline = asyncio.get_running_loop().time() + 5
            while (await rig.get("web.test")).text != f"backend={to.name}":  # one keep-alive client throughout
                assert asyncio.get_running_loop().time() < deadline, f"move {i}: still served by the old address"
                await asyncio.sleep(0.005)
            assert {(await rig.get("web.test")).text for _ in range(10)} == {f"backend={to.name}"}
            if reloads is None:
                await rig.settled()
                reloads = await rig.reloads()
        assert await rig.reloads() == reloads, "moves go through the Runtime API"
