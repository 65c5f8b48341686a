"""A running haplane for the UI, /metrics and CLI tests: a real agent driving a real HAProxy (``agent_rig``), with
the API and UI (``create_app``) served over HTTP on a free loopback port in the same event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
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

    def client(self, token: str | None = READ) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


@contextlib.asynccontextmanager
async def running_haplane(tmp_path: Path, **settings: Any) -> AsyncIterator[Haplane]:
    async with agent_rig(tmp_path, **settings) as rig:
        view = AgentView(rig.bundle.agent)
        s = replace(Settings(state_dir=rig.bundle.state_dir), tokens=dict(TOKENS))
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
