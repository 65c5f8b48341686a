"""Cosmonaut's containers, as its README runs them, against a real dockerd and a real HAProxy: its env vars
(CONFIG_MODE, SERVICE_NAME, PREDICATE, COOKIE, and PORT, which Weave's DNS made optional there) and its keyword
in the name define and route the services, host and path mode, with JSESSIONID stickiness; no Cosmos, no
update_haproxy.sh, no reload for membership."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.agent.conftest import agent_rig
from tests.integration.docker.test_docker_source import until, watching
from tests.support.procs import Dockerd, free_port

pytestmark = pytest.mark.integration


def cosmonaut_container(dockerd: Dockerd, image: str, name: str, addr: str, port: int, env: dict[str, str]) -> str:
    """`docker run -d -ti -e CONFIG_MODE=... -e SERVICE_NAME=... -e PREDICATE=... -e COOKIE=... --name NAME`, with
    --network host on a loopback address (tests route to 127.0.0.x only) serving its own name."""
    args = ["--name", name, "--label", f"haplane.address={addr}"]
    for key, value in {**env, "PORT": str(port)}.items():
        args += ["-e", f"{key}={value}"]
    return dockerd.run(*args, image, "sh", "-c",
                       f"mkdir -p /www/service && echo {name} > /www/index.html && echo {name} > "
                       f"/www/service/index.html && exec httpd -f -p {addr}:{port} -h /www")


async def test_cosmonauts_readme_containers_route_through_haproxy(tmp_path: Path, dockerd: Dockerd,
                                                                 busybox_image: str,
                                                                 loopback: Callable[[], str]) -> None:
    port = free_port()
    app1 = {"CONFIG_MODE": "host", "SERVICE_NAME": "app1", "PREDICATE": "first.example.com", "COOKIE": "JSESSIONID"}
    multi = {"CONFIG_MODE": "path", "SERVICE_NAME": "multiservice", "PREDICATE": "service"}
    async with agent_rig(tmp_path) as rig, watching(rig, dockerd):
        for name, env in (("a1-asteroid", app1), ("a2-asteroid", app1), ("m1-Asteroid", multi)):
            await asyncio.to_thread(cosmonaut_container, dockerd, busybox_image, name, loopback(), port, env)
        await asyncio.to_thread(cosmonaut_container, dockerd, busybox_image, "not-mine", loopback(), port, app1)

        async def app1_both() -> bool:
            seen = set()
            for _ in range(8):
                rig.client.cookies.clear()  # a client without the sticky cookie: round robin
                r = await rig.get("first.example.com")
                if r.status_code == 200:
                    seen.add(r.text.strip())
            return seen == {"a1-asteroid", "a2-asteroid"}

        await until(app1_both, what="both app1 containers through HAProxy (and not the one without the keyword)")
        svc, _ = await rig.reg.get_service("app1")
        assert (svc.mode, svc.predicate, svc.cookie, svc.port) == ("host", "first.example.com", "JSESSIONID", port)
        r = await rig.get("any.example.com", "/service/")
        assert (r.status_code, r.text.strip()) == (200, "m1-Asteroid"), "path mode: /service"

        rig.client.cookies.clear()
        first = await rig.get("first.example.com")
        cookie = first.cookies.get("JSESSIONID")
        rig.client.cookies.clear()
        assert cookie, "HAProxy sets the sticky cookie"
        answers = {(await rig.get("first.example.com", headers={"Host": "first.example.com",
                                                                 "Cookie": f"JSESSIONID={cookie}"})).text.strip()
                   for _ in range(8)}
        assert answers == {first.text.strip()}, "JSESSIONID keeps a client on its container"
