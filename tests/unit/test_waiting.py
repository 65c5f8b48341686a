"""Instances whose service is not defined yet wait, unrouted, and say so: in the overview (UI), in
``haplane status``, and (tests/unit/api) in the answer to the source's push."""

from __future__ import annotations

import io

from haplane.commands._client import Style
from haplane.commands.status import render
from haplane.compose import compose
from haplane.model.records import Instance, Registry, Service
from haplane.overview import build


def test_instances_of_an_undefined_service_wait_and_say_so() -> None:
    reg = Registry(services=(Service("web", "host", "web.test"),), instances=(
        Instance("a", "web", "127.0.0.2", 80, slot=1),
        *(Instance(f"i-{n}", "shop", f"127.0.0.{n + 3}", 80, source="aws-shop-asg", group="shop-asg")
          for n in range(3))))
    config = compose(reg)
    assert [b.name for b in config.backends] == ["web"], "nothing is routed to shop"
    doc = build(config, reg)
    assert doc["waiting"] == [{"service": "shop", "instances": 3, "sources": ["aws-shop-asg"],
                               "message": "3 instances waiting for service shop (define it: PUT /services/shop, "
                                          "or the watcher's --define mode=host,predicate=HOST)"}]
    text = render(doc, Style(io.StringIO()))
    assert "3 instances waiting for service shop" in text
    assert build(compose(Registry()), Registry())["waiting"] == []


async def test_a_push_for_an_undefined_service_is_answered_with_what_waits(tmp_path: object) -> None:
    import httpx

    from haplane.api import ApiDeps, create_app
    from haplane.registry import RegistryStore
    from haplane.settings import Settings
    from haplane.store import open_store

    store = open_store("memory://")
    deps = ApiDeps(registry=RegistryStore(store), settings=Settings(tokens={"admin-token-1234": "admin"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)), base_url="http://a") as c:
        h = {"Authorization": "Bearer admin-token-1234"}
        body = {"instances": [{"service": "shop", "id": f"i{n}", "address": f"127.0.0.{n + 2}", "port": 80}
                              for n in range(3)]}
        r = await c.put("/sources/aws-shop/instances", json=body, headers=h)
        assert r.status_code == 200 and r.json()["waiting"] == [
            "3 instances waiting for service shop (define it: PUT /services/shop, or the watcher's "
            "--define mode=host,predicate=HOST)"]
        await c.put("/services/shop", json={"mode": "host", "predicate": "shop.test"}, headers=h)
        r = await c.put("/sources/aws-shop/instances", json=body, headers=h)
        assert r.json()["waiting"] == []
    await store.close()


async def test_a_store_sink_says_at_once_what_waits(caplog: object) -> None:
    import logging

    import pytest

    from haplane.registry import RegistryStore
    from haplane.sources.base import StoreSink
    from haplane.store import open_store

    assert isinstance(caplog, pytest.LogCaptureFixture)
    store = open_store("memory://")
    sink = StoreSink(RegistryStore(store))
    shop = [Instance(f"i-{n}", "shop", f"127.0.0.{n + 2}", 80) for n in range(3)]
    with caplog.at_level(logging.WARNING, logger="haplane.sources"):
        await sink.replace("aws-shop", shop)
        await sink.replace("aws-shop", shop)  # said once, not at every push
    said = [r.getMessage() for r in caplog.records if "waiting for service shop" in r.getMessage()]
    assert said == ["source aws-shop: 3 instances waiting for service shop (define it: PUT /services/shop, or the "
                    "watcher's --define mode=host,predicate=HOST)"]
    await store.close()
