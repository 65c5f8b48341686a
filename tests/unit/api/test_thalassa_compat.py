"""Thalassa's own API tests, ported: the bodies and the assertions of thalassa-aqueduct's ``test/test.Api.js``
(the API thalassa-consul kept) and the cases of ``test/test.Data.js``, sent to haplane's API as a Thalassa client
sends them. Every config a write leads to passes the real ``haproxy -c`` (the API checks it before storing).

Where haplane answers differently, the test says so (and docs/migrating.md lists it):
- a write answers a JSON body (the record as stored) where Thalassa answered a bare 200;
- a frontend naming a backend not defined yet is stored as Thalassa stored it, with a ``warnings`` list in the
  answer (Thalassa said nothing; its HAProxy reload then failed).
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
from tests.support.fixtures import load_json
from tests.unit.api.conftest import ADMIN, MakeClient, auth

BODIES: dict[str, Any] = load_json("thalassa", "api_bodies.json")
H = auth(ADMIN)


def body(name: str) -> Any:
    return copy.deepcopy(BODIES[name])


async def put(c: httpx.AsyncClient, uri: str, obj: Any) -> httpx.Response:
    return await c.put(uri, json=obj, headers=H)


# --- test.Api.js ------------------------------------------------------------------------------------------------

async def test_should_put_and_get_and_delete_frontend(make_client: MakeClient) -> None:
    c = await make_client()
    fe = body("put_get_delete_frontend")
    r = await put(c, "/frontends/" + fe["key"], fe)
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == ["backend: backend 'foob' is not defined yet; its requests get 503 until it is"]
    r = await c.get("/frontends/" + fe["key"], headers=H)
    assert r.status_code == 200
    got = r.json()
    assert (got["key"], got["bind"], got["backend"]) == (fe["key"], fe["bind"], fe["backend"])
    assert (await c.delete("/frontends/" + fe["key"], headers=H)).status_code == 200
    assert (await c.get("/frontends/" + fe["key"], headers=H)).status_code == 404


async def test_should_put_and_get_and_delete_backend(make_client: MakeClient) -> None:
    c = await make_client()
    be = body("put_get_delete_backend")
    r = await put(c, "/backends/" + be["key"], be)
    assert r.status_code == 200, r.text
    r = await c.get("/backends/" + be["key"], headers=H)
    assert r.status_code == 200
    got = r.json()
    assert (got["key"], got["name"], got["version"], got["type"]) == (be["key"], be["name"], be["version"],
                                                                      be["type"])
    assert (await c.delete("/backends/" + be["key"], headers=H)).status_code == 200
    assert (await c.get("/backends/" + be["key"], headers=H)).status_code == 404


async def test_should_require_host_with_health_http_version_1_1(make_client: MakeClient) -> None:
    c = await make_client()
    be = body("health_http11")
    r = await put(c, "/backends/" + be["key"], be)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "health.host"
    be["host"] = "foo.com"  # Thalassa's fix: the backend-level host
    r = await put(c, "/backends/" + be["key"], be)
    assert r.status_code == 200, r.text
    text = (await c.get("/haproxy/config", headers=H)).text
    assert "foo.com" in text.split("backend healthy", 1)[1], "the HTTP/1.1 check carries the backend's host"


async def test_should_get_all_frontends_and_backends(make_client: MakeClient) -> None:
    c = await make_client()
    all_ = body("all")
    for uri, obj in (("/frontends/fe1", all_["fe1"]), ("/frontends/fe2", all_["fe2"]),
                     ("/backends/be1", all_["be1"]), ("/backends/be2", all_["be2"])):
        r = await put(c, uri, obj)
        assert r.status_code == 200, (uri, r.text)
    r = await c.get("/frontends", headers=H)
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert len([fe for fe in r.json() if fe["backend"] == "be1"]) == 2
    r = await c.get("/backends", headers=H)
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert len([be for be in r.json() if be["key"] in ("be1", "be2")]) == 2
    r = await c.get("/backends/be1/members", headers=H)
    assert r.status_code == 200
    assert r.json() == all_["be1"]["members"], "members come back as sent, ports as strings included"
    r = await c.get("/backends/doesnotexist/members", headers=H)
    assert r.status_code == 404
    # and the config the frontends now have: fe1 and fe2 route to be1 (defined after them, as Thalassa allowed)
    text = (await c.get("/haproxy/config", headers=H)).text
    assert text.count("default_backend be1") == 2


async def test_should_get_latest_haproxy_config(make_client: MakeClient) -> None:
    c = await make_client()
    r = await c.get("/haproxy/config", headers=H)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert "\nglobal\n" in "\n" + r.text


# --- the README's bodies -----------------------------------------------------------------------------------------

async def test_readme_bodies_are_accepted_as_they_are(make_client: MakeClient) -> None:
    c = await make_client()
    be = body("readme_backend")
    for name in ("foo", "bar", "baz"):
        r = await put(c, f"/backends/{name}", be)
        assert r.status_code == 200, r.text
    got = (await c.get("/backends/foo", headers=H)).json()
    assert got["health"]["uri"] == "/checkity-check" and got["health"]["httpVersion"] == "HTTP/1.1"
    assert got["health"]["interval"] == 5000 and got["host"] == "myapp.com"
    fe = body("readme_frontend")
    fe["rules"] = body("readme_rules")
    fe["mode"] = "http"  # rules are HTTP rules
    fe["bind"] = "127.0.0.1:8080,*:8081"
    r = await put(c, "/frontends/myapp", {**fe, "key": "myapp"})
    assert r.status_code == 200, r.text
    assert "warnings" not in r.json()
    r = await c.post("/backends/foo", json=body("readme_subscription"), headers=H)
    assert r.status_code == 200, r.text
    got = (await c.get("/backends/foo", headers=H)).json()
    assert (got["name"], got["version"]) == ("myapp", "1.1.0")


async def test_a_frontend_key_that_differs_from_the_url_is_refused(make_client: MakeClient) -> None:
    c = await make_client()
    r = await put(c, "/frontends/a", {"key": "b", "bind": "*:80"})
    assert r.status_code == 422 and r.json()["field"] == "key"


async def test_the_ui_answers_where_thalassas_did(make_client: MakeClient) -> None:
    c = await make_client()
    r = await c.get("/")
    assert r.status_code in (302, 303, 307) and r.headers["location"] == "/ui/"


# --- test.Data.js ------------------------------------------------------------------------------------------------

async def test_data_create_get_arrays_and_delete(make_client: MakeClient) -> None:
    c = await make_client()
    assert (await c.get("/frontends", headers=H)).json() == []
    assert (await c.get("/backends", headers=H)).json() == []
    for key, t in (("foo", "dynamic"), ("bar", "static"), ("baz", "dynamic")):
        assert (await put(c, f"/backends/{key}", {"key": key, "type": t, "name": key, "version": "1"})
                ).status_code == 200
    for key in ("foo", "bar", "baz"):
        r = await put(c, f"/frontends/{key}", {"key": key, "bind": "*:80", "backend": key})
        assert r.status_code == 200, r.text
        assert r.json()["id"] == f"frontend/{key}"
    assert len((await c.get("/frontends", headers=H)).json()) == 3
    assert len((await c.get("/backends", headers=H)).json()) == 3
    assert (await c.delete("/frontends/foo", headers=H)).status_code == 200
    assert len((await c.get("/frontends", headers=H)).json()) == 2


async def test_data_set_backend_members(make_client: MakeClient) -> None:
    c = await make_client()
    # Thalassa's case uses foo.com and bar.com; addresses here, so that `haproxy -c` resolves no name
    members1 = [{"host": "10.0.0.1", "port": 80}]
    members2 = [{"host": "10.0.0.1", "port": 80}, {"host": "10.0.0.2", "port": 80}]
    assert (await put(c, "/backends/test", {"key": "test", "type": "static", "members": members1})
            ).status_code == 200
    assert (await put(c, "/backends/test", {"key": "test", "type": "static", "members": members2})
            ).status_code == 200
    assert (await c.get("/backends/test/members", headers=H)).json() == members2


async def test_members_carry_thalassas_registration_shape(make_client: MakeClient) -> None:
    """README: members {name, version, host, port, lastKnown, meta: {hostname, pid, registered}, id}."""
    import time

    c = await make_client()
    assert (await put(c, "/backends/live", {"key": "live", "type": "dynamic", "name": "myapp",
                                            "version": "1.0.0"})).status_code == 200
    before = int(time.time() * 1000)
    # the registrations arrive as a source's set (as `haplane watch consul` pushes them)
    r = await c.put("/sources/registrations/instances", headers=H, json={"instances": [
        {"service": "myapp", "id": "i1", "address": "10.10.240.121", "port": 8080, "version": "1.0.0",
         "meta": {"hostname": "dev-use1b-pr-01-myapp-01x00x00-01", "pid": 17941}},
        {"service": "myapp", "id": "i2", "address": "10.10.240.80", "port": 8080, "version": "1.0.0"}]})
    assert r.status_code == 200, r.text
    assert r.json()["waiting"] == [], "a dynamic backend follows them: nothing waits"
    members = (await c.get("/backends/live/members", headers=H)).json()
    first, second = members
    assert set(first) >= {"name", "version", "host", "port", "lastKnown", "meta", "id"}
    assert (first["name"], first["version"], first["host"], first["port"], first["id"]) == (
        "myapp", "1.0.0", "10.10.240.121", 8080, "/myapp/1.0.0/10.10.240.121/8080")
    assert first["meta"]["hostname"] == "dev-use1b-pr-01-myapp-01x00x00-01" and first["meta"]["pid"] == 17941
    assert first["meta"]["registered"] >= before and first["lastKnown"] >= first["meta"]["registered"]
    assert second["meta"]["hostname"] == "10.10.240.80", "no hostname given: the address, as Thalassa did"
    await c.put("/services/web", headers=H, json={"mode": "host", "predicate": "web.test", "port": 80})
    r = await c.put("/services/web/instances/i3", headers=H, json={"address": "10.0.0.1", "registered": 1})
    assert r.status_code == 422 and r.json()["field"] == "registered", "the registry stamps it"
