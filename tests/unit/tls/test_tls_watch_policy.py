"""The HTTPS policy of an AWS or Consul watcher's service comes from the settings (those sources have no labels)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from haplane.commands.watch import define_tls
from haplane.errors import ConfigurationError
from haplane.model.records import Service
from haplane.registry import RegistryStore
from haplane.settings import load
from haplane.sources.base import StoreSink
from haplane.store import open_store


async def test_settings_set_the_policy_and_keep_the_rest() -> None:
    store = open_store("memory://")
    reg = RegistryStore(store)
    await reg.put_service(Service("api", "host", "api.example.test", port=8080, balance="leastconn"))
    source = SimpleNamespace(service="api-consul", target="api")
    await define_tls(source, StoreSink(reg), load({"tls_policy": "redirect", "tls_hsts": 600}, env={}))
    svc, _ = await reg.get_service("api")
    assert (svc.tls, svc.hsts, svc.balance, svc.predicate) == ("redirect", 600, "leastconn", "api.example.test")
    rev = await store.revision()
    await define_tls(source, StoreSink(reg), load({}, env={}))  # the defaults: nothing written
    assert await store.revision() == rev
    with pytest.raises(ConfigurationError, match="tls_policy"):
        await define_tls(source, StoreSink(reg), load({"tls_policy": "sometimes"}, env={}))
    await store.close()
