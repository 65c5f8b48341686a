"""What HAProxy 2.6 does with server slots, cookies and options: the facts docs/haproxy-notes.md reports,
kept true by tests (so an HAProxy upgrade that changes them fails here, not in production)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hx_support import StartHAProxy, backends, base_config, free_port, http_get

from haplane.haproxy.check import check_config

pytestmark = pytest.mark.integration

FILL = ["set server b/s1 addr {host} port {port}", "set server b/s1 state ready"]
# check-gated fill: leave maintenance as drain (no load-balanced traffic), force health down, then ready
GATED = ["set server b/s1 addr {host} port {port}", "set server b/s1 state drain", "set server b/s1 health down",
         "set server b/s1 state ready"]


def slot_backend(default_server: str, extra: str = "", live: tuple[str, int] | None = None) -> str:
    live_line = f"    server s0 {live[0]}:{live[1]} check\n" if live else ""
    return (f"backend b\n    balance roundrobin\n    option httpchk GET /health\n{extra}"
            f"    default-server {default_server}\n{live_line}    server s1 127.0.0.1:1 disabled check\n")


async def test_filled_slot_is_up_at_once(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    hp = await start_haproxy(base_config(str(state_dir), port, slot_backend("inter 2s rise 2 fall 2")))
    async with backends(("app", "127.0.0.2")) as (app,):
        t0 = time.perf_counter()
        await hp.runtime.run_checked([c.format(host="127.0.0.2", port=app.port) for c in FILL])
        s1 = (await hp.runtime.servers_state("b"))[0]
        assert s1.op_name == "UP" and s1.check_status_name == "INI"  # up before any check ran
        r = await http_get(port)
        assert r.status == 200 and r.server == "app"
        assert time.perf_counter() - t0 < 0.25  # typically ~2 ms
        assert app.health_requests == 0  # served before the first health check


async def test_filled_slot_to_a_dead_port_is_up_too(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    hp = await start_haproxy(base_config(str(state_dir), port, slot_backend("inter 2s rise 2 fall 2")))
    dead = free_port("127.0.0.2")
    await hp.runtime.run_checked([c.format(host="127.0.0.2", port=dead) for c in FILL])
    assert (await hp.runtime.servers_state("b"))[0].op_name == "UP"  # until checks say otherwise


async def test_redispatch_hides_a_dead_slot_from_clients(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    async with backends(("live", "127.0.0.2")) as (live,):
        hp = await start_haproxy(base_config(str(state_dir), port, slot_backend(
            "inter 2s fastinter 100ms downinter 1s rise 2 fall 2", extra="    option redispatch 1\n    retries 2\n",
            live=("127.0.0.2", live.port))))
        dead = free_port("127.0.0.3")
        await hp.runtime.run_checked([c.format(host="127.0.0.3", port=dead) for c in FILL])
        t0 = time.perf_counter()
        codes = [(await http_get(port)).status for _ in range(10)]
        assert codes == [200] * 10 and time.perf_counter() - t0 < 1.0  # no turn-around delay either
        rows = {r.svname: r for r in await hp.runtime.stat() if r.pxname == "b"}
        assert rows["s1"].wredis >= 1  # the dead slot was tried, and the request redispatched


async def test_without_redispatch_a_dead_slot_costs_retries_then_503(start_haproxy: StartHAProxy,
                                                                    state_dir: Path) -> None:
    port = free_port()
    async with backends(("live", "127.0.0.2")) as (live,):
        hp = await start_haproxy(base_config(str(state_dir), port, slot_backend(
            "inter 2s rise 2 fall 2", extra="    retries 1\n    timeout connect 100ms\n",
            live=("127.0.0.2", live.port))))
        dead = free_port("127.0.0.3")
        await hp.runtime.run_checked([c.format(host="127.0.0.3", port=dead) for c in FILL])
        codes = [(await http_get(port)).status for _ in range(4)]
        assert 503 in codes and 200 in codes  # roundrobin sends every other request to the dead slot


async def test_observe_layer4_marks_a_dead_slot_down_on_first_failure(start_haproxy: StartHAProxy,
                                                                     state_dir: Path) -> None:
    port = free_port()
    async with backends(("live", "127.0.0.2")) as (live,):
        hp = await start_haproxy(base_config(str(state_dir), port, slot_backend(
            "inter 2s fastinter 100ms downinter 1s rise 2 fall 2 observe layer4 error-limit 1 on-error mark-down",
            extra="    option redispatch 1\n    retries 2\n    timeout connect 100ms\n",
            live=("127.0.0.2", live.port))))
        dead = free_port("127.0.0.3")
        await hp.runtime.run_checked([c.format(host="127.0.0.3", port=dead) for c in FILL])
        codes = [(await http_get(port)).status for _ in range(6)]
        assert codes == [200] * 6
        assert {s.name: s.op_name for s in await hp.runtime.servers_state("b")}["s1"] == "DOWN"


async def test_check_gated_fill_waits_for_the_first_check(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    hp = await start_haproxy(base_config(str(state_dir), port, slot_backend(
        "inter 300ms fastinter 20ms downinter 20ms rise 1 fall 2")))
    async with backends(("app", "127.0.0.2")) as (app,):
        dead = free_port("127.0.0.3")
        await hp.runtime.run_checked([c.format(host="127.0.0.2", port=app.port) for c in GATED])
        s1 = (await hp.runtime.servers_state("b"))[0]
        assert s1.op_name == "DOWN" and s1.admin_name == "ready"  # enabled, but no traffic before a check
        t0 = time.perf_counter()
        while (await http_get(port)).status != 200:
            assert time.perf_counter() - t0 < 2.0
            await asyncio.sleep(0.01)
        assert app.health_requests >= 1  # a check passed first
        # a dead target never comes up
        await hp.runtime.run_checked(["set server b/s1 state maint"] +
                                     [c.format(host="127.0.0.3", port=dead) for c in GATED])
        await asyncio.sleep(0.7)
        assert (await hp.runtime.servers_state("b"))[0].op_name == "DOWN"
        assert (await http_get(port)).status == 503


async def test_dynamic_cookie_follows_the_address(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    body = ("backend b\n    balance roundrobin\n    cookie SRV insert indirect nocache dynamic\n"
            "    dynamic-cookie-key s3cr3t\n" + "".join(f"    server s{i} 127.0.0.1:1 disabled\n" for i in (1, 2, 3)))
    hp = await start_haproxy(base_config(str(state_dir), port, body))
    async with backends(("A", "127.0.0.2"), ("B", "127.0.0.3"), ("C", "127.0.0.4")) as (a, b, c):
        await hp.runtime.run_checked([f"set server b/s1 addr 127.0.0.2 port {a.port}", "set server b/s1 state ready",
                                      f"set server b/s2 addr 127.0.0.3 port {b.port}", "set server b/s2 state ready"])
        first = await http_get(port)
        cookie = first.headers["set-cookie"].split(";")[0]
        assert cookie.startswith("SRV=") and len(cookie) == 4 + 16  # a 64-bit hash of key + address + port
        sticky = {(await http_get(port, headers={"Cookie": cookie})).server for _ in range(5)}
        assert sticky == {first.server}
        before = {r.svname: r.cookie for r in await hp.runtime.stat() if r.pxname == "b"}
        slot = "s1" if first.server == "A" else "s2"
        await hp.runtime.run_checked([f"set server b/{slot} addr 127.0.0.4 port {c.port}"])
        after = {r.svname: r.cookie for r in await hp.runtime.stat() if r.pxname == "b"}
        assert after[slot] != before[slot]  # recomputed from the new address
        moved = await http_get(port, headers={"Cookie": cookie})
        assert moved.server != "C" and "set-cookie" in moved.headers  # the old cookie no longer matches: rebalanced


async def test_static_slot_cookie_follows_the_slot(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    body = ("backend b\n    balance roundrobin\n    cookie SRV insert indirect nocache\n"
            + "".join(f"    server s{i} 127.0.0.1:1 disabled cookie s{i}\n" for i in (1, 2)))
    hp = await start_haproxy(base_config(str(state_dir), port, body))
    async with backends(("A", "127.0.0.2"), ("B", "127.0.0.3"), ("C", "127.0.0.4")) as (a, b, c):
        await hp.runtime.run_checked([f"set server b/s1 addr 127.0.0.2 port {a.port}", "set server b/s1 state ready",
                                      f"set server b/s2 addr 127.0.0.3 port {b.port}", "set server b/s2 state ready"])
        sticky = {(await http_get(port, headers={"Cookie": "SRV=s1"})).server for _ in range(4)}
        assert sticky == {"A"}
        await hp.runtime.run_checked([f"set server b/s1 addr 127.0.0.4 port {c.port}"])
        assert (await http_get(port, headers={"Cookie": "SRV=s1"})).server == "C"  # the slot's new tenant


async def test_options_and_globals_exist_in_this_haproxy(haproxy: str) -> None:
    cfg = """global
    hard-stop-after 30s
    mworker-max-reloads 50
    noreuseport
    close-spread-time 5s
defaults
    mode http
    timeout client 1s
    timeout server 1s
    timeout connect 1s
    option idle-close-on-response
frontend f
    bind 127.0.0.1:1
    use_backend %[req.hdr(host),host_only,map_str(/dev/null)]
    default_backend b
backend b
    cookie SRV insert indirect nocache dynamic
    dynamic-cookie-key k
    option redispatch 1
    server-template s 1-3 127.0.0.1:1 disabled check observe layer4 error-limit 1 on-error mark-down
"""
    r = await check_config(cfg, haproxy)
    assert r.ok, r.messages
