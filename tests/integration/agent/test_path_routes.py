"""Path-prefix routes through a runtime map on a real HAProxy: a route added to an existing backend, moved and
removed is a map entry (``add map``/``del map``), and HAProxy's own reload counter does not move; the longest
prefix wins whatever order the entries reached HAProxy in; a host route wins over a path route."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from haplane.model.records import Instance, Service

from .conftest import Backend, Rig, agent_rig, new_backend

pytestmark = pytest.mark.integration


async def answer(rig: Rig, path: str, host: str = "any.test") -> str:
    r = await rig.get(host, path)
    return r.text if r.status_code == 200 else str(r.status_code)


async def until_answer(rig: Rig, path: str, want: str, host: str = "any.test") -> None:
    for _ in range(200):
        if await answer(rig, path, host) == want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{host}{path}: {await answer(rig, path, host)!r}, not {want!r}")


async def test_path_route_added_moved_removed_without_reload_longest_prefix_wins(
        tmp_path: Path, backends: list[Backend]) -> None:
    api, deep, web = (new_backend(backends, n) for n in ("api", "deep", "web"))
    async with agent_rig(tmp_path) as rig:
        await rig.reg.put_service(Service("api", "path", "/api"))
        await rig.reg.put_service(Service("deep", "path"))  # a backend with no route yet
        await rig.reg.put_service(Service("web", "host", "web.test"))
        for name, b in (("api", api), ("deep", deep), ("web", web)):
            await rig.reg.put_instance(Instance(f"{name}1", name, b.address, b.port))
        await rig.settled()
        await until_answer(rig, "/api/deep/x", "backend=api")
        reloads = await rig.reloads()
        paths = rig.bundle.agent.compose_options().path_map
        assert paths is not None

        # added: the longer prefix reaches HAProxy after the shorter one, and still wins
        await rig.reg.put_service(Service("deep", "path", "/api/deep"))
        await rig.settled()
        await until_answer(rig, "/api/deep/x", "backend=deep")
        assert await answer(rig, "/api/deep") == "backend=deep"
        assert await answer(rig, "/api/deeper") == "backend=api", "a prefix ends at a '/'"
        assert await answer(rig, "/api/x") == "backend=api"
        assert await answer(rig, "/api") == "backend=api"
        assert await answer(rig, "/apis") == "503", "no route: '/api' is not a prefix of '/apis'"
        assert await answer(rig, "/api/deep/x", host="web.test") == "backend=web", "a host route wins"

        # moved
        await rig.reg.put_service(Service("deep", "path", "/moved/"))
        await rig.settled()
        await until_answer(rig, "/moved/y", "backend=deep")
        assert await answer(rig, "/api/deep/x") == "backend=api"
        assert await answer(rig, "/moved") == "backend=deep"

        # a shorter prefix than an existing one, added last: the longer one still wins
        await rig.reg.put_service(Service("web", "path", "/"))
        await rig.settled()
        await until_answer(rig, "/elsewhere", "backend=web")
        assert await answer(rig, "/moved/y") == "backend=deep"
        assert await answer(rig, "/api/v1") == "backend=api"

        # removed
        await rig.reg.put_service(Service("deep", "path"))
        await rig.settled()
        await until_answer(rig, "/moved/y", "backend=web")
        assert await answer(rig, "/api/deep/x") == "backend=api"

        assert await rig.reloads() == reloads, "routes added, moved and removed through the map: no reload"
        entries = (await rig.bundle.control.maps([paths]))[paths]
        assert entries == {"/api/": "api", "/": "web"}

