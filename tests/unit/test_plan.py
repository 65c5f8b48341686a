"""plan(): membership through the Runtime API, reloads only for structure, ramps, drains, maps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest

from haplane.compose import ComposeOptions, compose
from haplane.model.change import Change
from haplane.model.haproxy import Config
from haplane.model.observed import SlotObs
from haplane.model.ops import MapAdd, MapDel, RuntimeOp, SetAddress, SetState, SetWeight
from haplane.model.records import Instance, Registry, Service
from haplane.plan import Policy, SlotMemory, plan, ramp_weight

NO_RAMP = Policy(ramp_interval=0, drain_timeout=0)
_ = Change("server-add", "", "")  # stands for any Change in the expected operations


def bare(ops: Iterable[RuntimeOp]) -> list[RuntimeOp]:
    """The operations without their Change (asserted apart where it matters)."""
    return [replace(o, change=_) for o in ops]


def registry(*instances: Instance, services: tuple[Service, ...] = (Service("app", "host", "app.test"),)
             ) -> Registry:
    return Registry(services, instances)


def inst(iid: str, addr: str = "127.0.0.2", port: int = 8080, slot: int = 1, weight: int = 10,
         state: str = "ready") -> Instance:
    return Instance(iid, "app", addr, port, weight=weight, slot=slot, state=state)  # type: ignore[arg-type]


def observed_of(cfg: Config) -> dict[str, dict[str, SlotObs]]:
    """What HAProxy reports right after loading ``cfg``."""
    return {b.name: {s.name: SlotObs(s.address, s.port, s.weight, s.state == "maint", s.state == "drain")
                     for s in b.servers} for b in cfg.backends}


def test_first_plan_reloads() -> None:
    cfg = compose(registry(inst("a")))
    p = plan(cfg, {}, {}, None, 0.0, NO_RAMP)
    assert p.reload is not None and "first configuration" in p.reload.reason
    assert p.reload.causes[0].kind == "structure"
    assert p.ops == ()


def test_new_instance_is_runtime_only() -> None:
    before = compose(registry())
    after = compose(registry(inst("a")))
    assert before.structure_key() == after.structure_key()
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP)
    assert p.reload is None
    assert bare(p.ops) == [
        SetAddress("app", "s1", "127.0.0.2", 8080, _),
        SetWeight("app", "s1", 10, _),
        SetState("app", "s1", "ready", _),
    ]
    assert [o.change.kind for o in p.ops] == ["server-add"] * 3
    assert p.memory[("app", "s1")].instance == "a"


def test_nothing_to_do_when_haproxy_matches() -> None:
    cfg = compose(registry(inst("a")))
    p = plan(cfg, observed_of(cfg), {}, cfg, 0.0, NO_RAMP)
    assert p.empty


def test_removal_frees_the_slot_without_drain_policy() -> None:
    before = compose(registry(inst("a")))
    after = compose(registry())
    mem = {("app", "s1"): SlotMemory("a", 0.0, None, True)}
    p = plan(after, observed_of(before), mem, before, 5.0, NO_RAMP)
    assert bare(p.ops) == [SetState("app", "s1", "maint", _)]
    assert p.ops[0].change.kind == "server-remove"
    assert p.reload is None


def test_removal_drains_first_then_frees() -> None:
    policy = Policy(ramp_interval=0, drain_timeout=10)
    before = compose(registry(inst("a")))
    after = compose(registry())
    mem = {("app", "s1"): SlotMemory("a", 0.0, None, True)}
    obs = observed_of(before)
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, False, sessions=3)
    p1 = plan(after, obs, mem, before, 100.0, policy)
    assert bare(p1.ops) == [SetState("app", "s1", "drain", _)]
    assert p1.ops[0].change.kind == "server-drain"
    assert p1.wake_at == pytest.approx(100.05)  # look again soon: no sessions left means free at once
    assert p1.wake_backends == {"app"}
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, True, sessions=2)
    p2 = plan(after, obs, p1.memory, before, 105.0, policy)
    assert p2.ops == ()  # still busy, before the deadline
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, True, sessions=0)
    p3 = plan(after, obs, p2.memory, before, 106.0, policy)
    assert bare(p3.ops) == [SetState("app", "s1", "maint", _)]


def test_replacement_waits_for_drain_of_previous_occupant() -> None:
    policy = Policy(ramp_interval=0, drain_timeout=10)
    before = compose(registry(inst("a")))
    after = compose(registry(inst("b", addr="127.0.0.3", slot=1)))
    mem = {("app", "s1"): SlotMemory("a", 0.0, None, True)}
    obs = observed_of(before)
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, False, sessions=1)
    p1 = plan(after, obs, mem, before, 0.0, policy)
    assert bare(p1.ops) == [SetState("app", "s1", "drain", _)]
    assert p1.waiting == ("app/s1",)
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, True, sessions=1)
    p2 = plan(after, obs, p1.memory, before, 11.0, policy)  # deadline passed
    assert bare(p2.ops[:1]) == [SetAddress("app", "s1", "127.0.0.3", 8080, _)]


def test_ramp() -> None:
    policy = Policy(ramp_min=1, ramp_step=3, ramp_interval=10, drain_timeout=0)
    assert [ramp_weight(10, 0, t, policy) for t in (0, 9.9, 10, 20, 30, 40)] == [1, 1, 4, 7, 10, 10]
    before = compose(registry())
    after = compose(registry(inst("a")))
    p = plan(after, observed_of(before), {}, before, 0.0, policy)
    assert SetWeight("app", "s1", 1, _) in bare(p.ops)
    assert p.wake_at == 10.0
    obs = observed_of(before)
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 1, False, False)
    p2 = plan(after, obs, p.memory, before, 10.0, policy)
    assert bare(p2.ops) == [SetWeight("app", "s1", 4, _)]
    assert p2.ops[0].change.kind == "weight-ramp"


def test_weight_and_address_changes_and_admin_drain() -> None:
    cfg = compose(registry(inst("a")))
    mem = {("app", "s1"): SlotMemory("a", 0.0, None, True)}
    after = compose(registry(inst("a", addr="127.0.0.5", weight=20, state="drain")))
    p = plan(after, observed_of(cfg), mem, cfg, 1.0, NO_RAMP)
    assert bare(p.ops) == [
        SetAddress("app", "s1", "127.0.0.5", 8080, _),
        SetWeight("app", "s1", 20, _),
        SetState("app", "s1", "drain", _),
    ]
    assert [o.change.kind for o in p.ops] == ["server-update", "server-update", "server-state"]


def test_new_service_reloads_and_names_it() -> None:
    before = compose(registry(inst("a")))
    after = compose(Registry((Service("app", "host", "app.test"), Service("web", "host", "web.test")),
                             (inst("a"),)))
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP)
    assert p.reload is not None and "backend web added" in p.reload.reason
    assert [(c.kind, c.subject) for c in p.reload.causes] == [("backend-added", "backend web"),
                                                              ("frontend-changed", "frontend http")]


def test_slots_running_out_reloads() -> None:
    opts = ComposeOptions(min_slots=2)
    three = [inst("a", slot=1), inst("b", slot=2), inst("c", slot=3)]
    before = compose(registry(*three), opts)
    assert len(before.backends[0].servers) == 4  # 25 % headroom, rounded to a power of two
    after = compose(registry(*three, inst("d", slot=4)), opts)
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP)
    assert p.reload is not None and "slots 4 → 8" in p.reload.reason
    assert p.reload.causes[0].kind == "backend-slots"


def test_host_map_changes_are_runtime() -> None:
    opts = ComposeOptions(host_map="/s/hosts.map")
    svc = Service("app", "host", "app.test")
    before = compose(Registry((svc,)), opts)
    after = compose(Registry((Service("app", "host", "new.test"),)), opts)
    assert before.structure_key() == after.structure_key()
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP, maps_now={"/s/hosts.map": {"app.test": "app"}},
             map_paths={"/s/hosts.map": "/s/hosts.map"})
    assert bare(p.ops) == [MapDel("/s/hosts.map", "app.test", _), MapAdd("/s/hosts.map", "new.test", "app", _)]
    assert p.reload is None


def test_path_routes_are_map_entries_and_their_changes_are_runtime() -> None:
    opts = ComposeOptions(host_map="/s/hosts.map", path_map="/s/paths.map")
    services = (Service("api", "path", "/api"), Service("v2", "path", "/api/v2/"), Service("root", "path", "/"),
                Service("web", "host", "web.test"), Service("late", "path"))
    before = compose(Registry(services), opts)
    assert dict(before.maps)["/s/paths.map"] == "/ root\n/api/ api\n/api/v2/ v2\n"
    assert before.frontends[0].routes == (), "no ACL left for a path route"
    moved = (Service("api", "path", "/api"), Service("v2", "path", "/v2"), Service("root", "path", "/"),
             Service("web", "host", "web.test"), Service("late", "path", "/api/late"))
    after = compose(Registry(moved), opts)
    assert before.structure_key() == after.structure_key(), "a route added, moved or removed is no reload"
    have = {"/": "root", "/api/": "api", "/api/v2/": "v2"}
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP,
             maps_now={"/s/paths.map": have, "/s/hosts.map": {"web.test": "web"}},
             map_paths={"/s/paths.map": "/s/paths.map", "/s/hosts.map": "/s/hosts.map"})
    assert bare(p.ops) == [MapDel("/s/paths.map", "/api/v2/", _), MapAdd("/s/paths.map", "/api/late/", "late", _),
                           MapAdd("/s/paths.map", "/v2/", "v2", _)]
    assert p.reload is None


def test_two_prefixes_with_one_map_key_route_as_their_acls_would() -> None:
    """'/app' and '/app/' are the same map key: the one the ACL order put first ('/app/', the longer) keeps it."""
    opts = ComposeOptions(path_map="/s/paths.map")
    config = compose(Registry((Service("a", "path", "/app"), Service("b", "path", "/app/"))), opts)
    assert dict(config.maps)["/s/paths.map"] == "/app/ b\n"


def test_focus_fallbacks_cover_every_service_so_a_new_route_is_no_reload() -> None:
    opts = ComposeOptions(host_map="/s/hosts.map", path_map="/s/paths.map", focus_zones=frozenset({"a"}))
    before = compose(Registry((Service("api", "path"),)), opts)
    after = compose(Registry((Service("api", "path", "/api"),)), opts)
    assert before.frontends[0].fallbacks == (("api", "api_fallback"),)
    assert before.structure_key() == after.structure_key()


def test_plan_limited_to_touched_backends() -> None:
    before = compose(registry())
    after = compose(registry(inst("a")))
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP, backends={"other"})
    assert p.ops == ()
