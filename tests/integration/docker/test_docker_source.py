"""Docker discovery against a real dockerd: containers (busybox httpd, --network host, 127.0.0.x) reach a real
HAProxy when they start and leave it when they stop, across a daemon restart; bad ones are skipped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from tests.integration.agent.conftest import Rig, agent_rig
from tests.support.procs import Dockerd, free_port

from haplane.sources.base import StoreSink
from haplane.sources.docker import DockerSource

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def watching(rig: Rig, dockerd: Dockerd, **kw: object) -> AsyncIterator[DockerSource]:
    source = DockerSource(host=dockerd.host, name="docker-test", **kw)  # type: ignore[arg-type]
    task = asyncio.create_task(source.run(StoreSink(rig.reg)))
    try:
        await asyncio.wait_for(source.connected.wait(), 30)
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def web(dockerd: Dockerd, image: str, name: str, addr: str, port: int, *extra: str, env: bool = True) -> str:
    """A container serving its own name on addr:port with --network host."""
    args = ["--name", name, "--label", f"haplane.address={addr}", *extra]
    if env:
        args += ["-e", "SERVICE_NAME=web", "-e", "CONFIG_MODE=host", "-e", "PREDICATE=web.test", "-e", f"PORT={port}"]
    return dockerd.run(*args, image, "sh", "-c",
                       f"echo {name} > /tmp/index.html && exec httpd -f -p {addr}:{port} -h /tmp")


async def answering(rig: Rig, n: int = 16) -> set[str]:
    seen = set()
    for _ in range(n):
        try:
            r = await rig.get("web.test")
        except Exception:  # HAProxy reloading: no answer this time
            continue
        if r.status_code == 200:
            seen.add(r.text.strip())
    return seen


async def until(check: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_containers_are_routed_while_they_run(tmp_path: Path, dockerd: Dockerd, busybox_image: str,
                                                    loopback: Callable[[], str]) -> None:
    port = free_port()
    a_addr, b_addr = loopback(), loopback()
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd):
        await asyncio.to_thread(web, dockerd, busybox_image, "one-asteroid", a_addr, port)
        await until(lambda: answering(rig), what="the first container through HAProxy")
        reloads = await rig.reloads()
        await asyncio.to_thread(web, dockerd, busybox_image, "two-ASTEROID", b_addr, port)
        await until(lambda: _eq(answering(rig), {"one-asteroid", "two-ASTEROID"}), what="both containers")
        assert await rig.reloads() == reloads  # a second instance is membership: no reload

        await asyncio.to_thread(dockerd.cli, "stop", "-t", "1", "one-asteroid")
        await until(lambda: _eq(answering(rig), {"two-ASTEROID"}), what="the stopped one gone")
        await asyncio.to_thread(dockerd.cli, "kill", "two-ASTEROID")
        await rig.until_status("web.test", 503, timeout=20)
        await asyncio.to_thread(dockerd.cli, "start", "one-asteroid")
        await until(lambda: _eq(answering(rig), {"one-asteroid"}), what="the restarted one back")
        assert await rig.reloads() == reloads


async def _eq(coro: object, expected: set[str]) -> bool:
    return await coro == expected  # type: ignore[misc]


async def test_a_daemon_restart_resyncs(tmp_path: Path, dockerd: Dockerd, busybox_image: str,
                                        loopback: Callable[[], str]) -> None:
    port = free_port()
    kept, lost = loopback(), loopback()
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd) as source:
        await asyncio.to_thread(web, dockerd, busybox_image, "kept-asteroid", kept, port, "--restart", "always")
        await asyncio.to_thread(web, dockerd, busybox_image, "lost-asteroid", lost, port)
        await until(lambda: _eq(answering(rig), {"kept-asteroid", "lost-asteroid"}), what="both before")
        pushes = source.pushes
        await asyncio.to_thread(dockerd.restart)  # stops every container; brings back the one with a policy
        await until(lambda: source.connected.is_set() and source.pushes > pushes, 60, what="a resync")
        await until(lambda: _eq(answering(rig), {"kept-asteroid"}), 30, what="only the restarted container")
        # the watcher carries on after the restart: a new container is seen at once
        await asyncio.to_thread(web, dockerd, busybox_image, "new-asteroid", lost, port)
        await until(lambda: _eq(answering(rig), {"kept-asteroid", "new-asteroid"}), what="a container started after")


async def test_bad_containers_are_skipped_and_health_gates_routing(
        tmp_path: Path, dockerd: Dockerd, busybox_image: str, loopback: Callable[[], str],
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    good, bad, sick, opted = loopback(), loopback(), loopback(), loopback()
    caplog.set_level(logging.WARNING, logger="haplane.sources.docker")
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd):
        await asyncio.to_thread(web, dockerd, busybox_image, "bad-asteroid", bad, port, "-e", "SERVICE_NAME=web",
                                "-e", "PORT=not-a-port", env=False)
        await asyncio.to_thread(web, dockerd, busybox_image, "good-asteroid", good, port)
        await until(lambda: _eq(answering(rig), {"good-asteroid"}), what="the good container")
        assert any("bad-asteroid" in r.getMessage() and "not-a-port" in r.getMessage() for r in caplog.records)

        # no keyword in the name, but the label opts in
        await asyncio.to_thread(web, dockerd, busybox_image, "opted", opted, port, "--label", "haplane.enable=true")
        await until(lambda: _eq(answering(rig), {"good-asteroid", "opted"}), what="the opted-in container")

        # a container whose health check fails is never routed
        await asyncio.to_thread(web, dockerd, busybox_image, "sick-asteroid", sick, port, "--health-cmd", "false",
                                "--health-interval", "1s", "--health-retries", "1")
        await asyncio.sleep(1.5)
        for _ in range(3):
            assert "sick-asteroid" not in await answering(rig)
            await asyncio.sleep(0.3)
