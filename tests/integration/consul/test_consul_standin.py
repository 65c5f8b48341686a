"""The Consul stand-in (haplane.testing_consul) answers in the shapes Consul's HTTP API documents
(developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service and
/consul/api-docs/catalog#list-nodes-for-service), with blocking queries and X-Consul-Index.

No real Consul runs in these tests: the field names below are the ones in Consul's docs' sample responses, so
the stand-in cannot drift from the documented API without a test failing."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from haplane.testing_consul import ConsulStandIn, parse_wait

pytestmark = pytest.mark.integration

# from the sample responses in Consul's docs
HEALTH_ENTRY_KEYS = {"Node", "Service", "Checks"}
HEALTH_NODE_KEYS = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta", "CreateIndex", "ModifyIndex"}
HEALTH_SERVICE_KEYS = {"ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port", "Weights",
                       "EnableTagOverride", "Proxy", "Connect", "Namespace", "CreateIndex", "ModifyIndex"}
HEALTH_CHECK_KEYS = {"Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
                     "ServiceTags", "Type", "Namespace", "CreateIndex", "ModifyIndex"}
CATALOG_KEYS = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "ServiceAddress",
                "ServiceEnableTagOverride", "ServiceID", "ServiceName", "ServicePort", "ServiceMeta",
                "ServiceTaggedAddresses", "ServiceTags", "ServiceProxy", "ServiceConnect", "ServiceWeights",
                "Namespace", "CreateIndex", "ModifyIndex"}


def test_documented_shapes(consul: ConsulStandIn) -> None:
    consul.register("redis", "127.0.0.21", 8000, service_id="redis1", tags=["primary", "version=4.0"],
                    meta={"redis_version": "4.0"})
    r = httpx.get(f"{consul.address}/v1/health/service/redis")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert int(r.headers["X-Consul-Index"]) >= 1
    assert r.headers["X-Consul-KnownLeader"] == "true"
    (e,) = r.json()
    assert set(e) == HEALTH_ENTRY_KEYS
    assert set(e["Node"]) == HEALTH_NODE_KEYS
    assert set(e["Service"]) == HEALTH_SERVICE_KEYS
    assert all(set(c) == HEALTH_CHECK_KEYS for c in e["Checks"])
    assert (e["Service"]["ID"], e["Service"]["Service"], e["Service"]["Port"], e["Service"]["Tags"],
            e["Service"]["Meta"]) == ("redis1", "redis", 8000, ["primary", "version=4.0"], {"redis_version": "4.0"})
    assert {c["CheckID"] for c in e["Checks"]} == {"serfHealth", "service:redis1"}
    (c,) = httpx.get(f"{consul.address}/v1/catalog/service/redis").json()
    assert set(c) == CATALOG_KEYS
    assert (c["ServiceID"], c["ServiceAddress"], c["ServicePort"]) == ("redis1", "127.0.0.21", 8000)
    missing = httpx.get(f"{consul.address}/v1/health/service/nothing")
    assert missing.json() == [] and "X-Consul-Index" in missing.headers


def test_passing_and_tag_filters(consul: ConsulStandIn) -> None:
    consul.register("web", "127.0.0.31", 80, service_id="w1", tags=["blue"])
    consul.register("web", "127.0.0.32", 80, service_id="w2", tags=["green"], status="critical")
    ids = [e["Service"]["ID"] for e in httpx.get(f"{consul.address}/v1/health/service/web").json()]
    assert ids == ["w1", "w2"]
    ids = [e["Service"]["ID"] for e in httpx.get(f"{consul.address}/v1/health/service/web?passing=true").json()]
    assert ids == ["w1"]
    ids = [e["Service"]["ID"] for e in httpx.get(f"{consul.address}/v1/health/service/web?tag=green").json()]
    assert ids == ["w2"]


def test_blocking_query_waits_for_a_change_or_the_wait(consul: ConsulStandIn) -> None:
    consul.register("web", "127.0.0.31", 80, service_id="w1")
    index = int(httpx.get(f"{consul.address}/v1/health/service/web").headers["X-Consul-Index"])
    started = time.monotonic()
    r = httpx.get(f"{consul.address}/v1/health/service/web?index={index}&wait=300ms")
    assert time.monotonic() - started >= 0.25, "held until the wait ran out"
    assert int(r.headers["X-Consul-Index"]) == index
    threading.Timer(0.2, lambda: consul.register("web", "127.0.0.32", 80, service_id="w2")).start()
    r = httpx.get(f"{consul.address}/v1/health/service/web?index={index}&wait=30s", timeout=30)
    assert int(r.headers["X-Consul-Index"]) > index
    assert [e["Service"]["ID"] for e in r.json()] == ["w1", "w2"]
    other = int(httpx.get(f"{consul.address}/v1/health/service/web").headers["X-Consul-Index"])
    consul.register("db", "127.0.0.40", 5432)
    assert int(httpx.get(f"{consul.address}/v1/health/service/web").headers["X-Consul-Index"]) == other, \
        "the index is per service: another service's change does not wake it"
    consul.reset_index(1)
    assert httpx.get(f"{consul.address}/v1/health/service/web").headers["X-Consul-Index"] == "1"


def test_wait_durations() -> None:
    assert parse_wait("10s") == 10 and parse_wait("500ms") == 0.5 and parse_wait("2m") == 120
    assert parse_wait("1h") == 600, "capped at Consul's 10 minutes"
    with pytest.raises(ValueError):
        parse_wait("soon")
