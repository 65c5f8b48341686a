"""HSDO's dedicated-ASG mode on a real HAProxy: servers of the focused group serve; when none of them is usable,
requests go to the fallback backend (HSDO left that wiring to the operator; haplane renders it), and come back
when a focused server is up again. Host routes (through the host map) and path routes both."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tests.integration.agent.conftest import Backend, agent_rig, new_backend

from haplane.model.records import Instance, Service

pytestmark = pytest.mark.integration


async def seen(rig: object, host: str, path: str = "/", n: int = 6) -> set[str]:
    return {(await rig.get(host, path)).text for _ in range(n)}  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["host", "path"])
async def test_fallback_backend_serves_while_the_focused_group_has_no_usable_server(
        tmp_path: Path, backends: list[Backend], mode: str) -> None:
    focused, other = new_backend(backends, "focused"), new_backend(backends, "other")
    host, path, predicate = ("web.test", "/", "web.test") if mode == "host" else ("any.test", "/web", "/web")
    async with agent_rig(tmp_path, focus_groups=("asg-a",)) as rig:
        await rig.reg.put_service(Service("web", mode, predicate))  # type: ignore[arg-type]
        a, _, _ = await rig.reg.put_instance(Instance("a", "web", focused.address, focused.port, group="asg-a"))
        await rig.reg.put_instance(Instance("b", "web", other.address, other.port, group="asg-b"))
        await rig.settled()
        await rig.until_status(host, 200, path=path)
        assert await seen(rig, host, path) == {"backend=focused"}, "the focused group serves alone"

        a, rev = await rig.reg.get_instance("web", "a")
        await rig.reg.put_instance(replace(a, state="maint"), if_match=rev)
        await rig.settled()
        assert await seen(rig, host, path) == {"backend=other"}, "no usable focused server: the fallback serves"

        a, rev = await rig.reg.get_instance("web", "a")
        await rig.reg.put_instance(replace(a, state="ready"), if_match=rev)
        await rig.settled()
        assert await seen(rig, host, path) == {"backend=focused"}, "back to the focused group"
