"""An API app over a real store (memory:// or SQLite), called in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from haplane.api import ApiDeps, create_app
from haplane.registry import RegistryStore
from haplane.settings import Settings
from haplane.store import open_store

READ, WRITE, ADMIN = "read-token-1234", "write-token-1234", "admin-token-1234"
TOKENS = {READ: "read", WRITE: "write", ADMIN: "admin"}

MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    """``await make_client(tokens=..., store="sqlite")``: a client of a fresh app; ``client.deps`` is its deps."""
    opened: list[tuple[httpx.AsyncClient, Any]] = []

    async def make(tokens: dict[str, str] | None = None, store: str = "memory", **settings: Any
                   ) -> httpx.AsyncClient:
        url = "memory://" if store == "memory" else f"sqlite:///{tmp_path}/api-{len(opened)}.db"
        st = open_store(url)
        s = Settings(state_dir=tmp_path / "state", tokens=dict(TOKENS if tokens is None else tokens), **settings)
        deps = ApiDeps(registry=RegistryStore(st, slot_cooldown=0), settings=s)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://api")
        client.deps = deps  # type: ignore[attr-defined]
        opened.append((client, st))
        return client

    yield make
    for client, st in opened:
        await client.aclose()
        await st.close()


@pytest.fixture
async def client(make_client: MakeClient) -> httpx.AsyncClient:
    return await make_client()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
