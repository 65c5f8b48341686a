"""Which hosts the ACME manager orders for, and when (pure)."""

from __future__ import annotations

import time

from haplane.model.records import Service
from haplane.testing_tls import TestCA
from haplane.tls.certs import parse_bundle
from haplane.tls.manager import DAY, acme_name, wanted_orders
from haplane.tls.records import OrderState, records_of

NOW = time.time()
CA = TestCA()


def _cert(host: str, days: float) -> object:
    leaf = CA.issue([host], days=days)
    return records_of("c-" + host, parse_bundle(leaf.chain_pem, leaf.key_pem, NOW), "api")[0]


def test_orders_auto_hosts_not_covered_long_enough() -> None:
    services = [Service.from_dict({"predicate": "a.test", "tls": "auto"}, name="a"),
                Service.from_dict({"predicate": "b.test", "tls": "auto"}, name="b"),
                Service.from_dict({"predicate": "c.test", "tls": "auto"}, name="c"),
                Service.from_dict({"predicate": "d.test", "tls": "redirect"}, name="d")]
    certs = [_cert("a.test", 90), _cert("b.test", 20)]  # a: fine; b: inside the 30-day window; c: none
    got = wanted_orders(services, certs, {}, NOW, 30 * DAY)  # type: ignore[arg-type]
    assert got == [(acme_name("b.test"), ("b.test",)), (acme_name("c.test"), ("c.test",))]


def test_a_failed_order_waits_for_its_back_off() -> None:
    services = [Service.from_dict({"predicate": "c.test", "tls": "auto"}, name="c")]
    failed = {acme_name("c.test"): OrderState(acme_name("c.test"), ("c.test",), "failed", NOW, 2, NOW + 60, "x")}
    assert wanted_orders(services, [], failed, NOW, 30 * DAY) == []
    assert wanted_orders(services, [], failed, NOW + 61, 30 * DAY) == [(acme_name("c.test"), ("c.test",))]


def test_long_host_names_still_make_file_names() -> None:
    host = ".".join(["x" * 60] * 4)
    assert len(acme_name(host)) <= 100 and acme_name(host).startswith("acme-")
