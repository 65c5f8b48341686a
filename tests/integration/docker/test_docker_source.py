"""Docker discovery against a real dockerd: containers (busybox httpd, --network host, 127.0.0.x) reach a real
HAProxy when they start and leave it when they stop, pause or turn unhealthy, across a daemon restart and a
daemon crash; bad ones are skipped while the others carry on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.agent.conftest import Rig, agent_rig
from tests.support.procs import Dockerd, free_port

from haplane.model.records import HealthCheck, Service
from haplane.sources.base import StoreSink
from haplane.sources.docker import DockerSource

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def watching(rig: Rig, dockerd: Dockerd, **kw: Any) -> AsyncIterator[DockerSource]:
    source = DockerSource(host=dockerd.host, name="docker-test", **kw)
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


async def docker(dockerd: Dockerd, *args: str) -> None:
    await asyncio.to_thread(dockerd.cli, *args)


async def answering(rig: Rig, n: int = 16) -> set[str]:
    """The containers answering web.test through HAProxy over n requests (round robin reaches them all)."""
    seen = set()
    for _ in range(n):
        try:
            r = await rig.get("web.test")
        except httpx.TransportError:  # HAProxy reloading: no answer this time
            continue
        if r.status_code == 200:
            seen.add(r.text.strip())
    return seen


async def until(check: Callable[[], Awaitable[object] | object], timeout: float = 30.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    last: object = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def routed(rig: Rig, expected: set[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await answering(rig) == expected
    return check


async def test_containers_are_routed_while_they_run(tmp_path: Path, dockerd: Dockerd, busybox_image: str,
                                                    loopback: Callable[[], str]) -> None:
    port = free_port()
    a_addr, b_addr = loopback(), loopback()
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd) as source:
        await asyncio.to_thread(web, dockerd, busybox_image, "one-asteroid", a_addr, port)
        await until(routed(rig, {"one-asteroid"}), what="the first container through HAProxy")
        svc, _ = await rig.reg.get_service("web")
        assert (svc.mode, svc.predicate, svc.port) == ("host", "web.test", port)  # defined by the container
        reloads = await rig.reloads()
        await asyncio.to_thread(web, dockerd, busybox_image, "two-ASTEROID", b_addr, port)
        await until(routed(rig, {"one-asteroid", "two-ASTEROID"}), what="both containers")
        ids = {i.id for i, _ in await rig.reg.list_instances("web")}
        assert ids == {"one-asteroid.test", "two-ASTEROID.test"}

        await docker(dockerd, "stop", "-t", "1", "one-asteroid")
        await until(routed(rig, {"two-ASTEROID"}), what="the stopped one gone")
        await docker(dockerd, "pause", "two-ASTEROID")
        await rig.until_status("web.test", 503, timeout=30)
        await docker(dockerd, "unpause", "two-ASTEROID")
        await until(routed(rig, {"two-ASTEROID"}), what="the unpaused one back")
        await docker(dockerd, "kill", "two-ASTEROID")
        await rig.until_status("web.test", 503, timeout=30)
        await docker(dockerd, "start", "one-asteroid")
        await until(routed(rig, {"one-asteroid"}), what="the restarted one back")
        await docker(dockerd, "rm", "-f", "one-asteroid")
        await rig.until_status("web.test", 503, timeout=30)
        assert await rig.reloads() == reloads  # membership only: HAProxy was never reloaded
        assert source.reconnects == 0


async def test_a_daemon_restart_resyncs(tmp_path: Path, dockerd: Dockerd, busybox_image: str,
                                        loopback: Callable[[], str]) -> None:
    port = free_port()
    kept, lost = loopback(), loopback()
    # leave_grace: the daemon's shutdown signals every container; those marks must not outlive the reconnect
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd, leave_grace=600) as source:
        await asyncio.to_thread(web, dockerd, busybox_image, "kept-asteroid", kept, port, "--restart", "always")
        await asyncio.to_thread(web, dockerd, busybox_image, "lost-asteroid", lost, port)
        await until(routed(rig, {"kept-asteroid", "lost-asteroid"}), what="both before")
        await asyncio.to_thread(dockerd.restart)  # stops every container; brings back the one with a policy
        await until(lambda: source.connected.is_set() and source.reconnects == 1, 60, what="a resync")
        await until(routed(rig, {"kept-asteroid"}), what="only the restarted container")
        # the watcher carries on after the restart: a new container is seen at once
        await asyncio.to_thread(web, dockerd, busybox_image, "new-asteroid", lost, port)
        await until(routed(rig, {"kept-asteroid", "new-asteroid"}), what="a container started after")


async def test_a_daemon_gone_too_long_has_its_instances_withdrawn(tmp_path: Path, dockerd: Dockerd,
                                                                  busybox_image: str,
                                                                  loopback: Callable[[], str]) -> None:
    port = free_port()
    kept, lost = loopback(), loopback()
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd, forget_after=1.0, leave_grace=600) as source:
        await asyncio.to_thread(web, dockerd, busybox_image, "kept-asteroid", kept, port, "--restart", "always")
        await asyncio.to_thread(web, dockerd, busybox_image, "lost-asteroid", lost, port)
        await until(routed(rig, {"kept-asteroid", "lost-asteroid"}), what="both before")
        await asyncio.to_thread(dockerd.kill)  # a crash: the containers go on running without their daemon
        await rig.until_status("web.test", 503, timeout=30)  # withdrawn: nobody vouches for them any more
        async with httpx.AsyncClient(timeout=5) as direct:  # ...although they still answer
            assert (await direct.get(f"http://{kept}:{port}/")).text.strip() == "kept-asteroid"
        assert await rig.reg.list_instances("web") == []
        await asyncio.to_thread(dockerd.start)  # without live-restore it kills them; the policy restarts one
        await until(lambda: source.reconnects == 1, 60, what="the resync")
        await until(routed(rig, {"kept-asteroid"}), what="the container with a restart policy back")


async def test_health_gates_routing_without_reloads(tmp_path: Path, dockerd: Dockerd, busybox_image: str,
                                                   loopback: Callable[[], str]) -> None:
    port = free_port()
    plain, checked = loopback(), loopback()
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd):
        await asyncio.to_thread(web, dockerd, busybox_image, "plain-asteroid", plain, port)
        await until(routed(rig, {"plain-asteroid"}), what="the container without a health check")
        reloads = await rig.reloads()
        # healthy only while /tmp/ok exists: starts without it (starting, then unhealthy)
        await asyncio.to_thread(web, dockerd, busybox_image, "checked-asteroid", checked, port, "--health-cmd",
                                "test -f /tmp/ok", "--health-interval", "1s", "--health-retries", "1")

        async def in_registry_unhealthy() -> bool:
            return any(i.id == "checked-asteroid.test" and not i.healthy
                       for i, _ in await rig.reg.list_instances("web"))

        await until(in_registry_unhealthy, what="the checked container registered, not healthy")
        await rig.settled()
        assert await answering(rig, 24) == {"plain-asteroid"}
        await docker(dockerd, "exec", "checked-asteroid", "touch", "/tmp/ok")
        await until(routed(rig, {"plain-asteroid", "checked-asteroid"}), what="healthy: routed")
        await docker(dockerd, "exec", "checked-asteroid", "rm", "/tmp/ok")
        await until(routed(rig, {"plain-asteroid"}), what="unhealthy again: out")
        assert await rig.reloads() == reloads  # it kept its slot all along


async def test_bad_containers_are_skipped_others_carry_on(tmp_path: Path, dockerd: Dockerd, busybox_image: str,
                                                          loopback: Callable[[], str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    good, bad, opted, ignored = loopback(), loopback(), loopback(), loopback()
    caplog.set_level(logging.WARNING, logger="haplane.sources.docker")
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd) as source:
        # an operator's settings on the service survive the container's definition
        await rig.reg.put_service(Service("web", predicate="web.test", balance="leastconn",
                                          health=HealthCheck(path="/index.html")))
        await asyncio.to_thread(web, dockerd, busybox_image, "bad-asteroid", bad, port, "-e", "SERVICE_NAME=web",
                                "-e", "PORT=not-a-port", env=False)
        await asyncio.to_thread(web, dockerd, busybox_image, "good-asteroid", good, port)
        await until(routed(rig, {"good-asteroid"}), what="the good container")
        assert any("container bad-asteroid: env PORT: 'not-a-port' is not a port number" in r.getMessage()
                   for r in caplog.records)
        svc, _ = await rig.reg.get_service("web")
        assert (svc.port, svc.balance, svc.health) == (port, "leastconn", HealthCheck(path="/index.html"))

        # no keyword in the name, but the label opts in; a container with neither is not looked at
        await asyncio.to_thread(web, dockerd, busybox_image, "opted", opted, port, "--label", "haplane.enable=true")
        await asyncio.to_thread(web, dockerd, busybox_image, "ignored", ignored, port)
        await until(routed(rig, {"good-asteroid", "opted"}), what="the opted-in container")
        pushes = source.pushes
        assert await answering(rig, 24) == {"good-asteroid", "opted"}
        assert not any("ignored" in r.getMessage() for r in caplog.records)
        assert sum("bad-asteroid" in r.getMessage() for r in caplog.records) == 1  # warned once, not per push
        assert source.pushes == pushes


async def test_a_stopping_container_leaves_at_the_signal_before_it_dies(
        tmp_path: Path, dockerd: Dockerd, busybox_image: str, loopback: Callable[[], str]) -> None:
    port = free_port()
    addr = loopback()
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd, leave_grace=2.0):
        # PID 1 ignores SIGTERM, so after `docker stop` the container serves on until the stop timeout
        await asyncio.to_thread(dockerd.run, "--name", "slow-asteroid", "--label", f"haplane.address={addr}",
                                "--stop-signal", "TERM", "-e", "SERVICE_NAME=web", "-e", "PREDICATE=web.test", "-e",
                                f"PORT={port}", busybox_image, "sh", "-c",
                                f"trap '' TERM; echo slow > /tmp/index.html; httpd -f -p {addr}:{port} -h /tmp")
        await until(routed(rig, {"slow"}), what="the container routed")
        direct = httpx.AsyncClient(timeout=5)
        stopping = asyncio.create_task(docker(dockerd, "stop", "-t", "60", "slow-asteroid"))
        try:
            await rig.until_status("web.test", 503, timeout=30)  # out of HAProxy at the signal...
            assert (await direct.get(f"http://{addr}:{port}/")).text.strip() == "slow"  # ...while still serving
        finally:
            await docker(dockerd, "kill", "slow-asteroid")
            await stopping
        await docker(dockerd, "start", "slow-asteroid")
        await until(routed(rig, {"slow"}), what="started again")
        # a stop signal the process ignores, and no stop after it: back once leave_grace is over
        await docker(dockerd, "kill", "-s", "TERM", "slow-asteroid")
        await rig.until_status("web.test", 503, timeout=30)
        await until(routed(rig, {"slow"}), what="back after leave_grace")
        await direct.aclose()
