"""The agent against the in-memory store and FakeHAProxy: what it sends, when it reloads, what it holds back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from haplane.agent.activity import Activity
from haplane.agent.reconcile import Agent
from haplane.agent.state import AgentOptions
from haplane.compose import ComposeOptions, pool_profiles
from haplane.model.records import Instance, Service
from haplane.plan import Policy
from haplane.registry import RegistryStore
from haplane.store import open_store
from haplane.testing import FakeHAProxy


@dataclass
class Rig:
    agent: Agent
    fake: FakeHAProxy
    reg: RegistryStore
    activity: Activity


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(poison: tuple[str, ...] = (), reload_interval: float = 0.05,
                  policy: Policy | None = None, setup: Callable[[RegistryStore], Awaitable[None]] | None = None,
                  reload_budget: int = 30, clock: Callable[[], float] | None = None, path_map: str | None = None,
                  pool_size: int = 0) -> AsyncIterator[Rig]:
    store = open_store("memory://")
    reg = RegistryStore(store)
    if setup:
        await setup(reg)
    fake = FakeHAProxy(poison)
    activity = Activity()
    pools = pool_profiles(["roundrobin"]) if pool_size else ()
    opts = AgentOptions(compose=ComposeOptions(min_slots=4, host_map="/s/hosts.map", path_map=path_map, pools=pools,
                                               pool_size=pool_size),
                        policy=policy or Policy(ramp_interval=0, drain_timeout=0),
                        reload_interval=reload_interval, reload_budget=reload_budget, coalesce=0.001,
                        resync_interval=3600)
    agent = Agent(store, fake, opts, activity, **({"clock": clock} if clock else {}))
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 3)
        yield Rig(agent, fake, reg, activity)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


async def app_service(reg: RegistryStore) -> None:
    await reg.put_service(Service("app", "host", "app.test"))


def inst(iid: str, addr: str = "127.0.0.2", port: int = 8080, **kw: object) -> Instance:
    return Instance(iid, "app", addr, port, **kw)  # type: ignore[arg-type]


async def test_starts_haproxy_with_the_registry() -> None:
    async def setup(reg: RegistryStore) -> None:
        await app_service(reg)
        await reg.put_instance(inst("a"))

    async with running(setup=setup) as rig:
        assert rig.fake.running
        s1 = rig.fake.slot("app", "s1")
        assert (s1.address, s1.port, s1.maint) == ("127.0.0.2", 8080, False)
        assert rig.fake.map_entries["/s/hosts.map"] == {"app.test": "app"}


async def test_membership_changes_use_runtime_api_only() -> None:
    async with running(setup=app_service) as rig:
        for n in range(3):
            await rig.reg.put_instance(inst(f"i{n}", addr=f"127.0.0.{n + 2}"))
        await until(lambda: not rig.fake.slot("app", "s3").maint)
        assert rig.fake.slot("app", "s2").address == "127.0.0.3"
        await rig.reg.delete_instance("app", "i0")
        await until(lambda: rig.fake.slot("app", "s1").maint)
        assert rig.fake.reload_count == 0
        kinds = {r.kind for r in rig.activity.records}
        assert {"server-add", "server-remove"} <= kinds


async def test_structural_burst_gives_one_reload() -> None:
    async with running(setup=app_service, reload_interval=0.3) as rig:
        for n in range(20):
            await rig.reg.put_service(Service(f"svc{n}", "host", f"s{n}.test"))
        await until(lambda: rig.fake.reload_count >= 1)
        await asyncio.sleep(0.5)
        assert rig.fake.reload_count in (1, 2)  # leading edge, then at most one trailing
        assert "backend svc19" in (rig.fake.config or "")


async def test_new_service_host_is_routed_through_the_map_without_waiting() -> None:
    async with running(setup=app_service) as rig:
        await rig.reg.put_service(Service("web", "host", "web.test"))
        await until(lambda: rig.fake.map_entries["/s/hosts.map"].get("web.test") == "web")
        assert rig.fake.reload_count == 1


async def test_rejected_service_is_quarantined_and_the_rest_applies() -> None:
    async with running(setup=app_service, poison=("poison.test",)) as rig:
        await rig.reg.put_service(Service("bad", "path", "/poison.test"))
        await rig.reg.put_service(Service("good", "path", "/good"))
        await until(lambda: "backend good" in (rig.fake.config or ""))
        assert "backend bad" not in (rig.fake.config or "")
        assert "service:bad" in rig.agent.status.quarantined
        assert any(r.kind == "quarantine" and r.subject == "service:bad" for r in rig.activity.records)
        # fixing the record releases it
        await rig.reg.put_service(Service("bad", "path", "/fixed"))
        await until(lambda: "backend bad" in (rig.fake.config or ""))
        assert "service:bad" not in rig.agent.status.quarantined


async def test_failed_reload_keeps_last_good() -> None:
    async with running(setup=app_service) as rig:
        before = rig.fake.config
        rig.fake.fail_next_reload = True
        await rig.reg.put_service(Service("web", "host", "web.test"))
        await until(lambda: any(r.kind == "reload-failed" for r in rig.activity.records))
        assert rig.fake.config == before


async def test_dead_haproxy_is_restarted() -> None:
    async with running(setup=app_service) as rig:
        rig.fake.kill()
        await rig.reg.put_instance(inst("a"))
        await until(lambda: rig.fake.running and not rig.fake.slot("app", "s1").maint)
        assert any(r.kind == "restart" for r in rig.activity.records)


async def test_haproxy_exit_is_healed_at_once_without_an_event() -> None:
    """The control reports the exit: the agent restarts HAProxy at once, not at its resync (an hour away)."""
    async with running(setup=app_service) as rig:
        await rig.reg.put_instance(inst("a"))
        await until(lambda: not rig.fake.slot("app", "s1").maint)
        rig.fake.kill()
        await until(lambda: rig.fake.running and not rig.fake.slot("app", "s1").maint, timeout=1)
        await until(lambda: rig.agent.idle)
        assert [r.result for r in rig.activity.records if r.kind == "restart"] == ["ok"]


async def test_failed_restart_is_tried_again() -> None:
    async with running(setup=app_service) as rig:
        last_good, rig.fake.last_good = rig.fake.last_good, None  # the first restart fails
        rig.fake.kill()
        await until(lambda: any(r.kind == "restart" and r.result == "failed" for r in rig.activity.records))
        assert not rig.fake.running and rig.agent.status.haproxy_ok is False
        rig.fake.last_good = last_good
        await until(lambda: rig.fake.running, timeout=2)
        await until(lambda: rig.agent.status.haproxy_ok)


async def test_weights_ramp() -> None:
    policy = Policy(ramp_min=1, ramp_step=5, ramp_interval=0.1, drain_timeout=0)
    async with running(setup=app_service, policy=policy) as rig:
        await rig.reg.put_instance(inst("a", weight=11))
        await until(lambda: not rig.fake.slot("app", "s1").maint)
        assert rig.fake.slot("app", "s1").weight == 1
        await until(lambda: rig.fake.slot("app", "s1").weight == 11, timeout=2)
        assert "set server app/s1 weight 6" in rig.fake.commands


async def test_drain_before_free() -> None:
    policy = Policy(ramp_interval=0, drain_timeout=0.3)

    async def setup(reg: RegistryStore) -> None:
        await app_service(reg)
        await reg.put_instance(inst("a"))

    async with running(setup=setup, policy=policy) as rig:
        rig.fake.set_sessions("app", "s1", 2)
        await rig.reg.delete_instance("app", "a")
        await until(lambda: rig.fake.slot("app", "s1").drain)
        assert not rig.fake.slot("app", "s1").maint
        await until(lambda: rig.fake.slot("app", "s1").maint, timeout=2)  # timeout reached


@pytest.mark.parametrize("n", [50])
async def test_many_instances_one_pass(n: int) -> None:
    async with running(setup=app_service) as rig:
        await rig.reg.replace_source("docker-a", [inst(f"c{i}", addr="127.0.0.2", port=9000 + i) for i in range(n)])
        await until(lambda: "app" in rig.fake.backends and len(rig.fake.backends["app"]) >= n
                    and not rig.fake.slot("app", f"s{n}").maint)
        ports = sorted(s.port for s in rig.fake.backends["app"].values() if not s.maint)
        assert ports == list(range(9000, 9000 + n))


async def test_the_reload_budget_holds_a_storm_back_but_never_a_runtime_change() -> None:
    """Budget 2 a minute, on a clock the test moves: two new services reload at once, the third waits (said once,
    as a ``reload-held`` record), an instance of a running service goes in through the runtime meanwhile, and the
    held reload happens once the minute has passed."""
    now = [1000.0]
    async with running(setup=app_service, reload_interval=0, reload_budget=2, clock=lambda: now[0]) as rig:
        await rig.reg.put_instance(inst("a"))
        await until(lambda: rig.agent.idle and rig.fake.slot("app", "s1").address == "127.0.0.2")
        for n in (1, 2):
            await rig.reg.put_service(Service(f"web{n}", "host", f"web{n}.test"))
            await until(lambda n=n: rig.fake.reload_count == n and rig.agent.idle)  # type: ignore[misc]
        now[0] += 10
        await rig.reg.put_service(Service("web3", "host", "web3.test"))
        await until(lambda: any(r.kind == "reload-held" for r in rig.activity.records))
        assert rig.agent.reload_pending is not None and rig.fake.reload_count == 2
        await rig.reg.put_instance(inst("b", "127.0.0.3"))  # runtime: not held back by the budget
        await until(lambda: rig.fake.slot("app", "s2").address == "127.0.0.3")
        await rig.reg.put_service(Service("web4", "host", "web4.test"))
        await asyncio.sleep(0.1)
        assert rig.fake.reload_count == 2
        held = [r for r in rig.activity.records if r.kind == "reload-held"]
        assert len(held) == 1 and held[0].result == "pending" and held[0].detail["wait_s"] == 50.0
        now[0] += 50  # the first reload leaves the window
        await rig.reg.put_instance(inst("c", "127.0.0.4"))  # anything that wakes the loop
        await until(lambda: rig.fake.reload_count == 3 and rig.agent.idle)
        assert rig.fake.config is not None and "web3" in rig.fake.config and "web4" in rig.fake.config, \
            "one reload took both"


async def test_a_route_moved_is_map_entries_alone_not_a_pass_over_every_backend() -> None:
    """A service's path moved (no reload): the path map changes, and HAProxy's servers are not read for every
    backend (among 1,000 services that pass cost half the time of the move)."""
    async def setup(reg: RegistryStore) -> None:
        for n in range(5):
            await reg.put_service(Service(f"s{n}", "path", f"/s{n}"))
            await reg.put_instance(Instance(f"i{n}", f"s{n}", f"127.0.0.{n + 2}", 8080))

    async with running(setup=setup, path_map="/s/paths.map") as rig:
        await until(lambda: rig.agent.idle and rig.fake.map_entries["/s/paths.map"].get("/s1/") == "s1")
        reads: list[object] = []
        servers = rig.fake.servers

        async def counted(backends: object = None) -> object:
            reads.append(None if backends is None else sorted(backends))  # type: ignore[call-overload]
            return await servers(backends)  # type: ignore[arg-type]

        rig.fake.servers = counted  # type: ignore[method-assign,assignment]
        await rig.reg.put_service(Service("s1", "path", "/moved"))
        await until(lambda: rig.fake.map_entries["/s/paths.map"].get("/moved/") == "s1" and rig.agent.idle)
        assert "/s1/" not in rig.fake.map_entries["/s/paths.map"] and rig.fake.reload_count == 0
        assert None not in reads, f"every backend was read: {reads}"


async def test_the_agent_stops_when_cancelled_as_an_event_arrives() -> None:
    """A cancel (haplane's shutdown) in the same turn as an event's arrival stops the agent: it is not dropped
    for the event (on Python 3.11 asyncio.wait_for did so, and the agent then waited for its next resync)."""
    store = open_store("memory://")
    fake = FakeHAProxy()
    opts = AgentOptions(compose=ComposeOptions(min_slots=4, host_map="/s/hosts.map"), coalesce=0.001,
                        resync_interval=3600)
    agent = Agent(store, fake, opts, Activity())
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 3)
        await until(lambda: agent.idle)
        await asyncio.sleep(0.01)  # the loop waits for its next event
        agent._events.put_nowait([])  # the event and the cancel land in the same turn of the event loop
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert task in done and task.cancelled(), "the agent ran on after it was cancelled"
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=2)
        await store.close()


async def test_haproxy_is_healed_while_the_store_cannot_be_read() -> None:
    """The store cannot be read and HAProxy dies meanwhile: the agent restarts it at once, converging to the
    registry as it last read it (the instance came through the Runtime API: the last good config has its slot in
    maint), instead of waiting, in its store retries, for the store to answer again; and it still retries the
    store, converging once it answers."""
    from haplane.errors import StoreUnavailable

    async with running(setup=app_service) as rig:
        await rig.reg.put_instance(inst("a"))
        await until(lambda: not rig.fake.slot("app", "s1").maint)
        store = rig.agent.store
        real_range = store.range
        tries: list[float] = []

        async def down(*_a: object, **_k: object) -> object:
            tries.append(asyncio.get_running_loop().time())
            raise StoreUnavailable("store down (test)")

        store.range = down  # type: ignore[method-assign]
        rig.agent._resync_requested = True  # as after a failed watch: a full resync, which cannot read the store
        rig.agent._events.put_nowait([])
        await until(lambda: not rig.agent.status.store_ok)
        await asyncio.sleep(1.5)  # into a longer wait between the store's retries (0.2, 0.4, 0.8, 1.6 s...)
        rig.fake.kill()
        # at once: not at the end of the wait (1.5 s away), let alone when the store answers
        await until(lambda: rig.fake.running and not rig.fake.slot("app", "s1").maint, timeout=1)
        assert not rig.agent.status.store_ok and rig.agent.status.haproxy_ok
        assert [r.kind for r in rig.activity.records if r.kind == "restart"] == ["restart"]
        before = len(tries)
        await until(lambda: len(tries) > before, timeout=3)  # the store is still retried
        await rig.reg.put_instance(inst("b", addr="127.0.0.3"))  # a change the agent cannot read yet
        store.range = real_range  # type: ignore[method-assign]
        # converged once the store answers (within its retries' longest wait, 5 s)
        await until(lambda: not rig.fake.slot("app", "s2").maint and rig.agent.status.store_ok, timeout=7)


async def test_a_pool_refill_waits_for_the_new_services_instance() -> None:
    """A new service takes half a pool's spares: the refill (a background reload) waits for the store to be quiet,
    so the instance written just after the service's record goes into the spare through the runtime first (it was
    started at once, and the instance waited for the whole reload: seconds at 1,000 services)."""
    async with running(setup=app_service, pool_size=2, reload_interval=0.3) as rig:
        await until(lambda: rig.agent.idle)
        await asyncio.sleep(0.4)  # a reload_interval since the start: a reload wanted now may start at once
        await rig.reg.put_service(Service("fresh", "host", "fresh.test"))
        await until(lambda: rig.fake.map_entries["/s/hosts.map"].get("fresh.test", "").startswith("_pool"))
        spare = rig.fake.map_entries["/s/hosts.map"]["fresh.test"]
        assert rig.agent.reload_pending is not None  # the pool runs low: a refill is wanted
        await rig.reg.put_instance(Instance("i0", "fresh", "127.0.0.9", 9100))
        await until(lambda: rig.fake.slot(spare, "s1").address == "127.0.0.9")
        assert rig.fake.reload_count == 0  # routed through the spare, before the refill
        await until(lambda: rig.fake.reload_count == 1 and rig.agent.idle)  # and the refill follows
        assert rig.fake.map_entries["/s/hosts.map"]["fresh.test"] == "fresh"
