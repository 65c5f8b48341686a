"""The Consul source's pure part: instances from a /v1/health/service answer (versions from tags or meta,
address fallback, bad entries skipped by name), the blocking-query index rules, and its settings."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import pytest

from haplane.commands.watch import configure_consul, consul_from_args
from haplane.errors import ConfigurationError, ValidationError
from haplane.settings import load
from haplane.sources.consul import ConsulSource, instances_from_health


def entry(node: str, sid: str, address: str, port: Any, *, tags: list[str] | None = None,
          meta: dict[str, str] | None = None, node_address: str = "127.0.0.1", status: str = "passing"
          ) -> dict[str, Any]:
    return {"Node": {"Node": node, "Address": node_address},
            "Service": {"ID": sid, "Service": "api", "Tags": tags or [], "Meta": meta or {}, "Address": address,
                        "Port": port},
            "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
                       {"CheckID": f"service:{sid}", "Status": status}]}


def test_versions_from_tags_addresses_and_ids() -> None:
    got = instances_from_health([
        entry("n2", "api:2", "127.0.0.12", 8080, tags=["primary", "version=2.0"]),
        entry("n1", "api-1", "", 8081, tags=["version=1.0"], node_address="127.0.0.11"),
        entry("n3", "api-3", "127.0.0.13", 8082),
        entry("n4", "api-4", "127.0.0.14", 8083, tags=["version=1.0"], status="critical"),
    ], "api")
    assert [(i.id, i.address, i.port, i.version, i.service) for i in got] == [
        ("n1-api-1", "127.0.0.11", 8081, "1.0", "api"),  # no service address: the node's
        ("n2-api-2", "127.0.0.12", 8080, "2.0", "api"),  # ':' is not an id character
        ("n3-api-3", "127.0.0.13", 8082, None, "api"),  # no version: routable, no version
    ]  # n4: a failing check is never routable, whatever the server filtered


def test_versions_from_meta_and_custom_prefix() -> None:
    e = entry("n1", "a", "127.0.0.1", 80, tags=["v:3.1"], meta={"version": "1.2.3", "build": "7"})
    assert instances_from_health([e], "api", version_from="meta")[0].version == "1.2.3"
    assert instances_from_health([e], "api", version_from="meta", meta_key="build")[0].version == "7"
    assert instances_from_health([e], "api", tag_prefix="v:")[0].version == "3.1"


def test_bad_entries_are_skipped_by_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "haplane.sources.consul")
    got = instances_from_health([entry("n1", "ok", "127.0.0.1", 80), entry("n2", "badport", "127.0.0.2", 0),
                                 entry("n3", "badaddr", "not an address", 80), "junk"], "api")
    assert [i.id for i in got] == ["n1-ok"]
    text = caplog.text
    assert "n2/badport" in text and "n3/badaddr" in text and "entry 3" in text
    with pytest.raises(ValidationError):
        instances_from_health({"not": "a list"}, "api")


def test_index_rules_follow_consuls_docs() -> None:
    src = ConsulSource("api")
    assert src._params() == {"passing": "true"}, "the first query does not block"
    src.index = src._next_index(42)
    assert src._params()["index"] == "42" and src._params()["wait"] == "60000ms"
    assert src._next_index(42) == 42
    assert src._next_index(7) == 0 and src.resets == 1, "an index that goes backwards resets to 0"
    src.index = 0
    assert src._next_index(0) == 1, "an index of 0 is treated as 1"


def test_settings_and_options() -> None:
    p = argparse.ArgumentParser()
    configure_consul(p)
    settings = load(env={"SERVER_CONSUL_API_URL": "http://127.0.0.1:8600", "SERVER_CONSUL_SERVICE_NAME": "web"})
    src = consul_from_args(p.parse_args([]), settings)
    assert (src.service, src.address, src.target, src.name) == ("web", "http://127.0.0.1:8600", "web",
                                                               "consul-web")
    src = consul_from_args(p.parse_args(["--service", "api", "--consul", "127.0.0.1:9", "--as", "apisvc",
                                         "--version-from", "meta"]), load(env={}))
    assert (src.address, src.target, src.version_from) == ("http://127.0.0.1:9", "apisvc", "meta")
    from haplane.sources.consul_follow import ConsulFollower

    follower = consul_from_args(p.parse_args([]), load(env={}))  # no service: the dynamic backends' services
    assert isinstance(follower, ConsulFollower) and follower.tag is None and follower.names is None
    tagged = consul_from_args(p.parse_args(["--tag", "haplane"]), load(env={}))
    assert isinstance(tagged, ConsulFollower) and tagged.tag == "haplane"
    with pytest.raises(ConfigurationError, match="--tag follows many services"):
        consul_from_args(p.parse_args(["--service", "api", "--tag", "t"]), load(env={}))
    with pytest.raises(ConfigurationError, match="--as names the one service"):
        consul_from_args(p.parse_args(["--as", "x"]), load(env={}))
    with pytest.raises(ConfigurationError, match="version_from"):
        ConsulSource("api", version_from="label")
