"""GET /export and POST /import (admin): Thalassa's persistence file as it is, a dry run that writes nothing, a
partly invalid document refused whole with every bad row named, and an export that imports into an empty store
as the same config."""

from __future__ import annotations

import copy
from typing import Any

from tests.support.fixtures import load_json
from tests.unit.api.conftest import ADMIN, WRITE, MakeClient, auth

H = auth(ADMIN)
THALASSA: dict[str, Any] = load_json("thalassa", "persistence.json")


async def test_thalassas_persistence_file_dry_run_then_import(make_client: MakeClient) -> None:
    c = await make_client()
    r = await c.post("/import", params={"dry_run": "1"}, json=THALASSA, headers=H)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["origin"] == "thalassa" and body["dry_run"] and not body["applied"]
    assert body["changes"] == ["+ backends assets", "+ backends live", "+ backends staged", "+ frontends myapp"]
    assert "not kept" in body["notes"][0]
    assert (await c.get("/frontends", headers=H)).json() == [], "a dry run writes nothing"
    r = await c.post("/import", json=THALASSA, headers=H)
    assert r.status_code == 200 and r.json()["applied"], r.text
    fe = (await c.get("/frontends/myapp", headers=H)).json()
    assert (fe["key"], fe["bind"], fe["backend"]) == ("myapp", "*:8080,*:80", "live")
    live = (await c.get("/backends/live", headers=H)).json()
    assert (live["type"], live["name"], live["version"], live["members"]) == ("dynamic", "myapp", "1.0.0", [])
    assert (await c.get("/backends/assets/members", headers=H)).json() == [
        {"host": "10.10.240.174", "port": "8080"}, {"host": "10.10.240.206", "port": "8080"}]
    again = await c.post("/import", json=THALASSA, headers=H)
    assert again.json()["changes"] == [] and not again.json()["applied"]


async def test_a_partly_invalid_document_changes_nothing_and_names_every_bad_row(make_client: MakeClient) -> None:
    c = await make_client()
    data = copy.deepcopy(THALASSA)
    data["frontends"].append(copy.deepcopy(data["frontends"][0]) | {"key": "b", "id": "frontend/b"})
    data["frontends"][1]["rules"][0]["operation"] = "hdr_sub"
    data["backends"][1]["mode"] = "udp"
    r = await c.post("/import", json=data, headers=H)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "DocumentInvalid" and body["field"] == "frontends[1].rules[0].operation"
    assert [p["path"] for p in body["problems"]] == ["frontends[1].rules[0].operation", "backends[1].mode"]
    assert (await c.get("/frontends", headers=H)).json() == [] and (await c.get("/backends", headers=H)).json() == []


async def test_a_document_haproxy_refuses_changes_nothing(make_client: MakeClient) -> None:
    c = await make_client()
    data = copy.deepcopy(THALASSA)
    data["backends"][2]["natives"] = ["option httpchk GET /a HTTP/1.0", "timeout server not-a-time"]
    r = await c.post("/import", json=data, headers=H)
    assert r.status_code == 422 and r.json()["error"] == "ConfigCheckFailed", r.text
    assert (await c.get("/backends", headers=H)).json() == []


async def test_export_and_import_need_the_admin_role(make_client: MakeClient) -> None:
    c = await make_client()
    assert (await c.get("/export", headers=auth(WRITE))).status_code == 403
    assert (await c.post("/import", json=THALASSA, headers=auth(WRITE))).status_code == 403


async def test_an_export_imported_into_an_empty_store_renders_the_same_config(make_client: MakeClient) -> None:
    a = await make_client()
    await a.post("/import", json=THALASSA, headers=H)
    await a.put("/services/web", json={"mode": "host", "predicate": "web.example.com", "port": 8080,
                                        "cookie": "SRV"}, headers=H)
    for n in (1, 2, 3):
        await a.put(f"/services/web/instances/i{n}", json={"address": f"127.0.0.{n + 1}"}, headers=H)
    await a.delete("/services/web/instances/i1", headers=H)  # slot 1 rests, i2 and i3 keep 2 and 3
    await a.post("/generate", json=load_json("lambda-registry", "data.json"), headers=H)
    exported = (await a.get("/export", headers=H)).json()
    assert exported["haplane"] == 1 and [i["slot"] for i in exported["instances"]] == [2, 3]
    assert list(exported["tables"]) == ["astro"]
    b = await make_client()
    r = await b.post("/import", json=exported, headers=H)
    assert r.status_code == 200 and r.json()["applied"], r.text
    assert (await b.get("/haproxy/config", headers=H)).text == (await a.get("/haproxy/config", headers=H)).text
    again = (await b.get("/export", headers=H)).json()
    assert {k: v for k, v in again.items() if k != "revision"} == {
        k: v for k, v in exported.items() if k != "revision"}
    # the Lambda-Registry table came along: a running-only payload keeps its services
    payload = {"table": "astro", "running": [{"serviceName": "app1", "id": "jk3243j54jl", "ip": "192.168.1.8"}]}
    r = await b.post("/generate", json=payload, headers=H)
    assert "backend app1" in r.text
