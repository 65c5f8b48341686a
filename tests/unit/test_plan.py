"""plan(): membership through the Runtime API, reloads only for structure, ramps, drains, maps."""

from __future__ import annotations

import pytest

from haplane.compose import ComposeOptions, compose
from haplane.model.haproxy import Config
from haplane.model.records import Instance, Registry, Service
from haplane.plan import Policy, SlotMemory, SlotObs, plan, ramp_weight

NO_RAMP = Policy(ramp_interval=0, drain_timeout=0)


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
    assert p.ops == ()


def test_new_instance_is_runtime_only() -> None:
    before = compose(registry())
    after = compose(registry(inst("a")))
    assert before.structure_key() == after.structure_key()
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP)
    assert p.reload is None
    assert [o.command for o in p.ops] == [
        "set server app/s1 addr 127.0.0.2 port 8080",
        "set server app/s1 weight 10",
        "set server app/s1 state ready",
    ]
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
    assert [o.command for o in p.ops] == ["set server app/s1 state maint"]
    assert p.reload is None


def test_removal_drains_first_then_frees() -> None:
    policy = Policy(ramp_interval=0, drain_timeout=10)
    before = compose(registry(inst("a")))
    after = compose(registry())
    mem = {("app", "s1"): SlotMemory("a", 0.0, None, True)}
    obs = observed_of(before)
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, False, sessions=3)
    p1 = plan(after, obs, mem, before, 100.0, policy)
    assert [o.command for o in p1.ops] == ["set server app/s1 state drain"]
    assert p1.wake_at == pytest.approx(100.05)  # look again soon: no sessions left means free at once
    assert p1.wake_backends == {"app"}
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, True, sessions=2)
    p2 = plan(after, obs, p1.memory, before, 105.0, policy)
    assert p2.ops == ()  # still busy, before the deadline
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, True, sessions=0)
    p3 = plan(after, obs, p2.memory, before, 106.0, policy)
    assert [o.command for o in p3.ops] == ["set server app/s1 state maint"]


def test_replacement_waits_for_drain_of_previous_occupant() -> None:
    policy = Policy(ramp_interval=0, drain_timeout=10)
    before = compose(registry(inst("a")))
    after = compose(registry(inst("b", addr="127.0.0.3", slot=1)))
    mem = {("app", "s1"): SlotMemory("a", 0.0, None, True)}
    obs = observed_of(before)
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, False, sessions=1)
    p1 = plan(after, obs, mem, before, 0.0, policy)
    assert [o.command for o in p1.ops] == ["set server app/s1 state drain"]
    assert p1.waiting == ("app/s1",)
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 10, False, True, sessions=1)
    p2 = plan(after, obs, p1.memory, before, 11.0, policy)  # deadline passed
    assert p2.ops[0].command == "set server app/s1 addr 127.0.0.3 port 8080"


def test_ramp() -> None:
    policy = Policy(ramp_min=1, ramp_step=3, ramp_interval=10, drain_timeout=0)
    assert [ramp_weight(10, 0, t, policy) for t in (0, 9.9, 10, 20, 30, 40)] == [1, 1, 4, 7, 10, 10]
    before = compose(registry())
    after = compose(registry(inst("a")))
    p = plan(after, observed_of(before), {}, before, 0.0, policy)
    assert "set server app/s1 weight 1" in [o.command for o in p.ops]
    assert p.wake_at == 10.0
    obs = observed_of(before)
    obs["app"]["s1"] = SlotObs("127.0.0.2", 8080, 1, False, False)
    p2 = plan(after, obs, p.memory, before, 10.0, policy)
    assert [o.command for o in p2.ops] == ["set server app/s1 weight 4"]
    assert p2.ops[0].change.kind == "weight-ramp"


def test_weight_and_address_changes_and_admin_drain() -> None:
    cfg = compose(registry(inst("a")))
    mem = {("app", "s1"): SlotMemory("a", 0.0, None, True)}
    after = compose(registry(inst("a", addr="127.0.0.5", weight=20, state="drain")))
    p = plan(after, observed_of(cfg), mem, cfg, 1.0, NO_RAMP)
    assert [o.command for o in p.ops] == [
        "set server app/s1 addr 127.0.0.5 port 8080",
        "set server app/s1 weight 20",
        "set server app/s1 state drain",
    ]


def test_new_service_reloads_and_names_it() -> None:
    before = compose(registry(inst("a")))
    after = compose(Registry((Service("app", "host", "app.test"), Service("web", "host", "web.test")),
                             (inst("a"),)))
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP)
    assert p.reload is not None and "backend web added" in p.reload.reason


def test_slots_running_out_reloads() -> None:
    opts = ComposeOptions(min_slots=2)
    three = [inst("a", slot=1), inst("b", slot=2), inst("c", slot=3)]
    before = compose(registry(*three), opts)
    assert len(before.backends[0].servers) == 4  # 25 % headroom, rounded to a power of two
    after = compose(registry(*three, inst("d", slot=4)), opts)
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP)
    assert p.reload is not None and "slots 4 → 8" in p.reload.reason


def test_host_map_changes_are_runtime() -> None:
    opts = ComposeOptions(host_map="/s/hosts.map")
    svc = Service("app", "host", "app.test")
    before = compose(Registry((svc,)), opts)
    after = compose(Registry((Service("app", "host", "new.test"),)), opts)
    assert before.structure_key() == after.structure_key()
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP, maps_now={"/s/hosts.map": {"app.test": "app"}},
             map_paths={"/s/hosts.map": "/s/hosts.map"})
    assert [o.command for o in p.ops] == ["del map /s/hosts.map app.test", "add map /s/hosts.map new.test app"]
    assert p.reload is None


def test_plan_limited_to_touched_backends() -> None:
    before = compose(registry())
    after = compose(registry(inst("a")))
    p = plan(after, observed_of(before), {}, before, 0.0, NO_RAMP, backends={"other"})
    assert p.ops == ()
