"""Who may do what: the role matrix, session cookies and CSRF, and the open mode."""

from __future__ import annotations

import time

import httpx
import pytest
from tests.unit.api.conftest import ADMIN, READ, TOKENS, WRITE, MakeClient, auth

from haplane.api.auth import COOKIE, create_session, read_session
from haplane.commands.serve import check_exposure
from haplane.errors import ConfigurationError, Unauthorized
from haplane.settings import Settings


@pytest.mark.parametrize(("headers", "get", "put"), [
    ({}, 401, 401),
    ({"Authorization": "Bearer nope-nope-nope"}, 401, 401),
    ({"Authorization": f"Basic {READ}"}, 401, 401),
    (auth(READ), 200, 403),
    (auth(WRITE), 200, 201),
    (auth(ADMIN), 200, 201),
])
async def test_role_matrix(client: httpx.AsyncClient, headers: dict[str, str], get: int, put: int) -> None:
    r = await client.get("/services", headers=headers)
    assert r.status_code == get
    r = await client.put("/services/web", json={}, headers=headers)
    assert r.status_code == put
    if put == 401:
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] == "Unauthorized"
    if put == 403:
        assert r.json()["error"] == "Forbidden" and "write" in r.json()["detail"]


async def test_health_and_openapi_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200


async def test_session_cookie_reads_and_needs_csrf_to_write(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/login", json={"token": "wrong-token-1234"})
    assert r.status_code == 401
    r = await client.post("/auth/login", json={"token": WRITE})
    assert r.status_code == 200
    csrf = r.json()["csrf"]
    assert r.json()["role"] == "write"
    cookie_header = r.headers["set-cookie"].lower()
    assert "httponly" in cookie_header and "samesite=strict" in cookie_header and "path=/" in cookie_header
    assert client.cookies.get(COOKIE)

    assert (await client.get("/services")).status_code == 200
    r = await client.put("/services/web", json={})
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    assert (await client.put("/services/web", json={}, headers={"X-CSRF-Token": "guess"})).status_code == 403
    assert (await client.put("/services/web", json={}, headers={"X-CSRF-Token": csrf})).status_code == 201
    who = (await client.get("/auth/whoami")).json()
    assert who == {"role": "write", "via": "session", "csrf": csrf}

    await client.post("/auth/logout")
    client.cookies.clear()
    assert (await client.get("/services")).status_code == 401


async def test_forged_or_tampered_cookies_are_refused(client: httpx.AsyncClient) -> None:
    settings = client.deps.settings  # type: ignore[attr-defined]
    cookie, _sess = create_session(settings, READ)
    payload, _, sig = cookie.rpartition(".")
    # a read session rewritten to admin keeps the old signature: refused
    import base64
    import json
    d = json.loads(base64.urlsafe_b64decode(payload))
    d["r"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(d).encode()).decode() + "." + sig
    assert read_session(settings, forged) is None
    client.cookies.set(COOKIE, forged)
    assert (await client.get("/services")).status_code == 401
    # another deployment's secret does not verify it either
    other = Settings(tokens={"another-token-99": "admin"})
    assert read_session(other, cookie) is None
    # expired
    old, _ = create_session(settings, READ, now=time.time() - settings.session_ttl - 5)
    assert read_session(settings, old) is None
    assert read_session(settings, cookie) is not None


def test_sessions_end_when_their_token_is_removed() -> None:
    s = Settings(tokens=dict(TOKENS), session_secret="shared-secret")
    cookie, _ = create_session(s, WRITE)
    assert read_session(s, cookie) is not None
    # another serve process with the same secret accepts it...
    assert read_session(Settings(tokens=dict(TOKENS), session_secret="shared-secret"), cookie) is not None
    # ...until the token is gone from its settings
    fewer = {t: r for t, r in TOKENS.items() if t != WRITE}
    assert read_session(Settings(tokens=fewer, session_secret="shared-secret"), cookie) is None
    with pytest.raises(Unauthorized):
        create_session(s, "unknown-token-1")


async def test_without_tokens_everything_is_open(make_client: MakeClient) -> None:
    client = await make_client(tokens={})
    assert (await client.put("/services/web", json={})).status_code == 201
    assert (await client.put("/backends/b", json={"natives": ["timeout server 5s"]})).status_code == 200


def test_serve_refuses_an_open_api_on_a_non_loopback_address() -> None:
    with pytest.raises(ConfigurationError, match="without tokens"):
        check_exposure(Settings(), "0.0.0.0")
    with pytest.raises(ConfigurationError, match="without tokens"):
        check_exposure(Settings(), "10.1.2.3")
    check_exposure(Settings(), "127.0.0.1")
    check_exposure(Settings(), "::1")
    check_exposure(Settings(token="a-long-admin-token"), "0.0.0.0")


def test_settings_refuse_unknown_roles_and_short_tokens() -> None:
    from haplane.settings import load

    with pytest.raises(ConfigurationError, match="role 'root'"):
        load(env={"HAPLANE_TOKENS": "abcdefghijk:root"})
    with pytest.raises(ConfigurationError, match="at least 8"):
        load(env={"HAPLANE_TOKEN": "short"})
    assert load(env={"HAPLANE_TOKENS": "abcdefghijk:read"}).all_tokens() == {"abcdefghijk": "read"}
