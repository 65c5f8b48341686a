"""The agent with a real HAProxy: membership without reloads, one reload per structural change, bad configs
never loaded, a killed HAProxy healed, weights ramped, drained servers left alone."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from haplane.model.records import Instance, Service

from .conftest import Backend, agent_rig, free_port, new_backend

pytestmark = pytest.mark.integration


def inst(iid: str, b: Backend, **kw: object) -> Instance:
    return Instance(iid, "app", b.address, b.port, **kw)  # type: ignore[arg-type]


async def test_membership_changes_apply_without_reload(tmp_path: Path, backends: list[Backend]) -> None:
    async with agent_rig(tmp_path) as rig:
        await rig.reg.put_service(Service("app", "host", "app.test"))
        await rig.settled()
        await rig.until_status("app.test", 503)  # the service exists, no instance yet
        reloads = await rig.reloads()
        bs = [new_backend(backends, f"b{i}") for i in range(3)]
        for i, b in enumerate(bs):
            await rig.reg.put_instance(inst(f"i{i}", b))
        await rig.until_status("app.test", 200)
        await asyncio.sleep(0.1)
        seen = Counter([(await rig.get("app.test")).text for _ in range(30)])
        assert set(seen) == {f"backend={b.name}" for b in bs}
        # remove one, move another to a new address
        await rig.reg.delete_instance("app", "i0")
        moved = new_backend(backends, "moved")
        await rig.reg.put_instance(inst("i1", moved))
        await asyncio.sleep(0.2)
        seen = Counter([(await rig.get("app.test")).text for _ in range(30)])
        assert set(seen) == {"backend=moved", "backend=b2"}
        assert await rig.reloads() == reloads  # HAProxy's own counter: no reload for membership


async def test_structural_change_reloads_exactly_once(tmp_path: Path, backends: list[Backend]) -> None:
    # no pools: the new service is the structural change (with pools it takes a spare, tests/.../test_pools.py)
    async with agent_rig(tmp_path, reload_interval=0.5, pool_size=0) as rig:
        b = new_backend(backends, "web")
        before = await rig.reloads()
        await rig.reg.put_service(Service("web", "path", "/web"))
        await rig.reg.put_instance(Instance("w1", "web", b.address, b.port))
        r = await rig.until_status("any.test", 200, path="/web/x")
        assert r.text == "backend=web"
        await asyncio.sleep(1.0)  # nothing else pending: no second reload
        assert await rig.reloads() == before + 1


@pytest.mark.parametrize("gap", [0.0, 0.05, 0.3])
async def test_a_new_service_and_its_first_instance_cost_one_reload(tmp_path: Path, backends: list[Backend],
                                                                    gap: float) -> None:
    """Written one after the other, ``gap`` apart: the instance is in the reload's config, or (arriving during or
    after the reload) goes into a slot of the new backend through the Runtime API; never a second reload. (No
    pools here: with them the service takes a spare and no reload at all, tests/integration/agent/test_pools.py.)"""
    async with agent_rig(tmp_path, reload_interval=1.0, pool_size=0) as rig:
        await rig.reg.put_service(Service("old", "host", "old.test"))
        await rig.settled()
        await asyncio.sleep(1.0)  # the last reload is a reload_interval ago: the next one may start at once
        b = new_backend(backends, "web")
        before = await rig.reloads()
        await rig.reg.put_service(Service("web", "host", "web.test"))
        await asyncio.sleep(gap)
        await rig.reg.put_instance(Instance("w1", "web", b.address, b.port))
        r = await rig.until_status("web.test", 200)
        assert r.text == "backend=web"
        await rig.settled()
        await asyncio.sleep(1.2)  # a second reload would come a reload_interval after the first
        assert await rig.reloads() == before + 1


async def test_failing_check_keeps_the_old_config_serving(tmp_path: Path, backends: list[Backend]) -> None:
    bad_template = tmp_path / "bad.j2"
    async with agent_rig(tmp_path) as rig:
        b = new_backend(backends, "a")
        await rig.reg.put_service(Service("app", "host", "app.test"))
        await rig.reg.put_instance(inst("i1", b))
        await rig.until_status("app.test", 200)
        cfg_before = Path(rig.bundle.control.config_path).read_text()
        reloads = await rig.reloads()
        # a backend whose natives HAProxy refuses: quarantined, the rest goes on
        from haplane.model.records import BackendSpec
        await rig.reg.put_backend(BackendSpec("broken", natives=("timeout server not-a-time",),
                                              members=()))
        await rig.reg.put_service(Service("web", "host", "web.test"))
        w = new_backend(backends, "w")
        await rig.reg.put_instance(Instance("w1", "web", w.address, w.port))
        await rig.until_status("web.test", 200)  # at once, in a pool's spare; the reload follows
        await rig.settled()
        assert "backend:broken" in rig.bundle.agent.status.quarantined
        cfg = Path(rig.bundle.control.config_path).read_text()
        assert "not-a-time" not in cfg and cfg != cfg_before
        assert await rig.reloads() == reloads + 1
        assert (await rig.get("app.test")).status_code == 200
    del bad_template


async def test_broken_operator_template_never_loads(tmp_path: Path, backends: list[Backend]) -> None:
    template = tmp_path / "op.j2"
    from haplane.render import default_template_text
    # the operator's template adds a directive HAProxy rejects to every backend
    template.write_text(default_template_text().replace("    balance {{ be.balance }}",
                                                        "    balance {{ be.balance }}\n    bogus-directive on"))
    store = f"sqlite:///{tmp_path}/registry.db"
    async with agent_rig(tmp_path, store=store) as rig:
        b = new_backend(backends, "a")
        await rig.reg.put_service(Service("app", "host", "app.test"))
        await rig.reg.put_instance(inst("i1", b))
        await rig.until_status("app.test", 200)
    # same state dir and store, now with the broken template: it never reaches HAProxy
    async with agent_rig(tmp_path, store=store, template=str(template)) as rig:
        assert "bogus-directive" not in Path(rig.bundle.control.config_path).read_text()
        assert "service:app" in rig.bundle.agent.status.quarantined
        events = [r for r in rig.bundle.activity.records if r.kind == "quarantine"]
        assert events and "bogus-directive" in " ".join(events[-1].detail["messages"])


@pytest.mark.parametrize("victim", ["master", "worker", "both"])
async def test_killed_haproxy_is_healed(tmp_path: Path, backends: list[Backend], victim: str) -> None:
    """SIGKILL of HAProxy's master, of its worker alone, or of both: the agent restarts it from the last good
    config at once (not at its next resync, an hour away here) and routing is back within a few seconds."""
    async with agent_rig(tmp_path) as rig:
        b = new_backend(backends, "a")
        await rig.reg.put_service(Service("app", "host", "app.test"))
        await rig.reg.put_instance(inst("i1", b))
        await rig.until_status("app.test", 200)
        await rig.settled()
        proc = rig.bundle.control.process  # type: ignore[attr-defined]
        master, worker = proc.pid, (await proc.master.show_proc()).worker_pid
        assert master and worker
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for pid in {"master": [master], "worker": [worker], "both": [master, worker]}[victim]:
            os.kill(pid, signal.SIGKILL)
        await proc.exited.wait()  # the master is gone, whichever one was killed
        r = await rig.until_status("app.test", 200, timeout=5)
        took = loop.time() - t0
        assert r.text == "backend=a"
        assert proc.pid not in (None, master)  # a new master, not the old one answering
        await rig.settled()
        restarts = [rec for rec in rig.bundle.activity.records if rec.kind == "restart"]
        assert [rec.result for rec in restarts] == ["ok"], restarts
        # the bench (bench/bench_heal.py) measures the figure; this says only that it is not the resync's
        assert took < 5, took


async def test_haproxy_killed_while_the_store_cannot_be_read_is_healed_at_once(tmp_path: Path,
                                                                               backends: list[Backend]) -> None:
    """The store stops answering (closed under the running agent) and HAProxy's master is then SIGKILLed: the agent
    restarts HAProxy from the last good config at once and converges to the registry as it last read it (the
    service took a pool's spare through the Runtime API: the last good config does not route it), while it keeps
    retrying the store. Before, HAProxy stayed down until the store answered again."""
    async with agent_rig(tmp_path) as rig:
        b = new_backend(backends, "a")
        await rig.reg.put_service(Service("app", "host", "app.test"))
        await rig.reg.put_instance(inst("i1", b))
        await rig.until_status("app.test", 200)
        await rig.settled()
        agent = rig.bundle.agent
        await rig.bundle.store.close()  # every read and watch of the store fails from here on
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while agent.status.store_ok:
            assert loop.time() < deadline, "the agent did not see the store fail"
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.5)  # into a longer wait between the store's retries (0.2, 0.4, 0.8, 1.6 s...)
        proc = rig.bundle.control.process  # type: ignore[attr-defined]
        master = proc.pid
        t0 = loop.time()
        os.kill(master, signal.SIGKILL)
        await proc.exited.wait()
        r = await rig.until_status("app.test", 200, timeout=5)
        took = loop.time() - t0
        assert r.text == "backend=a"
        assert proc.pid not in (None, master)  # a new master, not the old one answering
        assert not agent.status.store_ok and agent.status.haproxy_ok
        restarts = [rec for rec in rig.bundle.activity.records if rec.kind == "restart"]
        assert [rec.result for rec in restarts] == ["ok"], restarts
        print(f"\nrouting back {took:.2f}s after the master's SIGKILL, the store unreadable")


async def test_weights_ramp_on_haproxy(tmp_path: Path, backends: list[Backend]) -> None:
    async with agent_rig(tmp_path, ramp_interval=0.3, ramp_step=4, ramp_min=1) as rig:
        b = new_backend(backends, "a")
        await rig.reg.put_service(Service("app", "host", "app.test"))
        await rig.settled()
        await rig.reg.put_instance(inst("i1", b, weight=9))
        await rig.until_status("app.test", 200)
        weights = []
        desired = rig.bundle.agent.desired
        assert desired is not None
        proxy = next(b.name for b in desired.backends if b.shown == "app")  # a pool's spare, as HAProxy knows it
        for _ in range(30):
            state = await rig.bundle.control.servers([proxy])
            weights.append(state[proxy]["s1"].weight)
            if weights[-1] == 9:
                break
            await asyncio.sleep(0.05)
        assert weights[0] == 1 and weights[-1] == 9
        assert 5 in weights  # the intermediate step was observed in HAProxy


async def test_drained_server_gets_no_new_requests(tmp_path: Path, backends: list[Backend]) -> None:
    async with agent_rig(tmp_path) as rig:
        a, b = new_backend(backends, "a"), new_backend(backends, "b")
        await rig.reg.put_service(Service("app", "host", "app.test"))
        await rig.reg.put_instance(inst("ia", a))
        await rig.reg.put_instance(inst("ib", b))
        await rig.until_status("app.test", 200)
        await rig.reg.put_instance(inst("ia", a, state="drain"))
        await asyncio.sleep(0.2)
        hits = a.hits
        seen = Counter([(await rig.get("app.test")).text for _ in range(40)])
        assert seen == Counter({"backend=b": 40})
        assert a.hits == hits


async def test_sticky_cookie_follows_the_instance(tmp_path: Path, backends: list[Backend]) -> None:
    async with agent_rig(tmp_path) as rig:
        a, b = new_backend(backends, "a"), new_backend(backends, "b")
        await rig.reg.put_service(Service("app", "host", "app.test", cookie="SRV"))
        await rig.reg.put_instance(inst("ia", a))
        await rig.reg.put_instance(inst("ib", b))
        first = await rig.until_status("app.test", 200)
        cookie = first.cookies.get("SRV")
        assert cookie, first.headers
        rig.client.cookies.clear()  # from here on, send the cookie only where the test says so
        seen = {(await rig.get("app.test", headers={"Host": "app.test", "Cookie": f"SRV={cookie}"})).text
                for _ in range(20)}
        assert seen == {first.text}  # every request with the cookie lands on the same instance
        unstuck = set()
        for _ in range(20):
            unstuck.add((await rig.get("app.test")).text)
            rig.client.cookies.clear()
        assert unstuck == {"backend=a", "backend=b"}  # without it, both share the load


async def test_attached_to_an_operator_run_haproxy(tmp_path: Path, backends: list[Backend]) -> None:
    """The operator runs HAProxy (here: started by hand from a minimal config); haplane only writes the
    config and talks to the sockets it was given."""
    from haplane.haproxy.process import HAProxyProcess, control_globals

    run_dir = tmp_path / "state"
    cl = control_globals(run_dir)
    initial = "global\n" + "".join(f"    {x}\n" for x in cl.global_lines) + (
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
        + "".join(f"    {x}\n" for x in cl.defaults_lines)
        + f"frontend placeholder\n    bind 127.0.0.1:{free_port()}\n")
    operator = HAProxyProcess(run_dir)
    await operator.start(initial)
    try:
        async with agent_rig(tmp_path, admin_socket=str(run_dir / "admin.sock"),
                             master_socket=str(run_dir / "master.sock")) as rig:
            b = new_backend(backends, "a")
            await rig.reg.put_service(Service("app", "host", "app.test"))
            await rig.reg.put_instance(inst("i1", b))
            r = await rig.until_status("app.test", 200)
            assert r.text == "backend=a"
            assert operator.running and operator.starts == 1  # reloaded, never restarted
    finally:
        await operator.stop()
