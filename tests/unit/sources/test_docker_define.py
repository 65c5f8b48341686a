"""Service definitions from containers: the fields a container states replace the stored ones, the rest (an
operator's balance, health check) stays; a full ``Service`` replaces; nothing is written when nothing changes."""

from __future__ import annotations

import pytest

from haplane.errors import ValidationError
from haplane.model.records import HealthCheck, Service
from haplane.registry import RegistryStore
from haplane.sources.base import StoreSink, merge_service
from haplane.store.memory import MemoryStore


def test_merge_keeps_what_the_container_does_not_state() -> None:
    operator = Service("web", "host", "web.test", 80, "SID", "leastconn", HealthCheck(path="/health"))
    merged = merge_service(operator, {"name": "web", "port": 8080})
    assert merged == Service("web", "host", "web.test", 8080, "SID", "leastconn", HealthCheck(path="/health"))
    assert merge_service(None, {"name": "web", "port": 8080}) == Service("web", port=8080)
    # a new mode without a predicate drops the old predicate (it meant something else)
    assert merge_service(operator, {"name": "web", "mode": "path"}).predicate is None
    assert merge_service(operator, {"name": "web", "mode": "path", "predicate": "/w"}).predicate == "/w"
    assert merge_service(operator, Service("web")) == Service("web")
    with pytest.raises(ValidationError, match=r"service web\.port"):
        merge_service(operator, {"name": "web", "port": 0})


async def test_store_sink_merges_and_writes_only_changes() -> None:
    reg = RegistryStore(MemoryStore())
    sink = StoreSink(reg)
    await reg.put_service(Service("web", "host", "web.test", 80, None, "leastconn", HealthCheck(path="/h")))
    await sink.define([{"name": "web", "port": 8080, "mode": "host", "predicate": "web.test"}])
    svc, rev = await reg.get_service("web")
    assert (svc.port, svc.balance, svc.health) == (8080, "leastconn", HealthCheck(path="/h"))
    await sink.define([{"name": "web", "port": 8080}])
    assert (await reg.get_service("web"))[1] == rev  # the same definition again: no write
    await sink.define([{"name": "api", "mode": "path", "predicate": "/api", "port": 9000}])
    assert (await reg.get_service("api"))[0] == Service("api", "path", "/api", 9000)
