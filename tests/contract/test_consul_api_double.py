"""The Consul source and the Consul stand-in held to HashiCorp's own API double (npm
``@hashicorp/consul-api-double``): the source parses the double's ``/v1/health/service`` and ``/v1/catalog``
answers, and the stand-in's answers have the double's shape. Parse only: the double's addresses are random public
ones, never routed to."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from haplane.model import values as v
from haplane.sources.consul import instances_from_catalog, instances_from_health
from haplane.testing_consul import ConsulStandIn
from support.consul_api_double import render

SEEDS = (1, 7, 42)


def _valid(address: Any, port: Any) -> bool:
    try:
        v.address_port(address, "a", v.port(port, "p"))
    except Exception:
        return False
    return True


@pytest.mark.parametrize("seed", SEEDS)
def test_the_source_parses_the_doubles_health_answers(seed: int) -> None:
    answer = render("/v1/health/service/web", seed=seed)
    assert answer.status == 200 and int(answer.headers["X-Consul-Index"]) >= 1, "blocking queries need the index"
    entries = answer.body
    assert entries, "the double renders some nodes"
    got = {i.id: i for i in instances_from_health(entries, "web")}
    expected = {}
    for e in entries:
        svc, node = e["Service"], e["Node"]
        if any(c["Status"] != "passing" for c in e["Checks"]):
            continue
        address = svc.get("Address") or node["Address"]
        if not _valid(address, svc["Port"]):
            continue
        expected[f"{node['Node']}-{svc['ID']}"] = (address, svc["Port"])
    assert {k: (i.address, i.port) for k, i in got.items()} == expected
    assert all(i.service == "web" and i.version is None for i in got.values())


@pytest.mark.parametrize("seed", SEEDS)
def test_the_source_reads_versions_from_the_doubles_tags_and_meta(seed: int) -> None:
    entries = render("/v1/health/service/web", seed=seed).body
    for e in entries:
        for c in e["Checks"]:
            c["Status"] = "passing"
    tag = entries[0]["Service"]["Tags"][0]
    by_tag = instances_from_health(entries, "web", tag_prefix=tag[:1])
    assert any(i.version == tag[1:] for i in by_tag if i.id.startswith(entries[0]["Node"]["Node"] + "-"))
    by_meta = instances_from_health(entries, "web", version_from="meta", meta_key="external-source")
    metas = {e["Service"].get("Meta", {}).get("external-source") for e in entries}
    assert {i.version for i in by_meta} <= metas | {None}


@pytest.mark.parametrize("seed", SEEDS)
def test_the_source_parses_the_doubles_catalog_answers(seed: int) -> None:
    answer = render("/v1/catalog/connect/web", seed=seed)
    assert answer.status == 200 and answer.body
    got = {i.id: (i.address, i.port) for i in instances_from_catalog(answer.body, "web")}
    expected = {}
    for e in answer.body:
        address = e.get("ServiceAddress") or e["Address"]
        if _valid(address, e["ServicePort"]):
            expected[f"{e['Node']}-{e['ServiceID']}"] = (address, e["ServicePort"])
    assert got == expected


def _keys(value: Any) -> Any:
    """The shape of a JSON value: its object keys, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: _keys(val) for k, val in value.items()}
    if isinstance(value, list):
        return [_keys(value[0])] if value else []
    return type(value).__name__


def test_the_stand_ins_health_answer_has_the_doubles_shape() -> None:
    entries = render("/v1/health/service/web").body
    with ConsulStandIn() as consul:
        consul.register("web", "127.0.0.2", 8080, tags=["version=1"], meta={"version": "1"})
        with urllib.request.urlopen(f"{consul.address}/v1/health/service/web") as resp:
            ours = json.loads(resp.read())[0]
    wanted = {"Node": {"Node", "Address", "Datacenter"},
              "Service": {"ID", "Service", "Tags", "Address", "Port", "Meta"}}
    for part, keys in wanted.items():
        # the double renders some keys on some entries only (Meta): its shape is the union over its entries
        double: dict[str, Any] = {}
        for e in entries:
            double.update(e[part])
        assert keys <= set(double), f"the double lacks {part}.{keys - set(double)}"
        assert keys <= set(ours[part]), f"the stand-in lacks {part}.{keys - set(ours[part])}"
        for key in keys:
            assert type(ours[part][key]) is type(double[key]), f"{part}.{key}"
    check_keys = {"Node", "CheckID", "Name", "Status", "ServiceID", "ServiceName"}
    assert check_keys <= set(entries[0]["Checks"][0]) and check_keys <= set(ours["Checks"][0])
