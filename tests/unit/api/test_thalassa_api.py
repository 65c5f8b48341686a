"""Thalassa's frontends and backends: shapes, 200/404, natives (admin, checked by real haproxy -c),
version switches, members, and deterministic rendering."""

from __future__ import annotations

import httpx
from tests.unit.api.conftest import ADMIN, READ, WRITE, auth

W, R, A = auth(WRITE), auth(READ), auth(ADMIN)


async def setup_blue_green(client: httpx.AsyncClient) -> None:
    await client.put("/services/myapp", json={"port": 8080}, headers=W)
    for iid, addr, version in (("a", "127.0.0.2", "1.0.0"), ("b", "127.0.0.3", "1.0.0"),
                               ("c", "127.0.0.4", "1.1.0")):
        await client.put(f"/services/myapp/instances/{iid}", json={"address": addr, "version": version}, headers=W)
    r = await client.put("/backends/live", json={"type": "dynamic", "name": "myapp", "version": "1.0.0"}, headers=W)
    assert r.status_code == 200, r.text
    r = await client.put("/backends/staged", json={"type": "dynamic", "name": "myapp", "version": "1.1.0",
                                                   "health": {"uri": "/health"}}, headers=W)
    assert r.status_code == 200, r.text


async def test_frontends_and_backends_follow_thalassa(client: httpx.AsyncClient) -> None:
    assert (await client.get("/frontends/myapp", headers=R)).status_code == 404
    assert (await client.get("/backends/live", headers=R)).status_code == 404
    assert (await client.delete("/frontends/myapp", headers=W)).status_code == 404
    await setup_blue_green(client)
    r = await client.put("/frontends/myapp", headers=W, json={
        "bind": "127.0.0.1:8081,127.0.0.1:8082", "backend": "live", "mode": "http", "keepalive": "default",
        "rules": [{"type": "header", "header": "host", "operation": "hdr_dom", "value": "staged.myapp.com",
                   "backend": "staged"}], "natives": []})
    assert r.status_code == 200, r.text
    fe = (await client.get("/frontends/myapp", headers=R)).json()
    assert fe["id"] == "frontend/myapp" and fe["_type"] == "frontend"
    assert fe["bind"] == "127.0.0.1:8081,127.0.0.1:8082" and fe["rules"][0]["backend"] == "staged"
    assert [f["name"] for f in (await client.get("/frontends", headers=R)).json()] == ["myapp"]

    live = (await client.get("/backends/live", headers=R)).json()
    assert live["key"] == "live" and live["type"] == "dynamic" and live["version"] == "1.0.0"
    assert sorted(m["host"] for m in live["members"]) == ["127.0.0.2", "127.0.0.3"]
    assert live["members"][0]["id"].startswith("/myapp/1.0.0/")
    members = (await client.get("/backends/staged/members", headers=R)).json()
    assert [m["host"] for m in members] == ["127.0.0.4"]

    # blue/green in one call
    r = await client.post("/backends/live", json={"version": "1.1.0"}, headers=W)
    assert r.status_code == 200 and r.json()["version"] == "1.1.0"
    assert [m["host"] for m in (await client.get("/backends/live/members", headers=R)).json()] == ["127.0.0.4"]

    cfg = (await client.get("/haproxy/config", headers=R)).text
    assert "frontend myapp" in cfg and "backend live" in cfg and "backend staged" in cfg
    assert "127.0.0.4:8080" in cfg

    # a backend still used by a frontend cannot go
    r = await client.delete("/backends/staged", headers=W)
    assert r.status_code == 422 and "myapp" in r.json()["detail"]
    assert (await client.delete("/frontends/myapp", headers=W)).status_code == 200
    assert (await client.delete("/backends/staged", headers=W)).status_code == 200
    assert (await client.get("/backends/staged", headers=R)).status_code == 404


async def test_a_frontend_naming_an_undefined_backend_is_stored_with_a_warning(client: httpx.AsyncClient) -> None:
    """As Thalassa did (its clients put frontends before backends); the route waits for the backend."""
    r = await client.put("/frontends/f", json={"bind": "127.0.0.1:8081", "backend": "ghost"}, headers=W)
    assert r.status_code == 200 and r.json()["warnings"][0].startswith("backend: backend 'ghost' is not defined")
    assert "default_backend ghost" not in (await client.get("/haproxy/config", headers=W)).text
    await client.put("/backends/b", json={"members": [{"host": "127.0.0.2", "port": 80}]}, headers=W)
    r = await client.put("/frontends/f", headers=W, json={"bind": "127.0.0.1:8081", "backend": "b", "rules": [
        {"type": "path", "operation": "path_beg", "value": "/x", "backend": "ghost"}]})
    assert r.status_code == 200 and r.json()["warnings"][0].startswith("rules[0].backend: backend 'ghost'")
    await client.put("/backends/ghost", json={"members": [{"host": "127.0.0.3", "port": 80}]}, headers=W)
    assert "use_backend ghost" in (await client.get("/haproxy/config", headers=W)).text


async def test_health_check_defaults_and_http11_needs_a_host(client: httpx.AsyncClient) -> None:
    r = await client.put("/backends/b", json={"health": {}}, headers=W)
    assert r.status_code == 200
    health = r.json()["health"]
    assert (health["method"], health["uri"], health["httpVersion"], health["interval"]) == ("GET", "/", "HTTP/1.0",
                                                                                           2000)
    r = await client.put("/backends/b", json={"health": {"httpVersion": "HTTP/1.1"}}, headers=W)
    assert r.status_code == 400 and r.json()["field"] == "health.host"
    r = await client.put("/backends/b", json={"health": {"httpVersion": "HTTP/1.1", "host": "a.example.com"}},
                         headers=W)
    assert r.status_code == 200


async def test_natives_need_admin_pass_haproxy_check_and_render_verbatim(client: httpx.AsyncClient) -> None:
    native = 'http-response set-header X-Note "a \\"quoted\\" <b>&amp;</b>"'
    r = await client.put("/backends/b", json={"natives": [native]}, headers=W)
    assert r.status_code == 403 and "admin" in r.json()["detail"]

    before = await client.deps.registry.store.revision()  # type: ignore[attr-defined]
    r = await client.put("/backends/b", json={"natives": ["timeout server not-a-time"]}, headers=A)
    assert r.status_code == 422 and r.json()["error"] == "ConfigCheckFailed"
    assert "timeout server" in r.json()["detail"]
    r = await client.put("/backends/b", json={"natives": ["no-such-directive 1"]}, headers=A)  # not allowed
    assert r.status_code == 422 and r.json()["field"] == "natives[0]"
    r = await client.put("/backends/b", json={"natives": ["timeout server 5s\n  stats enable"]}, headers=A)
    assert r.status_code == 422 and r.json()["field"] == "natives[0]"
    assert await client.deps.registry.store.revision() == before  # type: ignore[attr-defined]

    r = await client.put("/backends/b", json={"natives": [native]}, headers=A)
    assert r.status_code == 200, r.text
    cfg = (await client.get("/haproxy/config", headers=R)).text
    assert native in cfg.splitlines()[next(i for i, line in enumerate(cfg.splitlines()) if native in line)]
    assert "&quot;" not in cfg and "&lt;b&gt;" not in cfg


async def test_same_data_renders_the_same_bytes(client: httpx.AsyncClient) -> None:
    await setup_blue_green(client)
    fe = {"bind": "127.0.0.1:8081", "backend": "live", "rules": [
        {"type": "path", "operation": "path_beg", "value": "/beta", "backend": "staged"},
        {"type": "header", "header": "host", "operation": "hdr_dom", "value": "staged.myapp.com",
         "backend": "staged"}]}
    await client.put("/frontends/myapp", json=fe, headers=W)
    first = (await client.get("/haproxy/config", headers=R)).text
    await client.put("/frontends/myapp", json=fe, headers=W)
    await client.put("/backends/live", json={"type": "dynamic", "name": "myapp", "version": "1.0.0"}, headers=W)
    assert (await client.get("/haproxy/config", headers=R)).text == first
    acls = [line.split()[1] for line in first.splitlines() if line.strip().startswith("acl ")]
    assert acls and len(acls) == len(set(acls))


async def test_version_switch_validates(client: httpx.AsyncClient) -> None:
    await client.put("/backends/s", json={"members": [{"host": "127.0.0.2", "port": 80}]}, headers=W)
    r = await client.post("/backends/s", json={"version": "2.0"}, headers=W)
    assert r.status_code == 422 and r.json()["field"] == "type"
    assert (await client.post("/backends/ghost", json={"version": "2.0"}, headers=W)).status_code == 404
    await setup_blue_green(client)
    r = await client.post("/backends/live", json={"version": "2.0 ; x"}, headers=W)
    assert r.status_code == 422 and r.json()["field"] == "version"
    r = await client.post("/backends/live", json={"version": "2.0", "extra": 1}, headers=W)
    assert r.status_code == 422 and r.json()["field"] == "extra"


async def test_a_frontend_binds_with_tls_only_when_tls_is_a_boolean(client: httpx.AsyncClient) -> None:
    await client.put("/services/myapp", json={"port": 8080}, headers=W)
    r = await client.put("/frontends/secure", json={"bind": "127.0.0.1:9443", "backend": "myapp", "tls": "yes"},
                         headers=W)
    assert r.status_code == 422 and r.json()["field"] == "tls", r.text
    assert (await client.get("/frontends/secure", headers=R)).status_code == 404  # nothing written
    r = await client.put("/frontends/secure", json={"bind": "127.0.0.1:9443", "backend": "myapp", "tls": True},
                         headers=W)
    assert r.status_code == 200 and r.json()["tls"] is True, r.text
    assert (await client.get("/frontends/secure", headers=R)).json()["tls"] is True
    r = await client.put("/frontends/secure", json={"bind": "127.0.0.1:9443", "backend": "myapp"}, headers=W)
    assert r.status_code == 200 and "tls" not in r.json()  # off: Thalassa's shape exactly
