"""Runtime holds with a real HAProxy: an item whose Runtime API change is refused is held (one log line, visible
in status and /metrics), not retried until its record changes, and every other change goes on -- a new
service created meanwhile is routed."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from haplane.agent.view import AgentView
from haplane.commands._client import Style
from haplane.commands.status import render as status_render
from haplane.errors import ValidationError
from haplane.metrics import Metrics
from haplane.model.records import Instance, Service

from .conftest import Backend, LogLines, Rig, new_backend, rig_with_app

pytestmark = pytest.mark.integration


async def _until(cond: object, timeout: float = 10.0) -> None:
    assert callable(cond)
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def _scrape(rig: Rig) -> str:
    view = AgentView(rig.bundle.agent)
    return (await Metrics(CollectorRegistry(), view).scrape()).decode()


# a DNS name: the model takes it, the Runtime API cannot (set server ... addr takes an IP address, haplane does
# not send it); a scoped IPv6 address: sent, and HAProxy refuses it (where the model still takes it)
REFUSED = [("localhost", "'localhost' does not appear to be an IPv4 or IPv6 address"), ("::1%lo", "addr")]


@pytest.mark.parametrize(("address", "answer"), REFUSED, ids=["dns-name", "scoped-ipv6"])
async def test_a_refused_instance_is_held_and_the_rest_goes_on(tmp_path: Path, backends: list[Backend],
                                                               log_lines: LogLines, address: str, answer: str
                                                               ) -> None:
    try:
        Instance.from_dict({"id": "bad", "service": "app", "address": address, "port": 8080})
    except ValidationError:
        pytest.skip(f"the model refuses {address!r} now: nothing reaches HAProxy to refuse")
    async with rig_with_app(tmp_path, backends, "good") as rig:
        await rig.reg.put_instance(Instance("bad", "app", address, 8080))
        agent = rig.bundle.agent
        await _until(lambda: "instance:app/bad" in agent.status.held)
        # its slot's other commands ran (weight, state ready): a pass without it puts the slot back in maint
        # at once, not at the next event -- nothing is routed to the free slot's address meanwhile
        control = rig.bundle.control

        desired = agent.desired
        assert desired is not None
        be = next(b.name for b in desired.backends if b.owner == "service:app")  # (a pool's spare, say)

        async def slots_in_service() -> set[str]:
            return {name for name, o in (await control.servers({be}))[be].items() if not o.maint}

        deadline = asyncio.get_running_loop().time() + 2
        while await slots_in_service() != {"s1"}:
            assert asyncio.get_running_loop().time() < deadline, await slots_in_service()
            await asyncio.sleep(0.02)
        # a new service meanwhile: its reload is not starved
        w = new_backend(backends, "w")
        await rig.reg.put_service(Service("web", "host", "web.test"))
        await rig.reg.put_instance(Instance("w1", "web", w.address, w.port))
        r = await rig.until_status("web.test", 200)
        assert r.text == "backend=w"
        held = agent.status.to_dict()["held"]
        assert list(held) == ["instance:app/bad"]
        assert answer in held["instance:app/bad"], held
        # the held instance is not in HAProxy: the service answers from its good instance only
        seen = {(await rig.get("app.test")).text for _ in range(10)}
        assert seen == {"backend=a"}
        # one line per hold, not per attempt
        before = len(log_lines.lines)
        await asyncio.sleep(2.0)
        assert len(log_lines.lines) - before <= 2, log_lines.lines[before:before + 10]
        assert sum("instance:app/bad" in ln and "held" in ln for ln in log_lines.lines) == 1
        # seen in the status document and in /metrics
        text = await _scrape(rig)
        assert 'haplane_runtime_held{kind="instance"} 1.0' in text
        doc = await AgentView(agent).overview(live=False)  # what the UI and `haplane status` show
        assert doc["held"] == held
        shown = status_render(doc, Style(io.StringIO()))
        assert "held (HAProxy refused their runtime change" in shown and "instance:app/bad: " in shown
        # released by changing its record: a good address takes it in
        b = new_backend(backends, "b")
        await rig.reg.put_instance(Instance("bad", "app", b.address, b.port))
        await _until(lambda: not agent.status.held)
        await rig.settled()
        seen = {(await rig.get("app.test")).text for _ in range(20)}
        assert seen == {"backend=a", "backend=b"}
        assert 'haplane_runtime_held{kind="instance"} 0.0' in await _scrape(rig)
