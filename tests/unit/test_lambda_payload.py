"""Lambda-Registry's /generate semantics, with its known bugs fixed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from haplane.compose import TableService, compose_table
from haplane.errors import ValidationError
from haplane.registry.payload import merge_payload, parse_payload
from haplane.render import render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def seed() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "seed-001.json").read_text())
    return data


def apply(payload: dict[str, Any], stored: dict[str, TableService] | None = None) -> dict[str, TableService]:
    new, _ = merge_payload(parse_payload(payload), stored or {})
    return new


def servers(table: dict[str, TableService], name: str) -> list[str]:
    return [c.id for c in table[name].containers]


def test_seed_payload_gives_seed_services() -> None:
    table = apply(seed())
    assert set(table) == {"app1", "app2"}
    # a new candidate's servers are its candidate containers only
    assert servers(table, "app1") == ["a23nj53h3j4"]
    assert servers(table, "app2") == ["das843j3h3k", "fds32k4354f"]
    assert table["app1"].service.predicate == "first.example.com"
    assert table["app1"].containers[0].port == 80


def test_persistence_sequence() -> None:
    table = apply(seed())
    # post only running: app1 persists with stored-and-running, then running entries; app2 is gone
    running_only = {"table": "astro", "running": seed()["running"]}
    table = apply(running_only, table)
    assert set(table) == {"app1"}
    assert servers(table, "app1") == ["a23nj53h3j4", "jk3243j54jl"]
    assert table["app1"].service.cookie == "JSESSIONID"  # routing kept from the first post
    # one container gone
    table = apply({"table": "astro", "running": [seed()["running"][1]]}, table)
    assert servers(table, "app1") == ["jk3243j54jl"]
    # all gone: service leaves
    table = apply({"table": "astro", "running": []}, table)
    assert table == {}


def test_every_stored_service_is_considered() -> None:
    table = apply(seed())
    payload = {"running": [{"serviceName": "app1", "id": "a23nj53h3j4", "ip": "192.168.1.9:80"},
                           {"serviceName": "app2", "id": "das843j3h3k", "ip": "192.168.1.10:80"}]}
    table = apply(payload, table)
    assert servers(table, "app1") == ["a23nj53h3j4"]
    assert servers(table, "app2") == ["das843j3h3k"]


def test_candidate_replaces_routing_of_stored_service() -> None:
    table = apply(seed())
    payload = seed()
    payload["candidates"] = [{"serviceName": "app1", "configMode": "path", "predicate": "/one",
                              "containers": []}]
    table = apply(payload, table)
    svc = table["app1"].service
    assert (svc.mode, svc.predicate, svc.cookie) == ("path", "/one", "JSESSIONID")


def test_config_mode_defaults_to_host_and_path_not_doubled() -> None:
    table = apply({"candidates": [
        {"serviceName": "a", "predicate": "a.example.com", "containers": [{"id": "x", "ip": "127.0.0.2:80"}]},
        {"serviceName": "b", "configMode": "path", "predicate": "/b",
         "containers": [{"id": "y", "ip": "127.0.0.3:80"}]},
    ]})
    cfg = render(compose_table(list(table.values())))
    assert "-m str a.example.com" in cfg
    assert "path /b\n" in cfg and "path_beg /b/\n" in cfg and "//b" not in cfg


def test_missing_lists_mean_empty() -> None:
    assert apply({"table": "t"}) == {}


def test_duplicates_first_occurrence_wins() -> None:
    table = apply({"running": [{"serviceName": "a", "id": "x", "ip": "127.0.0.9:81"}],
                   "candidates": [{"serviceName": "a", "predicate": "a.com",
                                   "containers": [{"id": "x", "ip": "127.0.0.2:80"},
                                                  {"id": "x", "ip": "127.0.0.3:80"}]}]})
    assert [(c.id, c.address) for c in table["a"].containers] == [("x", "127.0.0.2")]


def test_port_from_service_when_ip_has_none() -> None:
    table = apply({"candidates": [{"serviceName": "a", "port": 8080, "predicate": "a.com",
                                   "containers": [{"id": "x", "ip": "127.0.0.2"}]}]})
    assert table["a"].containers[0].port == 8080


@pytest.mark.parametrize(("payload", "field"), [
    ({"candidates": [{"serviceName": "a"}, {"serviceName": "b", "predicate": "a.com\n  stats enable"}]},
     "candidates[1].predicate"),
    ({"running": [{"serviceName": "a b", "id": "x", "ip": "1.2.3.4:80"}]}, "running[0].serviceName"),
    ({"running": [{"serviceName": "a", "id": "x", "ip": "1.2.3.4:80 backup"}]}, "running[0].ip"),
    ({"candidates": [{"serviceName": "a", "configMode": "udp"}]}, "candidates[0].configMode"),
    ({"candidates": [{"serviceName": "a", "cookie": "a;b"}]}, "candidates[0].cookie"),
    ({"candidates": [{"serviceName": "a", "containers": [{"id": "x", "ip": "127.0.0.2"}]}]},
     "candidates[0].containers[0].ip"),
    ({"running": "x"}, "running"),
])
def test_bad_payloads_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        merge_payload(parse_payload(payload), {})
    assert exc.value.field == field


def test_no_html_escaping_anywhere() -> None:
    table = apply({"candidates": [{"serviceName": "a", "configMode": "path", "predicate": "/a&b=c",
                                   "containers": [{"id": "x", "ip": "127.0.0.2:80"}]}]})
    cfg = render(compose_table(list(table.values())))
    assert "/a&b=c" in cfg and "&amp;" not in cfg


def test_render_is_deterministic() -> None:
    a = render(compose_table(list(apply(seed()).values())))
    b = render(compose_table(list(reversed(list(apply(seed()).values())))))
    assert a == b


def test_each_server_gets_its_own_cookie_value() -> None:
    cfg = render(compose_table(list(apply(seed()).values())))
    assert "server das843j3h3k 192.168.1.10:80 cookie das843j3h3k check" in cfg
    assert "server fds32k4354f 192.168.1.11:80 cookie fds32k4354f check" in cfg
    assert "cookie JSESSIONID prefix nocache" in cfg
