"""HAProxyProcess and the master CLI against a real HAProxy 2.6: start, confirmed reloads, a refused reload,
death of the worker or the master and the restart from the last good config, server state across reloads."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from hx_support import StartHAProxy, backends, base_config, free_port, http_get

from haplane.errors import HAProxyUnavailable, ReloadFailed
from haplane.haproxy.process import HAProxyProcess

pytestmark = pytest.mark.integration


def slot_servers(fills: dict[str, tuple[str, int]] | None = None) -> dict[tuple[str, str], tuple[str, int | None]]:
    """What ``slots_backend(fills)`` declares, as render hands it over (``Rendered.servers``)."""
    return {("b", f"s{i}"): (fills or {}).get(f"s{i}", ("127.0.0.1", 1)) for i in range(1, 5)}


def slots_backend(fills: dict[str, tuple[str, int]] | None = None, *, extra: str = "") -> str:
    """backend b with slots s1..s4; ``fills`` renders a slot at an address (as the renderer does for slots
    that hold an instance), the others stay free (127.0.0.1:1 disabled)."""
    lines = []
    for i in range(1, 5):
        name = f"s{i}"
        if fills and name in fills:
            host, port = fills[name]
            lines.append(f"    server {name} {host}:{port}")
        else:
            lines.append(f"    server {name} 127.0.0.1:1 disabled")
    return "backend b\n    balance roundrobin\n    default-server check inter 2s\n" + extra + "\n".join(lines) + "\n"


async def test_reload_confirmed_and_counted_once(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    hp = await start_haproxy(base_config(str(state_dir), port, slots_backend()))
    before = await hp.master.show_proc()
    assert before.reloads == 0 and before.worker_pid == hp.worker_pid and before.master_pid == hp.pid
    after = await hp.reload(base_config(str(state_dir), port, slots_backend(extra="    timeout server 4s\n")))
    assert after.reloads == before.reloads + 1 and after.failed_reloads == 0
    assert after.worker_pid not in before.worker_pids and after.master_pid == before.master_pid
    assert (await hp.runtime.info()).pid == after.worker_pid  # the new worker holds the admin socket
    assert (await hp.master.show_proc()).reloads == 1  # exactly once
    assert "timeout server 4s" in (state_dir / "haproxy.cfg.last-good").read_text()
    again = await hp.reload()  # same files
    assert again.reloads == 2 and hp.worker_pid == again.worker_pid


async def test_refused_reload_keeps_the_old_worker_and_restores_last_good(start_haproxy: StartHAProxy,
                                                                          state_dir: Path) -> None:
    port = free_port()
    good = base_config(str(state_dir), port, slots_backend())
    hp = await start_haproxy(good)
    worker = hp.worker_pid
    bad = good + "    bogus_keyword 1\n"  # unchecked on purpose: the master must refuse it
    with pytest.raises(ReloadFailed) as err:
        await hp.reload(bad)
    assert "refused the new configuration" in str(err.value)
    assert "bogus_keyword" in str(err.value)  # HAProxy's own ALERT line is carried
    proc = await hp.master.show_proc()
    assert proc.reload_failed and proc.reloads == 1 and proc.worker_pid == worker
    assert proc.workers[0].reloads == 1  # the worker survived one reload
    assert (state_dir / "haproxy.cfg").read_text() == good  # the last good is back on disk
    assert (await hp.runtime.info()).pid == worker  # and the old worker still serves
    ok = await hp.reload(good)
    assert ok.reloads == 2 and ok.failed_reloads == 0 and not ok.reload_failed and ok.worker_pid != worker


async def test_master_killed_during_a_reload_fails_it_at_once(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    """A reload whose master dies before it is confirmed fails as soon as the master exits (it used to poll the
    dead master until the reload timeout), and the last good config is back on disk for the restart."""
    port = free_port()
    good = base_config(str(state_dir), port, slots_backend())
    hp = await start_haproxy(good, reload_timeout=60)
    mark = len(hp.recent_output())
    reload = asyncio.create_task(hp.reload(base_config(str(state_dir), port, slots_backend(extra="    retries 1\n"))))
    for _ in range(1000):  # until the master says it reloads: the confirmation is under way
        if any("Reloading HAProxy" in ln for ln in hp.recent_output(mark)) or reload.done():
            break
        await asyncio.sleep(0.005)
    os.kill(hp.pid, signal.SIGKILL)  # type: ignore[arg-type]
    with pytest.raises(ReloadFailed, match="exited"):
        await reload
    assert (state_dir / "haproxy.cfg").read_text() == good


async def test_worker_killed_is_detected_and_restarted(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    exits: list[int] = []
    async with backends(("app", "127.0.0.2")) as (app,):
        hp = await start_haproxy(base_config(str(state_dir), port, slots_backend({"s1": ("127.0.0.2", app.port)})),
                                 on_exit=exits.append)
        assert (await http_get(port)).server == "app"
        assert hp.worker_pid is not None
        os.kill(hp.worker_pid, signal.SIGKILL)
        code = await asyncio.wait_for(hp.wait_exit(), 5)  # the master exits when its worker dies
        assert exits == [code] and not hp.running and not await hp.alive()
        with pytest.raises(HAProxyUnavailable):
            await hp.runtime.info()
        info = await hp.restart_from_last_good()
        assert hp.running and info.worker_pid == hp.worker_pid and hp.starts == 2
        assert (await http_get(port)).server == "app"


async def test_master_killed_is_detected_and_restarted(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    async with backends(("app", "127.0.0.2")) as (app,):
        hp = await start_haproxy(base_config(str(state_dir), port, slots_backend({"s1": ("127.0.0.2", app.port)})))
        old_master, old_worker = hp.pid, hp.worker_pid
        assert old_master is not None
        os.kill(old_master, signal.SIGKILL)
        await asyncio.wait_for(hp.exited.wait(), 5)
        info = await hp.restart_from_last_good()  # waits for the orphaned worker to free the port
        assert info.master_pid != old_master and info.worker_pid != old_worker
        assert (await http_get(port)).server == "app"


async def test_start_failure_reports_haproxy_alerts(haproxy: str, state_dir: Path) -> None:
    hp = HAProxyProcess(state_dir, haproxy, start_timeout=5)
    port = free_port()
    with pytest.raises(HAProxyUnavailable, match="bogus_keyword"):
        await hp.start(base_config(str(state_dir), port, slots_backend()) + "    bogus_keyword 1\n")
    assert not hp.running
    missing = HAProxyProcess(state_dir, "/nonexistent/haproxy")
    with pytest.raises(HAProxyUnavailable, match="cannot run"):
        await missing.start()


async def test_graceful_stop(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    hp = await start_haproxy(base_config(str(state_dir), port, slots_backend()))
    code = await hp.stop(graceful=True, timeout=5)
    assert code == 0 and not hp.running and hp.exited.is_set()
    assert not (await hp.alive())


async def test_server_state_carries_weight_drain_maint_over_reload(start_haproxy: StartHAProxy,
                                                                  state_dir: Path) -> None:
    port = free_port()
    async with backends(("A", "127.0.0.2"), ("B", "127.0.0.3"), ("C", "127.0.0.4")) as (a, b, c):
        hp = await start_haproxy(base_config(str(state_dir), port, slots_backend()))
        rt = hp.runtime
        await rt.set_server("b", "s1", addr="127.0.0.2", port=a.port, weight=7, state="ready")
        await rt.set_server("b", "s2", addr="127.0.0.3", port=b.port, weight=3, state="ready")
        await rt.set_server("b", "s2", state="drain")
        await rt.set_server("b", "s3", addr="127.0.0.4", port=c.port, weight=5, state="ready")
        await rt.set_server("b", "s3", state="maint")
        # the renderer writes the slots that hold an instance at their address (what compose desires);
        # s3 is re-pointed by the new config to another address: the config must win whole for it
        elsewhere = free_port("127.0.0.5")
        fills = {"s1": ("127.0.0.2", a.port), "s2": ("127.0.0.3", b.port), "s3": ("127.0.0.5", elsewhere)}
        cfg = base_config(str(state_dir), port, slots_backend(fills))
        await hp.reload(cfg, servers=slot_servers(fills))
        st = {s.name: s for s in await rt.servers_state("b")}
        assert (st["s1"].addr, st["s1"].port, st["s1"].uweight, st["s1"].admin_name) == ("127.0.0.2", a.port, 7,
                                                                                        "ready")
        assert (st["s2"].addr, st["s2"].port, st["s2"].uweight, st["s2"].admin_name) == ("127.0.0.3", b.port, 3,
                                                                                        "drain")
        assert (st["s3"].addr, st["s3"].port, st["s3"].uweight) == ("127.0.0.5", elsewhere, 1)  # no hybrid
        assert st["s3"].admin_name == "ready"  # the config's state, not the runtime maint
        assert st["s4"].admin_name == "maint" and (st["s4"].addr, st["s4"].port) == ("127.0.0.1", 1)
        assert {(await http_get(port)).server for _ in range(4)} == {"A"}  # s2 drains, s3 is down
        # maint carried too, when the config leaves the slot where it is
        await rt.set_server("b", "s1", state="maint")
        await hp.reload(cfg, servers=slot_servers(fills))
        assert {s.name: s.admin_name for s in await rt.servers_state("b")}["s1"] == "maint"


async def test_unfiltered_state_file_would_give_a_hybrid(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    """Documents the HAProxy 2.6 behaviour that filter_server_state exists for: an IP-literal server comes
    back from a reload with the config's address but the state file's port."""
    port = free_port()
    hp = await start_haproxy(base_config(str(state_dir), port, slots_backend()))
    await hp.runtime.set_server("b", "s1", addr="127.0.0.2", port=4567, state="ready")
    state = (await hp.runtime.execute(["show servers state"]))[0]
    await hp.files.write_server_state(state)  # what a naive reload does
    cfg = base_config(str(state_dir), port, slots_backend({"s1": ("127.0.0.9", 9)}))
    await hp.files.write_current(cfg)
    await hp.master.reload(before=await hp.master.show_proc())
    st = {s.name: s for s in await hp.runtime.servers_state("b")}
    assert (st["s1"].addr, st["s1"].port) == ("127.0.0.9", 4567)


async def test_noreuseport_keeps_the_port_to_itself_and_reloads_stay_seamless(start_haproxy: StartHAProxy,
                                                                               state_dir: Path) -> None:
    """With ``noreuseport`` (control_globals) nothing else can bind HAProxy's port, not even with SO_REUSEPORT,
    and reloads still hand the listening socket over: requests on fresh connections across five reloads are
    all answered."""
    import socket

    port = free_port()
    async with backends(("A", "127.0.0.2")) as (a,):
        hp = await start_haproxy(base_config(str(state_dir), port, slots_backend({"s1": ("127.0.0.2", a.port)})))
        assert "noreuseport" in (state_dir / "haproxy.cfg").read_text()
        with socket.socket() as intruder:
            intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with pytest.raises(OSError) as refused:
                intruder.bind(("127.0.0.1", port))
            assert refused.value.errno == 98  # EADDRINUSE
        answered: list[int] = []
        stop = asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                answered.append((await http_get(port)).status)

        task = asyncio.create_task(client())
        try:
            for i in range(5):
                await hp.reload(base_config(str(state_dir), port, slots_backend(
                    {"s1": ("127.0.0.2", a.port)}, extra=f"    timeout server {4 + i}s\n")))
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task  # a refused connection would raise here
        assert (await hp.master.show_proc()).reloads == 5
        assert len(answered) > 20 and set(answered) == {200}, answered


async def test_held_connection_follows_the_worker_across_reloads_and_restarts(start_haproxy: StartHAProxy,
                                                                            state_dir: Path) -> None:
    """The agent's held admin connection (``HAProxyProcess.held``) is one connection while the worker stays, and
    a new one to the new worker after a reload or a restart: an old worker soft-stopping still answers on a
    connection held open to it (its changes lost with it), and would linger until hard-stop-after for it."""
    port = free_port()
    hp = await start_haproxy(base_config(str(state_dir), port, slots_backend()))
    for _ in range(3):
        assert (await hp.held.info()).pid == hp.worker_pid
    assert hp.held.connections == 1
    old_worker = hp.worker_pid
    assert old_worker is not None
    await hp.reload(base_config(str(state_dir), port, slots_backend(extra="    timeout server 4s\n")))
    await hp.held.execute(["set server b/s1 weight 7"])
    assert (await hp.held.info()).pid == hp.worker_pid != old_worker  # the new worker took the change
    assert {s.name: s.uweight for s in await hp.runtime.servers_state("b")}["s1"] == 7
    for _ in range(200):  # the old worker is not kept soft-stopping by a connection of ours
        if not os.path.exists(f"/proc/{old_worker}"):
            break
        await asyncio.sleep(0.02)
    assert not os.path.exists(f"/proc/{old_worker}")
    before = hp.worker_pid
    await hp.restart_from_last_good()
    assert (await hp.held.info()).pid == hp.worker_pid != before
