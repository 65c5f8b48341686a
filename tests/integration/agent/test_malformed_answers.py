"""A real agent and HAProxy whose Runtime API answers come back malformed for a while: the agent neither crashes
nor plans from garbage; it logs a line per bad answer, resyncs after a backoff, and converges once the answers
are sane again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from haplane.haproxy.runtime import Command
from haplane.model.records import Instance, Service

from .conftest import Backend, LogLines, new_backend, rig_with_app

pytestmark = pytest.mark.integration

# what a broken or foreign peer might answer to "show servers state": no header, a header without the columns,
# NUL, replacement characters of bytes that were not UTF-8, a number of 5,000 digits
MALFORMED = [
    "garbage \x00 \ufffd\ufffd 1 2 3\n",
    "1\n# be_id srv_name\n1 app s1 " + "9" * 5000 + "\n",
    "1\n",
]


@pytest.mark.parametrize("answer", MALFORMED, ids=["garbage", "no-columns", "version-only"])
async def test_malformed_server_state_answers_are_survived(tmp_path: Path, backends: list[Backend],
                                                           log_lines: LogLines, answer: str) -> None:
    async with rig_with_app(tmp_path, backends, "i1") as rig:
        await rig.settled()

        runtime = rig.bundle.control.runtime
        real = runtime.execute
        bad = {"left": 3}

        async def execute(commands: Sequence[Command]) -> list[str]:
            answers = await real(commands)
            if bad["left"] and any(str(c).startswith("show servers state") for c in commands):
                bad["left"] -= 1
                return [answer if str(c).startswith("show servers state") else t
                        for c, t in zip(commands, answers, strict=True)]
            return answers

        runtime.execute = execute  # type: ignore[method-assign]
        before = len(log_lines.lines)
        # a membership change and a structural one, both planned while the answers are malformed
        b = new_backend(backends, "b")
        await rig.reg.put_instance(Instance("i2", "app", b.address, b.port))
        w = new_backend(backends, "w")
        await rig.reg.put_service(Service("web", "host", "web.test"))
        await rig.reg.put_instance(Instance("w1", "web", w.address, w.port))
        r = await rig.until_status("web.test", 200, timeout=10)
        assert r.text == "backend=w"
        deadline = asyncio.get_running_loop().time() + 10
        seen: set[str] = set()
        while seen != {"backend=a", "backend=b"}:
            assert asyncio.get_running_loop().time() < deadline, f"i2 never routed: {seen}"
            seen |= {(await rig.get("app.test")).text for _ in range(10)}
            await asyncio.sleep(0.05)
        assert bad["left"] == 0
        status = rig.bundle.agent.status
        assert status.haproxy_ok  # back to healthy after the resync
        said = [ln for ln in log_lines.lines[before:] if "show servers state" in ln]
        assert 1 <= len(said) <= 3, said  # a line per malformed answer, not a flood
