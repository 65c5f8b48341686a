"""Pools of ready backends, the pure core: which spare a new service takes, what compose renders for it, when the
plan refills a pool, and how map entries wait for the backend they name."""

from __future__ import annotations

from dataclasses import replace

import pytest

from haplane.compose import (
    ComposeOptions,
    compose,
    held_in_maps,
    parse_pool_profile,
    place_in_pools,
    pool_profiles,
)
from haplane.errors import ValidationError
from haplane.model.observed import SlotObs
from haplane.model.ops import MapAdd, MapSet, SetAddress
from haplane.model.records import HealthCheck, Instance, Registry, Service
from haplane.plan import Policy, plan

HOSTS = "/state/hosts.map"
OPTIONS = ComposeOptions(host_map=HOSTS, pools=pool_profiles(["roundrobin", "leastconn"]), pool_size=4)


def _registry(*services: Service, instances: tuple[Instance, ...] = ()) -> Registry:
    return Registry(services, instances, (), ())


def _with(options: ComposeOptions, registry: Registry, running: Registry) -> ComposeOptions:
    """``options`` with the placement of ``registry`` against the config composed (and loaded) for ``running``."""
    applied = compose(running, options)
    return replace(options, pooled=place_in_pools(registry, applied.names(), options))


def _observed(config: object) -> dict[str, dict[str, SlotObs]]:
    from haplane.model.haproxy import Config

    assert isinstance(config, Config)
    return {b.name: {s.name: SlotObs(s.address, s.port, s.weight, s.state == "maint", s.state == "drain")
                     for s in b.servers} for b in config.backends}


def test_spares_are_rendered_free_one_pool_per_profile() -> None:
    cfg = compose(_registry(), OPTIONS)
    spares = [b for b in cfg.backends if b.pool]
    assert [b.name for b in spares] == [f"_pool{p}_{n}" for p in (1, 2) for n in range(1, 5)]
    assert all(b.free_spare and b.slotted and all(s.state == "maint" for s in b.servers) for b in spares)
    assert {b.balance for b in spares} == {"roundrobin", "leastconn"}
    assert compose(_registry(), replace(OPTIONS, pool_size=0)).backends == ()
    assert not [b for b in compose(_registry(), replace(OPTIONS, focus_zones=frozenset({"a"}))).backends if b.pool]


def test_a_new_service_takes_the_lowest_free_spare_of_its_profile_with_no_structural_change() -> None:
    applied = compose(_registry(), OPTIONS)
    web = Service("web", "host", "web.test", balance="leastconn")
    reg = _registry(web, instances=(Instance("w1", "web", "127.0.0.2", 80, slot=1),))
    pooled = place_in_pools(reg, applied.names(), OPTIONS)
    assert pooled == (("_pool2_1", "web"),)
    desired = compose(reg, replace(OPTIONS, pooled=pooled))
    assert desired.structure_key() == applied.structure_key()  # no reload
    assert desired.backend("web") is None
    held = desired.backend("_pool2_1")
    assert held is not None and held.label == "web" and held.shown == "web" and held.owner == "service:web"
    assert held.servers[0].instance == "w1"
    assert dict(desired.maps)[HOSTS] == "web.test _pool2_1\n"
    # the plan: the slot, then the map entry pointing at the spare; no reload; named as operators know it
    p = plan(desired, _observed(applied), {}, applied, 0.0, Policy(ramp_interval=0),
             maps_now={HOSTS: {}}, map_paths={HOSTS: HOSTS})
    assert p.reload is None
    assert isinstance(p.ops[0], SetAddress) and p.ops[0].backend == "_pool2_1"
    assert p.ops[0].change.subject == "web/s1"
    assert isinstance(p.ops[-1], MapAdd) and (p.ops[-1].key, p.ops[-1].value) == ("web.test", "_pool2_1")
    assert "_pool" not in p.ops[-1].change.reason


def test_a_new_path_service_takes_a_spare_through_the_path_map() -> None:
    options = replace(OPTIONS, path_map="/state/paths.map")
    applied = compose(_registry(), options)
    api = Service("api", "path", "/api")
    pooled = place_in_pools(_registry(api), applied.names(), options)
    assert pooled == (("_pool1_1", "api"),)
    desired = compose(_registry(api), replace(options, pooled=pooled))
    assert desired.structure_key() == applied.structure_key()
    assert dict(desired.maps)["/state/paths.map"] == "/api/ _pool1_1\n"
    p = plan(desired, _observed(applied), {}, applied, 0.0, Policy(), maps_now={"/state/paths.map": {}},
             map_paths={"/state/paths.map": "/state/paths.map"})
    assert p.reload is None and [(op.key, op.value) for op in p.ops if isinstance(op, MapAdd)] == [
        ("/api/", "_pool1_1")]
    assert held_in_maps(_registry(api), {"/state/paths.map": {"/api/": "_pool1_1"}}, options) == pooled


def test_placement_is_stable_and_depends_only_on_the_data() -> None:
    applied = compose(_registry(), OPTIONS)
    b = Service("b", "host", "b.test")
    first = place_in_pools(_registry(b), applied.names(), OPTIONS)
    assert first == (("_pool1_1", "b"),)
    # a service sorting before it arrives later: b keeps its spare
    a = Service("a", "host", "a.test")
    later = place_in_pools(_registry(a, b), applied.names(), replace(OPTIONS, pooled=first))
    assert dict(later) == {"_pool1_1": "b", "_pool1_2": "a"}
    # the same events on another node (same config loaded): the same placement
    assert place_in_pools(_registry(a, b), applied.names(), replace(OPTIONS, pooled=first)) == later
    # b leaves: its spare stays taken until the next reload; b coming back gets it again
    gone = compose(_registry(a), replace(OPTIONS, pooled=later))
    assert gone.backend("_pool1_1") is not None and gone.backend("_pool1_1").free_spare  # type: ignore[union-attr]
    assert dict(place_in_pools(_registry(a, b), applied.names(), replace(OPTIONS, pooled=later)))["_pool1_1"] == "b"
    # a reader without the agent's memory finds the same from HAProxy's host map
    assert held_in_maps(_registry(a, b), {HOSTS: {"a.test": "_pool1_2", "b.test": "_pool1_1"}}, OPTIONS) == later


@pytest.mark.parametrize("svc, instances", [
    (Service("s", "host", "s.test", balance="source"), ()),  # no profile
    (Service("s", "host", "s.test", cookie="SRV"), ()),
    (Service("s", "host", "s.test", health=HealthCheck(path="/h")), ()),
    (Service("s", "path", "/s"), ()),  # no path map here: routed by an ACL
    (Service("s", "host", None), ()),  # no route
    (Service("s", "host", "s.test"), tuple(Instance(f"i{n}", "s", "127.0.0.2", 80 + n, slot=n)
                                           for n in range(1, 10))),  # more instances than a spare's slots
])
def test_a_service_outside_every_profile_takes_a_reload(svc: Service, instances: tuple[Instance, ...]) -> None:
    applied = compose(_registry(), OPTIONS)
    reg = _registry(svc, instances=instances)
    assert place_in_pools(reg, applied.names(), OPTIONS) == ()
    desired = compose(reg, OPTIONS)
    assert desired.backend("s") is not None
    assert desired.structure_key() != applied.structure_key()


def test_a_pool_at_half_its_spares_asks_for_a_background_refill_and_a_reload_frees_every_spare() -> None:
    options = replace(OPTIONS, pool_size=2)
    applied = compose(_registry(), options)
    reg = _registry(Service("web", "host", "web.test"))
    pooled = replace(options, pooled=place_in_pools(reg, applied.names(), options))
    desired = compose(reg, pooled)
    assert desired.pools_low == (("1", 1, 2),)
    p = plan(desired, _observed(applied), {}, applied, 0.0, Policy())
    assert p.reload is not None and [c.kind for c in p.reload.causes] == ["pool-refill"]
    # the reload's config: every service in a backend of its own, every spare free
    graduated = compose(reg, options)
    assert graduated.backend("web") is not None and all(b.free_spare for b in graduated.backends if b.pool)
    assert graduated.pools_low == ()


def test_a_map_entry_waits_for_the_backend_it_names() -> None:
    """A pooled service that no longer fits its spare (here: it changed its balance) gets a backend of its own at the
    next reload; until then the spare keeps serving it and its host entry is not pointed at a backend HAProxy
    lacks."""
    applied = compose(_registry(), OPTIONS)
    web = Service("web", "host", "web.test")
    inst = (Instance("w1", "web", "127.0.0.2", 80, slot=1),)
    options = replace(OPTIONS, pooled=place_in_pools(_registry(web, instances=inst), applied.names(), OPTIONS))
    changed = compose(_registry(replace(web, balance="source"), instances=inst), options)
    spare = changed.backend("_pool1_1")
    assert spare is not None and spare.label == "web" and spare.servers[0].instance == "w1"  # still serving
    assert changed.backend("web") is not None
    p = plan(changed, _observed(applied), {}, applied, 0.0, Policy(), maps_now={HOSTS: {"web.test": "_pool1_1"}},
             map_paths={HOSTS: HOSTS})
    assert not [op for op in p.ops if isinstance(op, (MapAdd, MapSet))]
    assert p.reload is not None and "backend web added" in p.reload.reason


def test_profiles_as_settings_spell_them() -> None:
    p = parse_pool_profile("roundrobin:cookie=JSESSIONID:check=/healthz", "3")
    assert (p.name, p.balance, p.cookie, p.health) == ("3", "roundrobin", "JSESSIONID", HealthCheck(path="/healthz"))
    for bad in ("nope", "roundrobin:cookie", "roundrobin:weight=3", "roundrobin:cookie=a b"):
        with pytest.raises(ValidationError):
            parse_pool_profile(bad, "1")


def test_pool_settings_are_checked() -> None:
    from haplane.errors import ConfigurationError
    from haplane.settings import load

    assert load({}, env={}).pool_size == 8
    assert load({"pool_profiles": "leastconn,roundrobin:cookie=SRV"}, env={}).pool_profiles == (
        "leastconn", "roundrobin:cookie=SRV")
    with pytest.raises(ConfigurationError, match="pool_profiles"):
        load({"pool_profiles": "roundrobin,roundrobin"}, env={})
    with pytest.raises(ConfigurationError, match="pool_size"):
        load({}, env={"HAPLANE_POOL_SIZE": "-1"})
