"""The names records take in haproxy.cfg (model/names.py), and compose meeting a collision the registry would
have refused (a store written otherwise): one owner kept by a stable rule, the other reported, none dropped
in silence."""

from __future__ import annotations

import itertools
import logging

import pytest

from haplane.agent.mirror import Mirror
from haplane.agent.planning import Composer
from haplane.compose import ComposeOptions, compose, name_collisions
from haplane.model import names as nm
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Member, Registry, Service
from haplane.render import render_config


def test_hosts_and_paths_normalise_as_the_router_compares_them() -> None:
    assert nm.normalise_host("Dup.Example.COM") == nm.normalise_host("dup.example.com.") == "dup.example.com"
    assert nm.normalise_path("api") == nm.normalise_path("/api") == nm.normalise_path("/api/") == "/api/"
    assert nm.normalise_path("/API") != "/api"
    svc = Service("s", "path", "/api")
    assert nm.Claim("path", "/api/", "predicate") in nm.service_claims(svc)
    assert nm.Claim("backend", "s_fallback") in nm.service_claims(svc)
    assert nm.Claim("backend", "spare") in nm.service_claims(svc, {"s": "spare"})


def test_an_index_tells_who_holds_a_name() -> None:
    names = nm.index([Service("web", "host", "web.example.com")], [BackendSpec("b1")])
    assert names.taken("service:b1", [nm.Claim("backend", "b1")]) == (nm.Claim("backend", "b1"), "backend:b1")
    assert names.taken("service:web", nm.service_claims(Service("web", "host", "web.example.com"))) is None
    assert names.taken("frontend:http", [nm.Claim("frontend", "http")])[1] == "haplane:frontend 'http'"  # type: ignore[index]
    names.release("backend:b1")
    assert names.taken("service:b1", [nm.Claim("backend", "b1")]) is None


SERVICES = (Service("b1", "host", "one.example.com"), Service("dup1", "host", "dup.example.com"),
            Service("dup2", "host", "dup.example.com"), Service("a"), Service("a_fallback"))
BACKENDS = (BackendSpec("b1", members=(Member("127.0.0.9", 80),)), BackendSpec("other"))
FRONTENDS = (FrontendSpec("http", (("127.0.0.1", 8081),)), FrontendSpec("fe", (("127.0.0.1", 8082),)))


@pytest.mark.parametrize("order", list(itertools.permutations(range(3)))[:3])
def test_compose_keeps_one_owner_by_a_stable_rule_and_reports_the_other(order: tuple[int, ...]) -> None:
    services = tuple(SERVICES[i] for i in (*order, 3, 4))
    registry = Registry(services=services, backends=BACKENDS[::-1], frontends=FRONTENDS,
                        instances=(Instance("i1", "b1", "127.0.0.2", 8080, slot=1),))
    options = ComposeOptions(focus_zones=frozenset({"z"}))
    lost = {(c.loser, c.claim.space, c.winner) for c in name_collisions(registry, options)}
    assert lost == {("backend:b1", "backend", "service:b1"), ("service:dup2", "host", "service:dup1"),
                    ("service:a_fallback", "backend", "service:a"),
                    ("frontend:http", "frontend", "haplane:frontend 'http'")}
    config = compose(registry, options)
    b1 = config.backend("b1")
    assert b1 is not None and b1.owner == "service:b1"
    assert config.backend("a_fallback") is not None and config.backend("a_fallback").owner == "service:a"  # type: ignore[union-attr]
    assert config.backend("dup2") is not None, "a service that loses only its route keeps its backend"
    main = config.frontends[0]
    assert [(r.value, r.backend) for r in main.routes if r.value == "dup.example.com"] == [("dup.example.com", "dup1")]
    assert [f.name for f in config.frontends] == ["http", "fe"]
    text = render_config(config).text
    assert text.count("\nbackend b1\n") == 1 and "127.0.0.9" not in text


def test_without_focus_no_fallback_name_is_claimed() -> None:
    registry = Registry(services=(Service("a"), Service("a_fallback")))
    assert name_collisions(registry, ComposeOptions()) == []
    assert {b.name for b in compose(registry).backends} == {"a", "a_fallback"}


def test_of_two_services_with_one_prefix_the_router_keeps_the_one_it_would_match_first() -> None:
    registry = Registry(services=(Service("a", "path", "/app"), Service("b", "path", "/app/")))
    assert [(c.loser, c.winner) for c in name_collisions(registry, ComposeOptions())] == [("service:a", "service:b")]


def test_the_host_map_holds_one_backend_per_host() -> None:
    registry = Registry(services=(Service("x2", "host", "h.example.com"), Service("x1", "host", "h.example.com")))
    config = compose(registry, ComposeOptions(host_map="/tmp/hosts.map"))
    assert dict(config.maps)["/tmp/hosts.map"] == "h.example.com x1\n"


def test_the_agent_says_which_records_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    mirror = Mirror()
    mirror.services = {"b1": Service("b1")}
    mirror.backends = {"b1": BackendSpec("b1")}
    composer = Composer(mirror, ComposeOptions())
    with caplog.at_level(logging.WARNING, logger="haplane.agent"):
        composer.full(frozenset())
    assert "Thalassa backend 'b1'" in caplog.text and "service 'b1'" in caplog.text


@pytest.mark.parametrize("record", [Service("web", "host", "Web.Example.com."), Service("api", "path", "api/"),
                                    Service("bare"), BackendSpec("b1"), FrontendSpec("f1", (("127.0.0.1", 81),))])
def test_a_stored_record_claims_what_it_claimed_when_written(record: Service | BackendSpec | FrontendSpec) -> None:
    kind = {Service: "service", BackendSpec: "backend", FrontendSpec: "frontend"}[type(record)]
    spares = {"web": "web-spare"}
    assert nm.stored_claims(kind, record.name, record.to_dict(), spares) == nm.claims_of(record, spares)
