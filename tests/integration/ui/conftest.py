"""A running haplane for the UI, /metrics and CLI tests: a real agent driving a real HAProxy (``agent_rig``), with
the API and UI (``create_app``) served over HTTP on a free loopback port in the same event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tests.integration.agent.conftest import Rig, agent_rig, free_port

from haplane.agent.view import AgentView
from haplane.api import ApiDeps, create_app
from haplane.api.server import serve_api
from haplane.settings import Settings

READ, WRITE, ADMIN = "ui-read-token-1234", "ui-write-token-1234", "ui-admin-token-1234"
TOKENS = {READ: "read", WRITE: "write", ADMIN: "admin"}


@dataclass
class Haplane:
    rig: Rig
    url: str  # the API and UI, http://127.0.0.1:PORT
    deps: ApiDeps
    view: AgentView

    def cli_env(self) -> dict[str, str]:
        """The environment a ``haplane`` command needs to read this agent's state as the agent sees it (the
        settings compose and render depend on)."""
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("HAPLANE_") and "proxy" not in k.lower()}
        env.update({"HAPLANE_STATE_DIR": str(self.rig.bundle.state_dir), "HAPLANE_STORE": self.rig.bundle.store.url,
                    "HAPLANE_HTTP_PORT": self.rig.proxy.rsplit(":", 1)[1], "HAPLANE_HTTP_ADDRESS": "127.0.0.1",
                    "HAPLANE_DRAIN_TIMEOUT": "0", "HAPLANE_RAMP_INTERVAL": "0", "NO_COLOR": "1"})
        return env

    async def cli(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        """Run ``haplane ARGS`` as a process (the agent keeps running in this loop meanwhile)."""
        import sys

        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "haplane", *args, env=self.cli_env(),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode or 0, out.decode(), err.decode()

    def client(self, token: str | None = READ) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


@contextlib.asynccontextmanager
async def running_haplane(tmp_path: Path, env: dict[str, str] | None = None, **settings: Any
                          ) -> AsyncIterator[Haplane]:
    async with agent_rig(tmp_path, env, **settings) as rig:
        view = AgentView(rig.bundle.agent, latency=rig.bundle.latency)
        s = Settings(state_dir=rig.bundle.state_dir, tokens=dict(TOKENS))
        deps = ApiDeps(registry=rig.reg, settings=s, agent=view)
        app = create_app(deps)
        port = free_port()
        started = asyncio.Event()
        task = asyncio.create_task(serve_api(app, "127.0.0.1", port, started=started))
        try:
            await asyncio.wait_for(started.wait(), 10)
            yield Haplane(rig, f"http://127.0.0.1:{port}", deps, view)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if view.stats is not None:
                await view.stats.stop()
