"""The Runtime API client, the parsers and ``haproxy -c`` against a real HAProxy 2.6 on loopback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hx_support import StartHAProxy, backends, base_config, free_port, http_get

from haplane.errors import ConfigCheckFailed, ConfigurationError, RuntimeCommandError
from haplane.haproxy.check import check_config, check_rendered, require_valid

pytestmark = pytest.mark.integration

SLOTS = """backend b
    balance roundrobin
    option redispatch 1
    retries 2
    option httpchk GET /health
    default-server inter 2s fastinter 100ms downinter 1s rise 2 fall 2 check
    server s1 127.0.0.1:1 disabled
    server s2 127.0.0.1:1 disabled
    server-template t 1-2 127.0.0.1:1 disabled
"""


async def test_batch_over_one_connection_with_per_command_results(start_haproxy: StartHAProxy,
                                                                 state_dir: Path) -> None:
    port = free_port()
    hp = await start_haproxy(base_config(str(state_dir), port, SLOTS))
    answers = await hp.runtime.run([
        "set server b/s1 weight 7",
        "set server b/nope weight 1",
        "set server b/s1 weight abc",
        "show servers state b",
        "bogus command",
        "set server b/t2 weight 3",
    ])
    assert [a.ok for a in answers] == [True, False, False, True, False, True]
    assert answers[1].error == "No such server."
    assert answers[2].error == "Empty weight string empty or preceded by garbage"
    assert answers[4].error is not None and answers[4].error.startswith("Unknown command")
    states = {s.name: s for s in await hp.runtime.servers_state("b")}
    assert states["s1"].uweight == 7 and states["t2"].uweight == 3  # the batch went on after the refusals
    with pytest.raises(RuntimeCommandError) as err:
        await hp.runtime.run_checked(["set server b/s1 weight 2", "set server nope/s1 weight 1"])
    assert err.value.command == "set server nope/s1 weight 1" and err.value.message == "No such backend."


async def test_set_server_fills_a_slot_and_routes(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    hp = await start_haproxy(base_config(str(state_dir), port, SLOTS))
    async with backends(("app1", "127.0.0.2"), ("app2", "127.0.0.3")) as (a1, a2):
        assert (await http_get(port)).status == 503  # every slot free
        t0 = time.perf_counter()
        await hp.runtime.set_server("b", "s1", addr="127.0.0.2", port=a1.port, weight=10, state="ready")
        await hp.runtime.set_server("b", "t1", addr="127.0.0.3", port=a2.port, weight=10, state="ready")
        first = await http_get(port)
        elapsed = time.perf_counter() - t0
        assert first.status == 200 and elapsed < 0.5
        seen = {(await http_get(port)).server for _ in range(6)}
        assert seen == {"app1", "app2"}

        states = {s.name: s for s in await hp.runtime.servers_state("b")}
        s1, t1, s2 = states["s1"], states["t1"], states["s2"]
        assert (s1.addr, s1.port, s1.uweight, s1.iweight) == ("127.0.0.2", a1.port, 10, 1)
        assert s1.up and s1.routable and not s1.maint and s1.config_disabled
        assert (t1.addr, t1.port) == ("127.0.0.3", a2.port)
        assert s2.maint and not s2.up and (s2.addr, s2.port) == ("127.0.0.1", 1)

        # drain: no new load-balanced traffic; maint: none at all
        await hp.runtime.set_server("b", "t1", state="drain")
        assert {(await http_get(port)).server for _ in range(4)} == {"app1"}
        assert {s.name: s.admin_name for s in await hp.runtime.servers_state("b")}["t1"] == "drain"
        await hp.runtime.set_server("b", "t1", state="maint")
        await hp.runtime.set_server("b", "s1", weight=0)
        assert (await http_get(port)).status == 503

        rows = {r.svname: r for r in await hp.runtime.stat() if r.pxname == "b"}
        assert rows["s1"].stot >= 3 and rows["s1"].hrsp_2xx >= 3 and rows["t1"].status == "MAINT"
        assert rows["BACKEND"].type == "backend" and rows["BACKEND"].hrsp_5xx >= 1
        info = await hp.runtime.info()
        assert info.pid == hp.worker_pid and info.version.startswith("2.")


async def test_map_ops_route_by_host_with_or_without_port(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    hosts = f"{state_dir}/hosts.map"
    async with backends(("A", "127.0.0.2"), ("B", "127.0.0.3"), ("DEFAULT", "127.0.0.4")) as (a, b, d):
        body = (f"backend ba\n    server s 127.0.0.2:{a.port}\nbackend bb\n    server s 127.0.0.3:{b.port}\n"
                f"backend b\n    server s 127.0.0.4:{d.port}\n")
        rule = f"    use_backend %[req.hdr(host),host_only,map({hosts})]"
        hp = await start_haproxy(base_config(str(state_dir), port, body, frontend_extra=rule),
                                 {hosts: "a.example.com ba\n"})

        async def route(host: str) -> str | None:
            return (await http_get(port, headers={"Host": host})).server

        assert await route("a.example.com") == "A"
        assert await route("A.Example.COM:8080") == "A"  # host_only drops the port and lower-cases
        assert await route("b.example.com") == "DEFAULT"  # no entry: the rule is skipped
        await hp.runtime.add_map(hosts, "b.example.com", "bb")
        assert await route("b.example.com:443") == "B"
        await hp.runtime.set_map(hosts, "b.example.com", "ba")
        assert await route("b.example.com") == "A"
        assert await hp.runtime.show_map(hosts) == {"a.example.com": "ba", "b.example.com": "ba"}
        await hp.runtime.del_map(hosts, "b.example.com")
        assert await route("b.example.com") == "DEFAULT"
        await hp.runtime.put_map(hosts, "c.example.com", "bb")  # not there: added
        await hp.runtime.put_map(hosts, "c.example.com", "ba")  # there: set
        assert await route("c.example.com") == "A"
        assert hosts in await hp.runtime.maps()
        with pytest.raises(RuntimeCommandError, match="Key not found"):
            await hp.runtime.del_map(hosts, "nope.example.com")


async def test_many_commands_in_one_batch(start_haproxy: StartHAProxy, state_dir: Path) -> None:
    port = free_port()
    servers = "\n".join(f"    server s{i} 127.0.0.1:1 disabled" for i in range(1, 201))
    hp = await start_haproxy(base_config(str(state_dir), port, f"backend b\n{servers}\n"))
    cmds = [f"set server b/s{i} addr 127.0.0.{2 + i % 200} port {1000 + i}" for i in range(1, 201)]
    cmds += [f"set server b/s{i} weight {i % 257}" for i in range(1, 201)]
    answers = await hp.runtime.run(cmds)
    assert len(answers) == 400 and all(a.ok for a in answers)
    states = {s.name: s for s in await hp.runtime.servers_state("b")}
    assert len(states) == 200 and states["s150"].port == 1150 and states["s150"].uweight == 150


# --- haproxy -c --------------------------------------------------------------------------------------------

BAD = """global
    maxconn 100
defaults
    mode http
    timeout client 1s
    timeout server 1s
    timeout connect 1s
frontend f
    bind 127.0.0.1:1
    use_backend nope
    bogus_keyword 1
backend b
    server s 127.0.0.1:1 weight 999
"""


async def test_check_reports_messages_and_lines(haproxy: str, state_dir: Path) -> None:
    r = await check_config(BAD, haproxy)
    assert not r.ok and r.lines == (11, 13)
    assert any("[haproxy.cfg:11]" in m and "bogus_keyword" in m for m in r.messages)
    assert all(".haplane-check-" not in m for m in r.messages)  # the temp path is not shown
    path = state_dir / "bad.cfg"
    path.write_text(BAD)
    by_path = await check_config(path, haproxy)
    assert by_path.lines == (11, 13) and any(str(path) in m for m in by_path.messages)
    assert (await check_config(str(path), haproxy, is_path=True)).lines == (11, 13)
    with pytest.raises(ConfigCheckFailed) as err:
        await require_valid(BAD, haproxy)
    assert err.value.lines == [11, 13]


async def test_check_second_phase_errors_name_the_proxy_line(haproxy: str) -> None:
    text = BAD.replace("    bogus_keyword 1\n", "").replace("weight 999", "weight 1")
    r = await check_config(text, haproxy)
    assert not r.ok and r.lines == (8,)  # "Proxy 'f': unable to find required use_backend: 'nope'." → frontend f
    assert r.proxies == ("f",)
    assert any("unable to find required use_backend" in m for m in r.messages)


async def test_check_with_maps_does_not_touch_live_files(haproxy: str, state_dir: Path) -> None:
    from haplane.compose import ComposeOptions, compose
    from haplane.model.haproxy import Bind
    from haplane.model.records import Registry, Service
    from haplane.render import render_config

    live_map = state_dir / "hosts.map"  # does not exist: a check must not need it, nor create it
    config = compose(Registry((Service("b", "host", "a.example.com"),)),
                     ComposeOptions(binds=(Bind("127.0.0.1", 1),), host_map=str(live_map)))
    rendered = render_config(config)
    assert f"map({live_map})" in rendered.text and rendered.maps == {str(live_map): "a.example.com b\n"}
    r = await check_config(rendered.text, haproxy)
    assert not r.ok and any(str(live_map) in m for m in r.messages)  # the map file is missing
    r = await check_rendered(rendered, haproxy, directory=state_dir)
    assert r.ok, r.messages
    assert not live_map.exists() and [p.name for p in state_dir.iterdir()] == []


async def test_check_is_fast_and_missing_binary_is_a_configuration_error(haproxy: str) -> None:
    ok = BAD.replace("    use_backend nope\n    bogus_keyword 1\n", "").replace("weight 999", "weight 1")
    t0 = time.perf_counter()
    results = await asyncio.gather(*(check_config(ok, haproxy) for _ in range(5)))
    assert all(r.ok for r in results) and time.perf_counter() - t0 < 5
    with pytest.raises(ConfigurationError):
        await check_config(ok, "/nonexistent/haproxy")
