"""The web UI's routes over a real store, without an agent in the process (``haplane serve``): sign-in, pages,
the JSON the pages read, actions through the registry, and what a cross-site request cannot do."""

from __future__ import annotations

import httpx

from conftest import READ, WRITE, MakeClient, auth
from haplane.model.records import Instance, Service


async def login(client: httpx.AsyncClient, token: str) -> str:
    r = await client.post("/ui/login", content=f"token={token}",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    return str((await client.get("/auth/whoami")).json()["csrf"])


async def test_pages_ask_for_a_token_once(make_client: MakeClient) -> None:
    client = await make_client()
    r = await client.get("/ui/")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    r = await client.get("/ui/login")
    assert r.status_code == 200 and 'method="post"' in r.text and "script-src 'self'" in r.headers[
        "content-security-policy"]
    bad = await client.post("/ui/login", content="token=nope-nope-nope",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status_code == 401 and "not known" in bad.text and "set-cookie" not in bad.headers
    await login(client, READ)
    for path in ("/ui/", "/ui/activity", "/ui/stats", "/ui/certificates"):
        r = await client.get(path)
        assert r.status_code == 200 and "/ui/static/app.js" in r.text, path
        assert r.headers["cache-control"] == "no-store"
    assert (await client.get("/ui/static/app.js")).headers["content-type"].startswith("text/javascript")
    assert (await client.get("/ui/static/certificates.js")).status_code == 200
    # the Certificates page reads the API with the session cookie: the list, no key
    assert (await client.get("/certificates")).json() == [] and (await client.get("/acme/orders")).json() == []
    assert (await client.get("/ui/static/..%2Fui.py")).status_code == 404
    assert (await client.get("/ui/static/nope.js")).status_code == 404


async def test_login_link_posts_the_token_and_escapes_it(make_client: MakeClient) -> None:
    client = await make_client()
    r = await client.get("/ui/login", params={"token": '"><script>alert(1)</script>'})
    assert r.status_code == 200
    assert "<script>alert(1)" not in r.text and "&quot;&gt;&lt;script&gt;" in r.text
    assert 'data-autosubmit="1"' in r.text and r.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in r.headers  # nothing happens on a GET: the page posts the token


async def test_a_form_from_another_site_cannot_sign_in(make_client: MakeClient) -> None:
    client = await make_client()
    r = await client.post("/ui/login", content=f"token={WRITE}", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers


async def test_overview_without_agent_is_the_desired_state(make_client: MakeClient) -> None:
    client = await make_client()
    reg = client.deps.registry  # type: ignore[attr-defined]
    await reg.put_service(Service("web", "host", "web.test"))
    await reg.put_instance(Instance("i1", "web", "127.0.0.2", 8080, weight=4, version="2.0", zone="a"))
    r = await client.get("/ui/api/overview", headers=auth(READ))
    assert r.status_code == 200
    doc = r.json()
    assert doc["live"] is False and doc["agent"] is None
    (be,) = [b for b in doc["backends"] if b["name"] == "web"]
    (srv,) = be["servers"]
    assert srv == {**srv, "instance": "i1", "service": "web", "address": "127.0.0.2:8080", "state": "up",
                   "target": 4, "version": "2.0", "zone": "a", "weight": None}
    (fe,) = doc["frontends"]
    assert {"match": "host", "value": "web.test", "backend": "web"} in fe["rules"]
    assert (await client.get("/ui/api/activity", headers=auth(READ))).json() == {"records": [], "agent": False}
    assert (await client.get("/ui/api/stats", headers=auth(READ))).json()["live"] is False
    assert (await client.get("/ui/api/plan", headers=auth(READ))).status_code == 422
    assert (await client.get("/ui/api/overview")).status_code == 401


async def test_actions_change_the_registry_with_write_role_and_csrf(make_client: MakeClient) -> None:
    client = await make_client()
    reg = client.deps.registry  # type: ignore[attr-defined]
    await reg.put_service(Service("web", "host", "web.test"))
    await reg.put_instance(Instance("i1", "web", "127.0.0.2", 8080, source="docker-h1", ttl=None))
    path = "/ui/api/instances/web/i1"
    # a read token may look, not act
    r = await client.post(path + "/state", json={"state": "drain"}, headers=auth(READ))
    assert r.status_code == 403
    csrf = await login(client, WRITE)
    # a cookie alone (what a cross-site request would carry) is not enough
    r = await client.post(path + "/state", json={"state": "drain"})
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    r = await client.post(path + "/state", json={"state": "drain"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["state"] == "drain"
    r = await client.post(path + "/weight", json={"weight": 3}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    inst, _ = await reg.get_instance("web", "i1")
    assert (inst.state, inst.weight, inst.source, inst.slot) == ("drain", 3, "docker-h1", 1)  # nothing else lost
    r = await client.post(path + "/state", json={"state": "gone"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and r.json()["field"] == "state"
    r = await client.post(path + "/weight", json={"weight": 999}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and r.json()["field"] == "weight"
    r = await client.post("/ui/api/instances/web/nope/state", json={"state": "drain"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404
    assert (await reg.get_instance("web", "i1"))[0].weight == 3  # the refused changes changed nothing


async def test_open_api_needs_no_login(make_client: MakeClient) -> None:
    client = await make_client(tokens={})
    r = await client.get("/ui/login")
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    assert (await client.get("/ui/")).status_code == 200
