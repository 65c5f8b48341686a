"""Lambda-Registry's sample-data/data.json through /generate, and the config it answers run by a real HAProxy, as
Cosmonaut's update_haproxy.sh ran it: each host and path reaches its service's containers (their addresses moved
to 127.0.0.x, the only change to the payload); an unknown host gets 503."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
from hx_support import backends, free_port, http_get
from tests.support.fixtures import load_json

from haplane.api import ApiDeps, create_app
from haplane.registry import RegistryStore
from haplane.settings import Settings
from haplane.store import open_store

TOKEN = "admin-token-1234"


@contextlib.contextmanager
def running(haproxy: str, config: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_sample_data_config_routes_on_a_real_haproxy(haproxy: str, state_dir: Path) -> None:
    payload = copy.deepcopy(load_json("lambda-registry", "data.json"))
    containers = [c for cand in payload["candidates"] for c in cand["containers"]]
    specs = [(c["id"], f"127.0.0.{20 + n}") for n, c in enumerate(containers)]
    async with backends(*specs) as started:
        by_id = {b.name: b for b in started}
        for cand in payload["candidates"]:
            for c in cand["containers"]:
                b = by_id[c["id"]]
                c["ip"] = f"{b.host}:{b.port}"
        port = free_port()
        store = open_store("memory://")
        deps = ApiDeps(registry=RegistryStore(store), settings=Settings(tokens={TOKEN: "admin"}))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://a") as c:
            r = await c.post("/generate", params={"bind": f"127.0.0.1:{port}"}, json=payload,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        await store.close()
        assert r.status_code == 200, r.text
        config = state_dir / "haproxy.cfg"
        config.write_text(r.text)
        with running(haproxy, config) as proc:
            for _ in range(100):
                with contextlib.suppress(OSError):
                    await http_get(port, "/", host="127.0.0.1")
                    break
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                await asyncio.sleep(0.05)

            async def servers(host: str, path: str = "/") -> set[str]:
                return {(await http_get(port, path, headers={"Host": host})).body for _ in range(6)}

            assert await servers("first.example.com") == {"jk3243j54jl", "a23nj53h3j4"}
            assert await servers("second.example.com") == {"das843j3h3k", "fds32k4354f"}
            assert await servers("any.example.com", "/service/x") == {"service1", "service2"}
            assert (await http_get(port, "/", headers={"Host": "third.example.com"})).status == 503
            # JSESSIONID: prefix mode as Lambda-Registry rendered it (HAProxy prefixes the application's cookie)
            assert "cookie JSESSIONID prefix nocache" in r.text
