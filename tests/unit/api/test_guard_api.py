"""Guessing tokens costs time and shows (a wait per address, a WARNING, a metric); a logged-out session is dead on
every server of the store; /health tells anyone only the status."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.unit.api.conftest import ADMIN, READ, TOKENS, WRITE, MakeClient, auth

from haplane.api import ApiDeps, create_app
from haplane.api.auth import COOKIE, LoginGuard
from haplane.registry import RegistryStore
from haplane.settings import Settings
from haplane.store import keys, open_store


def other_client(app_client: httpx.AsyncClient, address: str) -> httpx.AsyncClient:
    """A client of the same app from another address."""
    app = app_client._transport.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 4711)), base_url="http://api")


async def test_wrong_tokens_make_the_address_wait(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture,
                                                  promtool_bin: str) -> None:
    with caplog.at_level(logging.WARNING, "haplane.api.auth"):
        for i in range(5):
            r = await client.post("/auth/login", json={"token": f"guess-{i:012d}"})
            assert r.status_code == 401, (i, r.text)
    assert sum("a wrong token from 127.0.0.1" in m for m in caplog.messages) == 5, caplog.messages
    r = await client.post("/auth/login", json={"token": "guess-6-xxxxxxx"})
    assert r.status_code == 429 and r.json()["error"] == "TooManyAttempts"
    assert int(r.headers["retry-after"]) >= 1
    # while it waits, no token of this address is looked at, not even a right one, nor a bearer
    assert (await client.post("/auth/login", json={"token": WRITE})).status_code == 429
    assert (await client.get("/services", headers=auth(READ))).status_code == 429
    # another address is not held up
    async with other_client(client, "127.0.0.9") as other:
        assert (await other.post("/auth/login", json={"token": WRITE})).status_code == 200
        metrics = (await other.get("/metrics", headers=auth(READ))).text
    assert "haplane_login_failures_total 5.0" in metrics
    assert "haplane_login_throttled_total 3.0" in metrics
    assert "haplane_login_guard_addresses 1.0" in metrics
    out = subprocess.run([promtool_bin, "check", "metrics"], input=metrics, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


async def test_bearer_guesses_count_too(client: httpx.AsyncClient) -> None:
    for i in range(5):
        assert (await client.get("/services", headers=auth(f"bearer-guess-{i:08d}"))).status_code == 401
    r = await client.get("/services", headers=auth(READ))
    assert r.status_code == 429 and "retry-after" in r.headers
    # /health still answers (the status: the container's health check must not fail because of a guesser)
    assert (await client.get("/health", headers=auth("bearer-guess-x"))).json() == {"status": "ok"}


def test_the_wait_grows_and_the_table_is_bounded() -> None:
    g = LoginGuard(size=3)
    for _ in range(5):
        g.failed("a", "test", now=100.0)
    assert g.wait("a", now=100.0) == 1.0
    g.failed("a", "test", now=101.0)
    g.failed("a", "test", now=101.0)
    assert g.wait("a", now=101.0) == 4.0
    for _ in range(30):
        g.failed("a", "test", now=200.0)
    assert g.wait("a", now=200.0) == 300.0, "at most 5 minutes"
    assert g.wait("a", now=200.0 + 901) == 0.0 and len(g) == 0, "forgotten after 15 quiet minutes"
    for n, address in enumerate("bcdef"):
        g.failed(address, "test", now=300.0 + n)
    assert len(g) == 3 and g.wait("b", now=305.0) == 0.0, "the oldest address is forgotten past size"


async def test_logout_ends_the_session_on_every_server_of_the_store(make_client: MakeClient,
                                                                    tmp_path: Path) -> None:
    a = await make_client(store="sqlite")
    r = await a.post("/auth/login", json={"token": WRITE})
    assert r.status_code == 200
    cookie = a.cookies[COOKIE]
    # another `haplane serve` on the same store (its own connection, its own app)
    store_b = open_store(a.deps.registry.store.url)  # type: ignore[attr-defined]
    deps_b = ApiDeps(registry=RegistryStore(store_b), settings=Settings(state_dir=tmp_path / "b", tokens=TOKENS))
    b = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps_b)), base_url="http://api",
                          cookies={COOKIE: cookie})
    try:
        assert (await b.get("/auth/whoami")).json()["via"] == "session"
        assert (await a.post("/auth/logout")).status_code == 200
        assert not a.cookies.get(COOKIE)
        r = await b.get("/auth/whoami")
        assert r.status_code == 401, "the cookie, kept by someone, still worked after logout"
        assert (await b.get("/ui/", follow_redirects=False)).status_code == 303, "the UI asks for a token again"
        revoked, _ = await store_b.range(keys.REVOKED)
        assert len(revoked) == 1 and revoked[0].lease != 0, "the revocation lives as long as the session would"
        assert keys.decode(revoked[0].key) is not None and keys.decode(revoked[0].key).kind == "revoked_session"  # type: ignore[union-attr]
        # a new login is a new session, not revoked
        r = await b.post("/auth/login", json={"token": WRITE})
        assert r.status_code == 200 and (await b.get("/auth/whoami")).status_code == 200
    finally:
        await b.aclose()
        await store_b.close()


async def test_health_tells_anyone_only_the_status(make_client: MakeClient) -> None:
    client = await make_client(store="sqlite")
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert (await client.get("/health", headers=auth("not-a-token-at-all"))).json() == {"status": "ok"}
    for token in (READ, ADMIN):
        r = await client.get("/health", headers=auth(token))
        assert r.json()["store"]["url"].startswith("sqlite:///") and "version" in r.json()
    await client.post("/auth/login", json={"token": READ})
    assert "store" in (await client.get("/health")).json(), "a session shows the details too"
    await client.deps.registry.store.close()  # type: ignore[attr-defined]
    r = await client.get("/health")
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}


async def test_an_open_api_shows_the_details(make_client: MakeClient) -> None:
    client = await make_client(tokens={})
    assert "store" in (await client.get("/health")).json()


async def test_names_in_paths_are_documented_with_the_models_rule(client: httpx.AsyncClient) -> None:
    from haplane.api.schemas import NAME_PATTERN
    from haplane.model import values

    assert values._NAME.pattern == NAME_PATTERN
    doc = (await client.get("/openapi.json")).json()
    params = [p for ops in doc["paths"].values() for op in ops.values() for p in op.get("parameters", ())
              if p["in"] == "path"]
    assert params and all(p["schema"]["pattern"] == f"^{NAME_PATTERN}$" for p in params)
