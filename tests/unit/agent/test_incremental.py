"""A membership change costs work in proportion to what changed, not to the number of services.

Counted, not timed: an instance added to one service among many composes that service's backends alone, reads
HAProxy's state of that backend alone, plans that backend alone, and neither composes the whole config, nor
renders it, nor fingerprints its structure again, nor indexes its backends again (once per full composition).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest
from test_reconcile import running, until  # beside this file (pytest puts its folder on sys.path)

import haplane.agent.planning as planning
import haplane.agent.reconcile as reconcile
import haplane.compose as compose_module
import haplane.model.haproxy as haproxy_model
from haplane.agent.mirror import Mirror
from haplane.agent.nodes import model_hash
from haplane.agent.planning import Composer
from haplane.compose import ComposeOptions, compose, pool_profiles
from haplane.model.haproxy import Backend, Bind, Config, EdgeTls
from haplane.model.records import Instance, Registry, Service
from haplane.registry import RegistryStore
from haplane.store import keys
from haplane.store.base import Event, Put

SERVICES = 40


async def services(reg: RegistryStore) -> None:
    for n in range(SERVICES):
        await reg.put_service(Service(f"svc{n}", "host", f"svc{n}.test"))
        await reg.put_instance(Instance("i0", f"svc{n}", "127.0.0.2", 8000 + n))


class Counts:
    """Calls of the agent's whole-config steps and of its per-service ones, with what they were asked for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        self.composed: list[str] = []  # services whose backends were composed
        self.read: list[frozenset[str] | None] = []  # backends whose state was read (None: all)
        self.whole_maps: list[str] = []  # maps read whole (every entry)
        self.planned: list[frozenset[str] | None] = []
        self.monkeypatch = monkeypatch
        self.counted(planning, "compose", "compose")
        self.counted(reconcile, "render_config", "render")
        self.counted(Config, "_structure_key", "structure_key")
        self.counted(planning, "backends_of_service", "service_backends",
                     lambda args: self.composed.append(args[0].name))
        self.counted(planning, "plan", "plan",
                     lambda args, kw: self.planned.append(None if kw.get("backends") is None
                                                          else frozenset(kw["backends"])), with_kw=True)
        positions = Config._position

        def position(config: Config, name: str) -> int | None:
            if config._positions is None:
                self.calls["index"] += 1  # the index of backends built (a walk over every backend)
            return positions(config, name)

        monkeypatch.setattr(Config, "_position", position)

    def counted(self, owner: Any, name: str, label: str, note: Any = None, with_kw: bool = False) -> None:
        real = getattr(owner, name)

        def wrapper(*args: Any, **kw: Any) -> Any:
            self.calls[label] += 1
            if note is not None:
                note(args, kw) if with_kw else note(args)
            return real(*args, **kw)

        self.monkeypatch.setattr(owner, name, wrapper)

    def watch_reads(self, fake: Any) -> None:
        real = fake.servers

        async def servers(backends: Iterable[str] | None = None) -> Any:
            self.read.append(None if backends is None else frozenset(backends))
            return await real(backends)

        fake.servers = servers
        real_maps = fake.maps

        async def maps(paths: Iterable[str]) -> Any:
            paths = list(paths)
            self.whole_maps.extend(paths)
            return await real_maps(paths)

        fake.maps = maps

    def reset(self) -> None:
        self.calls.clear()
        self.composed.clear()
        self.read.clear()
        self.planned.clear()
        self.whole_maps.clear()


async def test_a_membership_change_touches_its_service_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(setup=services) as rig:
        await until(lambda: rig.agent.idle and rig.fake.reload_count == 0)
        # a first change after a full composition indexes that config's backends by name (once per config)
        await rig.reg.put_instance(Instance("i1", "svc3", "127.0.0.4", 9000))
        await until(lambda: rig.fake.slot("svc3", "s2").address == "127.0.0.4" and rig.agent.idle)
        counts = Counts(monkeypatch)
        counts.watch_reads(rig.fake)
        await rig.reg.put_instance(Instance("i1", "svc7", "127.0.0.3", 9000))
        await until(lambda: rig.fake.slot("svc7", "s2").address == "127.0.0.3" and rig.agent.idle)
        assert counts.composed == ["svc7"]  # its backends composed again, no other service's
        assert counts.read == [frozenset({"svc7"})]  # HAProxy's state of that backend alone
        assert counts.planned == [frozenset({"svc7"})]
        for whole in ("compose", "render", "structure_key", "index"):
            assert counts.calls[whole] == 0, (whole, dict(counts.calls))
        assert rig.fake.reload_count == 0

        counts.reset()  # and a removal, the same
        await rig.reg.delete_instance("svc7", "i0")
        await until(lambda: rig.fake.slot("svc7", "s1").maint and rig.agent.idle)
        assert counts.composed == ["svc7"] and counts.read == [frozenset({"svc7"})]
        assert not any(counts.calls[whole] for whole in ("compose", "render", "structure_key", "index"))


class Trips:
    """The agent's calls to the fake's reads and operations, as the round trips a real control would make:
    ``servers``, ``execute`` and ``execute_and_read`` (one round trip for the operations and the read after)."""

    def __init__(self, fake: Any) -> None:
        self.calls: list[str] = []
        inner = False
        for name in ("servers", "execute", "execute_and_read"):
            real = getattr(fake, name)

            def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
                async def call() -> Any:
                    nonlocal inner
                    if not inner:
                        self.calls.append(_name)
                    outer, inner = inner, True
                    try:
                        return await _real(*args)
                    finally:
                        inner = outer
                return call()

            setattr(fake, name, counted)


async def test_a_membership_change_is_one_round_trip() -> None:
    """Counted: after a full pass read every backend, an instance added, changed or removed is planned on what
    HAProxy last said of its backend and costs ONE round trip (its operations and the read of that backend after
    them), not a read and then the operations."""
    async with running(setup=services) as rig:
        await until(lambda: rig.agent.idle and rig.fake.reload_count == 0)
        trips = Trips(rig.fake)
        await rig.reg.put_instance(Instance("i1", "svc7", "127.0.0.3", 9000))
        await until(lambda: rig.fake.slot("svc7", "s2").address == "127.0.0.3" and rig.agent.idle)
        assert trips.calls == ["execute_and_read"]
        trips.calls.clear()
        await rig.reg.put_instance(Instance("i1", "svc7", "127.0.0.3", 9000, weight=20))
        await until(lambda: rig.fake.slot("svc7", "s2").weight == 20 and rig.agent.idle)
        await rig.reg.delete_instance("svc7", "i0")
        await until(lambda: rig.fake.slot("svc7", "s1").maint and rig.agent.idle)
        assert trips.calls == ["execute_and_read", "execute_and_read"]


async def test_haproxy_changed_behind_the_agents_back_is_put_right_by_the_next_change() -> None:
    """What HAProxy answers after a change's operations is checked against what they should have left: a slot
    changed by hand since it was last read (here put in maintenance) is set right at once, not at the next resync."""
    async with running(setup=services) as rig:
        await until(lambda: rig.agent.idle and rig.fake.reload_count == 0)
        rig.fake.backends["svc7"]["s1"] = replace(rig.fake.slot("svc7", "s1"), maint=True)  # by hand
        trips = Trips(rig.fake)
        await rig.reg.put_instance(Instance("i1", "svc7", "127.0.0.3", 9000))
        await until(lambda: rig.fake.slot("svc7", "s2").address == "127.0.0.3" and rig.agent.idle)
        assert not rig.fake.slot("svc7", "s1").maint  # i0 in service again
        assert trips.calls == ["execute_and_read", "execute"]
        assert rig.fake.reload_count == 0


async def test_a_refusal_in_one_round_trip_is_held_not_retried() -> None:
    """A membership change planned on what was seen, refused by HAProxy (here an address the Runtime API cannot
    take, never sent): the instance is held, once, and not sent again; what was seen is forgotten and a full pass
    re-reads HAProxy."""
    async with running(setup=services) as rig:
        await until(lambda: rig.agent.idle and rig.fake.reload_count == 0)
        trips = Trips(rig.fake)
        await rig.reg.put_instance(Instance("bad", "svc7", "localhost", 9000))
        await until(lambda: "instance:svc7/bad" in rig.agent.status.held and rig.agent.idle)
        assert trips.calls[0] == "execute_and_read"
        await asyncio.sleep(0.2)
        assert sum(1 for op in rig.fake.ops if getattr(op, "address", None) == "localhost") == 1
        assert sum(1 for r in rig.activity.records if r.result == "held") == 1
        await rig.reg.put_instance(Instance("i1", "svc7", "127.0.0.3", 9000))  # the rest goes on
        await until(lambda: any(o.address == "127.0.0.3" and not o.maint for o in rig.fake.backends["svc7"].values())
                    and rig.agent.idle)


async def test_a_new_service_composes_the_whole_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counting can fail: a structural change does compose, render and fingerprint the whole config."""
    async with running(setup=services) as rig:
        await until(lambda: rig.agent.idle)
        counts = Counts(monkeypatch)
        await rig.reg.put_service(Service("fresh", "host", "fresh.test"))
        await until(lambda: rig.fake.reload_count == 1 and rig.agent.idle)
        assert counts.calls["compose"] >= 1 and counts.calls["render"] >= 1
        assert counts.calls["structure_key"] >= 1


WHOLE = ("compose", "render", "structure_key", "index", "registry", "collisions")


def count_whole(monkeypatch: pytest.MonkeyPatch) -> Counts:
    """``Counts`` and the other walks over every record: the mirror's registry built (every record in one value)
    and the names every record claims."""
    counts = Counts(monkeypatch)
    counts.counted(Mirror, "registry", "registry")
    counts.counted(compose_module, "collisions", "collisions")
    return counts


def afresh(rig: Any) -> Config:
    """The config the agent's records compose to from scratch, with the spares it holds (what the incremental
    path must equal)."""
    agent = rig.agent
    return compose(agent.mirror.registry(), agent.compose_options())


async def test_a_new_service_taking_a_spare_walks_no_record_but_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new service that takes a pool's spare (no reload) composes its spare and its map entry alone: neither the
    whole config, nor the placement over every service, nor the names of every record (it composed the whole
    config once, and walked every record's names, before: issue 14)."""
    async with running(setup=services, pool_size=4) as rig:
        await until(lambda: rig.agent.idle)
        await rig.reg.put_instance(Instance("i1", "svc3", "127.0.0.4", 9000))  # the index of backends, once
        await until(lambda: rig.fake.slot("svc3", "s2").address == "127.0.0.4" and rig.agent.idle)
        counts = count_whole(monkeypatch)
        counts.watch_reads(rig.fake)
        await rig.reg.put_service(Service("fresh", "host", "fresh.test"))
        await until(lambda: rig.fake.map_entries["/s/hosts.map"].get("fresh.test", "").startswith("_pool")
                    and rig.agent.idle)
        spare = rig.fake.map_entries["/s/hosts.map"]["fresh.test"]
        assert rig.fake.reload_count == 0  # it took a spare through the runtime
        for whole in WHOLE:
            assert counts.calls[whole] == 0, (whole, dict(counts.calls))
        assert counts.composed == ["fresh"]
        assert counts.read == [frozenset({spare})] and counts.planned == [frozenset({spare})]
        assert counts.whole_maps == []  # its map entry read alone, not the host map's thousands
        assert rig.agent.desired == afresh(rig)  # what composing everything again gives

        counts.reset()  # its first instance: a membership change, as incremental as ever
        await rig.reg.put_instance(Instance("i0", "fresh", "127.0.0.9", 9100))
        await until(lambda: rig.fake.slot(spare, "s1").address == "127.0.0.9" and rig.agent.idle)
        assert not any(counts.calls[whole] for whole in WHOLE), dict(counts.calls)
        assert rig.fake.reload_count == 0
        assert rig.agent.desired == afresh(rig)

        counts.reset()  # deleted: its map entry removed and its spare's slots freed, alone
        await rig.reg.delete_service("fresh")
        await until(lambda: "fresh.test" not in rig.fake.map_entries["/s/hosts.map"]
                    and rig.fake.slot(spare, "s1").maint and rig.agent.idle)
        assert not any(counts.calls[whole] for whole in WHOLE), dict(counts.calls)
        assert counts.planned == [frozenset({spare})] and rig.fake.reload_count == 0
        assert counts.whole_maps == []
        assert rig.agent.desired == afresh(rig)


async def test_a_route_moved_on_its_own_backend_is_a_map_entry_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service record that changes its host (its backend stays as it is): the map entries, and nothing whole."""
    async with running(setup=services, path_map="/s/paths.map") as rig:
        await until(lambda: rig.agent.idle)
        await rig.reg.put_instance(Instance("i1", "svc3", "127.0.0.4", 9000))
        await until(lambda: rig.fake.slot("svc3", "s2").address == "127.0.0.4" and rig.agent.idle)
        counts = count_whole(monkeypatch)
        await rig.reg.put_service(Service("svc7", "host", "seven.test"))
        hosts = rig.fake.map_entries["/s/hosts.map"]
        await until(lambda: hosts.get("seven.test") == "svc7" and rig.agent.idle)
        assert "svc7.test" not in hosts and hosts["svc8.test"] == "svc8"
        for whole in WHOLE:
            assert counts.calls[whole] == 0, (whole, dict(counts.calls))
        assert rig.fake.reload_count == 0
        assert rig.agent.desired == afresh(rig)

        counts.reset()  # from a host to a path prefix: one map's entry out, the other's in
        await rig.reg.put_service(Service("svc7", "path", "/seven"))
        await until(lambda: rig.fake.map_entries["/s/paths.map"].get("/seven/") == "svc7" and rig.agent.idle)
        assert "seven.test" not in rig.fake.map_entries["/s/hosts.map"]
        assert not any(counts.calls[whole] for whole in WHOLE), dict(counts.calls)
        assert rig.agent.desired == afresh(rig)


async def test_a_service_record_that_needs_the_whole_config_still_composes_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The counting can fail, and the shortcut knows its limits: a host another service holds (a collision, over
    every record), and a service no pool fits (a backend of its own: a checked reload) compose the whole config."""
    async with running(setup=services, pool_size=4) as rig:
        await until(lambda: rig.agent.idle)
        counts = count_whole(monkeypatch)
        thief = Service("thief", "host", "svc5.test")  # written past the registry's checks (it would refuse it)
        await rig.reg.store.txn([], [Put(keys.service_key("thief"), json.dumps(thief.to_dict()))])
        await until(lambda: rig.agent.idle and counts.calls["collisions"] >= 1)
        assert counts.calls["compose"] >= 1
        assert rig.fake.map_entries["/s/hosts.map"]["svc5.test"] == "svc5"  # the first holder keeps its host
        assert rig.agent.desired == afresh(rig)

        counts.reset()
        reloads = rig.fake.reload_count
        await rig.reg.put_service(Service("hashed", "host", "hashed.test", balance="source"))
        await until(lambda: rig.fake.reload_count == reloads + 1 and rig.agent.idle)
        assert counts.calls["compose"] >= 1 and counts.calls["render"] >= 1
        assert rig.fake.map_entries["/s/hosts.map"]["hashed.test"] == "hashed"


def _registry(extra: tuple[Instance, ...] = ()) -> Registry:
    return Registry(tuple(Service(f"svc{n}", "host", f"svc{n}.test") for n in range(SERVICES)),
                    tuple(Instance("i0", f"svc{n}", "127.0.0.2", 8000 + n) for n in range(SERVICES)) + extra,
                    (), (), 1)


def test_the_routing_key_is_carried_over_through_a_membership_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node reporter asks for the routing key every second: after a membership change it is updated from the
    replaced backend alone, and equals the key of the same config computed afresh."""
    opts = ComposeOptions(min_slots=4, host_map="/s/hosts.map")
    before = compose(_registry(), opts)
    key = model_hash(before)
    moved = compose(_registry((Instance("i1", "svc7", "127.0.0.3", 9000),)), opts).backend("svc7")
    assert moved is not None
    digests = Counter[str]()
    real = haproxy_model._routing_digest

    def counted(be: Backend) -> int:
        digests[be.name] += 1
        return real(be)

    monkeypatch.setattr(haproxy_model, "_routing_digest", counted)
    after = before.with_backends({"svc7": moved})
    assert model_hash(after) != key
    assert digests == {"svc7": 2}  # the old backend out, the new one in; no other backend digested
    afresh = Config(after.frontends, after.backends, after.globals, after.maps, after.certificates)
    assert model_hash(afresh) == model_hash(after)
    back = after.with_backends({"svc7": before.backend("svc7")})  # type: ignore[dict-item]
    assert model_hash(back) == key


def test_nodes_on_other_ports_have_the_same_routing_key() -> None:
    here = compose(_registry(), ComposeOptions(min_slots=4, host_map="/a/hosts.map", binds=(Bind("*", 80),)))
    there = compose(_registry(), ComposeOptions(min_slots=4, host_map="/b/hosts.map", binds=(Bind("10.0.0.1", 8080),)))
    assert model_hash(here) == model_hash(there)
    other = compose(_registry((Instance("i1", "svc3", "127.0.0.3", 9000),)), ComposeOptions(min_slots=4))
    assert model_hash(other) != model_hash(here)


def _put(rev: int, record: Service | Instance) -> Event:
    key = (keys.service_key(record.name) if isinstance(record, Service)
           else keys.instance_key(record.service, record.id))
    return Event("put", key, json.dumps(record.to_dict()), rev)


def test_a_service_record_change_composes_what_the_whole_config_would() -> None:
    """The shortcut's config equals the whole config composed afresh, through new services taking spares (host
    and path), routes and HTTPS policies moved, and a service gone from its spare; and it declines what needs the
    whole config (a backend to remove, a service no pool fits), leaving its spares as they were."""
    tls = EdgeTls((Bind("*", 443),), "/c/default.pem", "/c/list", "/m/acme.map", "/m/policy.map", "/m/hsts.map")
    opts = ComposeOptions(min_slots=4, host_map="/m/hosts.map", path_map="/m/paths.map", tls=tls,
                          pools=pool_profiles(["roundrobin"]), pool_size=4)
    mirror = Mirror()
    rev = 1
    for n in range(6):
        mirror.apply([_put(rev, Service(f"svc{n}", "host", f"svc{n}.test", tls="redirect" if n == 2 else "on")),
                      _put(rev + 1, Instance("i0", f"svc{n}", "127.0.0.2", 8000 + n))])
        rev += 2
    composer = Composer(mirror, opts)
    applied = composer.full(frozenset())  # what HAProxy runs: every service in a backend of its own
    desired = composer.full(frozenset(), applied)
    model_hash(desired)  # its routing key, carried over from now on (nodes report it every second)
    none: frozenset[str] = frozenset()
    changes: list[Service | str] = [
        Service("new1", "host", "new1.test", tls="redirect", hsts=300),  # takes a spare, its policy and HSTS
        Service("api", "path", "/api"),  # a path prefix, in a spare
        Service("svc1", "host", "one.test", tls="off"),  # its own backend, another host and policy
        Service("svc2", "host", "svc2.test"),  # its redirect dropped
        Service("new1", "host", "new1.test", tls="redirect"),  # its HSTS dropped
        "new1",  # gone: its spare free again (and still counted as taken until the reload)
        Service("svc3", "path", "/three"),  # from a host to a path prefix
    ]
    for change in changes:
        rev += 1
        if isinstance(change, str):
            touched = mirror.apply([Event("delete", keys.service_key(change), None, rev)])
        else:
            touched = mirror.apply([_put(rev, change)])
        got = composer.service_change(desired, applied, touched, none)
        assert got is not None, change
        desired, backends, map_keys = got
        whole = compose(mirror.registry(), composer.options_for(none))
        assert desired == whole, change
        assert model_hash(desired) == model_hash(whole), change
        assert desired.structure_key() == applied.structure_key()  # nothing to reload
        assert len(backends) == 1 and map_keys
    assert dict(composer.pooled) == {"_pool1_1": "new1", "_pool1_2": "api"}
    assert dict(desired.maps)["/m/hosts.map"].count("\n") == 5  # svc0..svc2, svc4, svc5; not new1, not svc3

    for needs_all in (Service("hashed", "host", "hashed.test", balance="source"), "svc4"):
        rev += 1
        if isinstance(needs_all, str):
            touched = mirror.apply([Event("delete", keys.service_key(needs_all), None, rev)])
        else:
            touched = mirror.apply([_put(rev, needs_all)])
        assert composer.service_change(desired, applied, touched, none) is None, needs_all
    assert dict(composer.pooled) == {"_pool1_1": "new1", "_pool1_2": "api"}

    composer.full(none)  # a config to reload with (every service in a backend of its own): not what HAProxy runs
    rev += 1
    touched = mirror.apply([_put(rev, Service("late", "host", "late.test"))])
    assert composer.service_change(desired, applied, touched, none) is None
