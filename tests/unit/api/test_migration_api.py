"""What a user of the older systems asks the API, answered so their tools keep working:
- ``GET /haproxy/config`` from a bare ``haplane serve`` (no agent) is a config HAProxy accepts as it is saved;
  with ``?map_dir=DIR`` it names its host map there, served at ``GET /haproxy/maps/{name}``;
- Lambda-Registry's ``/generate`` answers a JSON string literal for ``Accept: application/json`` (API Gateway);
- Lambda-Registry's own test.js cases and sample-data, through ``/generate`` and the real ``haproxy -c``;
- a candidate's new port applies to the containers already stored, on later running-only calls too."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import httpx
from tests.support.fixtures import load_json
from tests.unit.api.conftest import ADMIN, MakeClient, auth

from haplane.haproxy.check import check_config

H = auth(ADMIN)


async def _service_with_instance(c: httpx.AsyncClient) -> None:
    r = await c.put("/services/web", json={"mode": "host", "predicate": "web.example.com", "port": 8080}, headers=H)
    assert r.status_code in (200, 201), r.text
    r = await c.put("/services/web/instances/i1", json={"address": "127.0.0.2"}, headers=H)
    assert r.status_code in (200, 201), r.text


async def test_the_config_of_a_bare_serve_passes_haproxy_c_as_it_is(make_client: MakeClient, tmp_path: Path
                                                                   ) -> None:
    c = await make_client()
    await _service_with_instance(c)
    r = await c.get("/haproxy/config", headers=H)
    assert r.status_code == 200 and r.headers["x-haplane-maps"] == "inline"
    saved = tmp_path / "haproxy.cfg"
    saved.write_text(r.text)
    result = await check_config(saved)
    assert result.ok, result.messages
    assert "web.example.com" in r.text, "the host route is inlined"


async def test_the_config_names_its_map_under_map_dir_and_the_map_is_served(make_client: MakeClient,
                                                                           tmp_path: Path) -> None:
    c = await make_client()
    await _service_with_instance(c)
    maps = tmp_path / "maps"
    maps.mkdir()
    r = await c.get("/haproxy/config", params={"map_dir": str(maps)}, headers=H)
    assert r.status_code == 200 and r.headers["x-haplane-maps"] == f"{maps}/hosts.map,{maps}/paths.map"
    saved = tmp_path / "haproxy.cfg"
    saved.write_text(r.text)
    assert not (await check_config(saved)).ok, "the maps are needed beside the config"
    m = await c.get("/haproxy/maps/hosts.map", headers=H)
    assert m.status_code == 200 and m.text == "web.example.com web\n"
    (maps / "hosts.map").write_text(m.text)
    p = await c.get("/haproxy/maps/paths.map", headers=H)
    assert p.status_code == 200 and p.text == "", "no path route: an empty map"
    (maps / "paths.map").write_text(p.text)
    result = await check_config(saved)
    assert result.ok, result.messages
    assert (await c.get("/haproxy/maps/other.map", headers=H)).status_code == 404
    r = await c.get("/haproxy/config", params={"map_dir": "relative/dir"}, headers=H)
    assert r.status_code == 422 and r.json()["field"] == "map_dir"


# --- Lambda-Registry ----------------------------------------------------------------------------------------------

CASES: dict[str, Any] = load_json("lambda-registry", "test_cases.json")


def _servers(config: str, backend: str) -> list[str]:
    """'address:port' of each server line of a backend section."""
    section = config.split(f"\nbackend {backend}\n", 1)
    if len(section) < 2:
        return []
    body = section[1].split("\nbackend ", 1)[0].split("\nfrontend ", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\s+server \S+ (\S+)", body, re.M)]


async def generate(c: httpx.AsyncClient, payload: Any, **headers: str) -> httpx.Response:
    r = await c.post("/generate", json=payload, headers={**H, **headers})
    assert r.status_code == 200, r.text
    return r


def _stored_as_payload(table: str, stored: list[dict[str, Any]]) -> dict[str, Any]:
    """Lambda-Registry's stored services, put into a table the way its first /generate would have."""
    running = [{"serviceName": s["serviceName"], **c} for s in stored for c in s["containers"]]
    return {"table": table, "running": running, "candidates": copy.deepcopy(stored)}


async def test_sample_data_json_gives_a_config_haproxy_accepts(make_client: MakeClient) -> None:
    c = await make_client()
    r = await generate(c, load_json("lambda-registry", "data.json"))
    result = await check_config(r.text)
    assert result.ok, result.messages
    assert _servers(r.text, "app1") == ["192.168.1.8:80", "192.168.1.9:80"]
    assert _servers(r.text, "app2") == ["192.168.1.10:80", "192.168.1.11:80"]
    assert _servers(r.text, "multiservice") == ["10.0.0.5:9000", "10.0.0.6:9000"]
    assert "cookie JSESSIONID" in r.text


async def test_cleanse_case_a_service_with_no_running_container_leaves(make_client: MakeClient) -> None:
    case = CASES["cleanse"]
    c = await make_client()
    await generate(c, _stored_as_payload("astro", case["stored"]))
    r = await generate(c, case["live"])
    assert (await check_config(r.text)).ok
    assert "backend app2" not in r.text, "app2: unavailable (no running container)"
    available = case["expected_available"][0]
    want = [f"{x['ip']}:{available['port']}" for x in available["containers"]]
    # the stored container still running, then the candidate's (Lambda-Registry's merge of the same data)
    assert _servers(r.text, "app1") == [*want, "192.168.1.9:80"]


async def test_merge_case_stored_and_live_services_have_containers_from_both(make_client: MakeClient) -> None:
    case = CASES["merge"]
    c = await make_client()
    await generate(c, _stored_as_payload("astro", case["stored"]))
    live = copy.deepcopy(case["live"])
    live["candidates"].append(case["candidate"])
    r = await generate(c, live)
    assert (await check_config(r.text)).ok
    for expected in case["expected_updated"] + case["expected_new"]:
        assert _servers(r.text, expected["serviceName"]) == [
            f"{x['ip']}:{expected['port']}" for x in expected["containers"]], expected["serviceName"]


async def test_a_candidates_new_port_applies_to_stored_containers(make_client: MakeClient) -> None:
    c = await make_client()
    first = {"table": "t", "running": [], "candidates": [
        {"serviceName": "app", "port": 80, "configMode": "host", "predicate": "app.example.com",
         "containers": [{"id": "c1", "ip": "10.0.0.1"}, {"id": "c2", "ip": "10.0.0.2:81"}]}]}
    r = await generate(c, first)
    assert _servers(r.text, "app") == ["10.0.0.1:80", "10.0.0.2:81"]
    running = [{"serviceName": "app", "id": "c1", "ip": "10.0.0.1"}, {"serviceName": "app", "id": "c2",
                                                                       "ip": "10.0.0.2:81"}]
    r = await generate(c, {"table": "t", "running": running, "candidates": [
        {"serviceName": "app", "port": 8080, "configMode": "host", "predicate": "app.example.com",
         "containers": []}]})
    assert _servers(r.text, "app") == ["10.0.0.1:8080", "10.0.0.2:81"], "its own port stays"
    r = await generate(c, {"table": "t", "running": running, "candidates": []})
    assert _servers(r.text, "app") == ["10.0.0.1:8080", "10.0.0.2:81"], "and on later running-only calls"


async def test_accept_json_gives_the_config_as_a_json_string_literal(make_client: MakeClient) -> None:
    payload = load_json("lambda-registry", "data.json")
    text = (await generate(await make_client(), payload)).text
    r = await generate(await make_client(), payload, Accept="application/json")
    assert r.headers["content-type"].startswith("application/json")
    assert r.text.startswith('"') and json.loads(r.text) == text
    r = await generate(await make_client(), payload, Accept="text/plain, application/json;q=0.5")
    assert r.text == text
