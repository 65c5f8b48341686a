"""The HAProxy control contract: the fake shipped for tests (``haplane.testing.FakeHAProxy``) and the real control
(``ManagedHAProxy`` over a real HAProxy 2.6) get the same rendered configs and the same typed operations, and
must report the same observations, accept and refuse the same operations, and carry the same runtime state across
a reload. Every test here runs against both; a difference is a bug in the fake (or a change in HAProxy).

To put another control through the suite, add it to ``CONTROLS`` and to the ``control`` fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from haplane.compose import ComposeOptions, compose
from haplane.errors import HAProxyUnavailable
from haplane.haproxy.process import control_globals
from haplane.model.change import Change
from haplane.model.haproxy import Bind, Globals
from haplane.model.observed import SlotObs
from haplane.model.ops import MapAdd, MapDel, MapSet, RuntimeOp, SetAddress, SetState, SetWeight
from haplane.model.records import BackendSpec, Instance, Registry, Service
from haplane.render import Rendered, render_config
from haplane.testing import FakeHAProxy
from haplane.typing import HAProxyControl
from support.procs import free_port, release_dir, short_tmpdir

CONTROLS = [
    pytest.param("fake", id="fake"),
    pytest.param("haproxy", id="haproxy", marks=pytest.mark.integration),
]
POISON = "bogus-directive"  # the fake rejects lines holding this; HAProxy rejects the directive itself
C = Change("server-update", "contract", "contract test")
FREE = SlotObs("127.0.0.1", 1, 1, True, False)  # a free slot as rendered: in maintenance at 127.0.0.1:1


@dataclass
class Rig:
    control: HAProxyControl
    state_dir: Path
    port: int

    @property
    def map_path(self) -> str:
        return str(self.state_dir / "hosts.map")

    @property
    def path_map(self) -> str:
        return str(self.state_dir / "paths.map")

    def rendered(self, *instances: Instance, backends: tuple[BackendSpec, ...] = ()) -> Rendered:
        """The agent's config for services app (app.test) and web (web.test) with these instances."""
        cl = control_globals(self.state_dir, hard_stop_after="2s")
        options = ComposeOptions(binds=(Bind("127.0.0.1", self.port),), min_slots=4, host_map=self.map_path,
                                 path_map=self.path_map,
                                 globals=Globals(log_target=None, control_global=cl.global_lines,
                                                 control_defaults=cl.defaults_lines))
        services = (Service("app", "host", "app.test"), Service("web", "host", "web.test"))
        return render_config(compose(Registry(services, instances, (), backends), options))


@pytest.fixture(params=CONTROLS)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    state_dir = short_tmpdir("hc")
    control: HAProxyControl
    if request.param == "fake":
        control = FakeHAProxy(poison=(POISON,))
    else:
        from haplane.haproxy.control import ManagedHAProxy

        control = ManagedHAProxy(state_dir, request.getfixturevalue("haproxy_bin"))
    try:
        yield Rig(control, state_dir, free_port())
    finally:
        await control.stop()
        release_dir(state_dir)


def a1(**kw: object) -> Instance:
    return Instance("a1", "app", "127.0.0.2", 8080, weight=5, slot=1, **kw)  # type: ignore[arg-type]


async def test_start_serves_the_rendered_slots_and_maps(rig: Rig) -> None:
    await rig.control.start(rig.rendered(a1()))
    assert await rig.control.alive()
    assert await rig.control.servers(["app"]) == {"app": {
        "s1": SlotObs("127.0.0.2", 8080, 5, False, False), "s2": FREE, "s3": FREE, "s4": FREE}}
    assert set(await rig.control.servers()) == {"app", "web"}
    assert await rig.control.servers(["nope"]) == {}  # not in the running config: left out, no error
    assert await rig.control.maps([rig.map_path]) == {rig.map_path: {"app.test": "app", "web.test": "web"}}


async def test_operations_change_what_is_observed(rig: Rig) -> None:
    await rig.control.start(rig.rendered(a1()))
    ops: list[RuntimeOp] = [
        SetAddress("app", "s2", "127.0.0.3", 9000, C), SetWeight("app", "s2", 7, C), SetState("app", "s2", "ready", C),
        SetState("app", "s1", "drain", C), SetWeight("app", "s1", 0, C), SetState("app", "s3", "maint", C),
        MapSet(rig.map_path, "app.test", "web", C), MapAdd(rig.map_path, "new.test", "app", C),
        MapDel(rig.map_path, "web.test", C),
    ]
    results = await rig.control.execute(ops)
    assert [r.op for r in results] == ops
    assert [(r.ok, r.answer.strip()) for r in results if not r.ok] == []
    assert all(r.command for r in results)
    assert await rig.control.servers(["app"]) == {"app": {
        "s1": SlotObs("127.0.0.2", 8080, 0, False, True), "s2": SlotObs("127.0.0.3", 9000, 7, False, False),
        "s3": FREE, "s4": FREE}}
    assert await rig.control.maps([rig.map_path]) == {rig.map_path: {"app.test": "web", "new.test": "app"}}


async def test_operations_and_the_read_after_them(rig: Rig) -> None:
    """``execute_and_read``: the operations' results as ``execute`` gives them (a refusal attributed to its own
    operation), and the slots they left, as ``servers`` reads them (a backend HAProxy does not run left out)."""
    await rig.control.start(rig.rendered(a1()))
    ops: list[RuntimeOp] = [SetAddress("app", "s2", "127.0.0.3", 9000, C), SetWeight("app", "nope", 3, C),
                            SetWeight("app", "s2", 7, C), SetState("app", "s2", "ready", C)]
    results, after = await rig.control.execute_and_read(ops, ["app", "nope"])
    assert [r.op for r in results] == ops and [r.ok for r in results] == [True, False, True, True]
    assert results[1].answer
    assert after == {"app": {"s1": SlotObs("127.0.0.2", 8080, 5, False, False),
                             "s2": SlotObs("127.0.0.3", 9000, 7, False, False), "s3": FREE, "s4": FREE}}
    assert after == await rig.control.servers(["app"])
    assert await rig.control.execute_and_read([], ["web"]) == ([], await rig.control.servers(["web"]))


async def test_map_entries_are_read_key_by_key(rig: Rig) -> None:
    """The entries of some keys, exactly: a key the map lacks is left out, also where a prefix map holds a shorter
    key a request would find (``get map`` answers with that one); a map HAProxy does not load has none."""
    await rig.control.start(rig.rendered(a1()))
    await rig.control.execute([MapAdd(rig.map_path, "new.test", "web", C), MapAdd(rig.path_map, "/api/", "app", C)])
    other = str(rig.state_dir / "other.map")
    assert await rig.control.map_entries_of({
        rig.map_path: {"app.test", "new.test", "nope.test"}, rig.path_map: {"/api/", "/api/v2/", "/"}, other: {"k"},
    }) == {rig.map_path: {"app.test": "app", "new.test": "web"}, rig.path_map: {"/api/": "app"}, other: {}}
    await rig.control.execute([MapDel(rig.map_path, "new.test", C), MapSet(rig.path_map, "/api/", "web", C)])
    assert await rig.control.map_entries_of({rig.map_path: ["new.test"], rig.path_map: ["/api/"]}) == {
        rig.map_path: {}, rig.path_map: {"/api/": "web"}}


async def test_refused_operations_fail_alike_and_change_nothing(rig: Rig) -> None:
    await rig.control.start(rig.rendered(a1()))
    before_servers = await rig.control.servers()
    before_maps = await rig.control.maps([rig.map_path])
    refused: list[RuntimeOp] = [
        SetWeight("app", "nope", 3, C),  # HAProxy: No such server.
        SetWeight("nope", "s1", 3, C),  # No such backend.
        MapSet(rig.map_path, "missing.test", "app", C),  # entry not found.
        MapDel(rig.map_path, "missing.test", C),  # Key not found.
        MapAdd(str(rig.state_dir / "other.map"), "k.test", "app", C),  # Unknown map identifier.
        SetAddress("app", "s2", "app.example.com", 80, C),  # the adapter's builder: not an IP address, never sent
        SetWeight("app", "s2", 300, C),  # the builder: weight out of 0..256, never sent
        MapAdd(rig.map_path, "two words", "app", C),  # the builder: a map key is one word, never sent
    ]
    results = await rig.control.execute([*refused, SetWeight("app", "s1", 6, C)])
    assert [r.ok for r in results] == [False] * len(refused) + [True]
    assert all(r.answer for r in results[:-1])
    assert [r.command for r in results[-4:-1]] == ["", "", ""]  # refused before sending
    after = await rig.control.servers()
    assert after["app"]["s1"].weight == 6  # the batch went on after the refusals
    assert {b: {s: o for s, o in slots.items() if (b, s) != ("app", "s1")} for b, slots in after.items()} == {
        b: {s: o for s, o in slots.items() if (b, s) != ("app", "s1")} for b, slots in before_servers.items()}
    assert await rig.control.maps([rig.map_path]) == before_maps


async def test_reload_keeps_runtime_state_of_servers_the_config_leaves_in_place(rig: Rig) -> None:
    await rig.control.start(rig.rendered(a1()))
    reloads = await rig.control.reloads()
    await rig.control.execute([SetWeight("app", "s1", 9, C), SetState("app", "s1", "drain", C),
                               SetAddress("app", "s2", "127.0.0.3", 9000, C), SetState("app", "s2", "ready", C),
                               SetState("app", "s4", "ready", C)])
    # the new config leaves s1 where it is, puts an instance in s2 at another address, adds a service
    a2 = Instance("a2", "app", "127.0.0.4", 8080, weight=3, slot=2)
    await rig.control.reload(rig.rendered(a1(), a2, backends=(BackendSpec("extra"),)))
    assert await rig.control.reloads() == reloads + 1
    assert await rig.control.servers(["app", "extra"]) == {
        "app": {"s1": SlotObs("127.0.0.2", 8080, 9, False, True),  # kept: runtime weight and drain
                "s2": SlotObs("127.0.0.4", 8080, 3, False, False),  # moved by the config: the config wins whole
                "s3": FREE,
                "s4": SlotObs("127.0.0.1", 1, 1, False, False)}}  # left in place: its runtime state stays
    # (a backend without servers has no line in show servers state: "extra" is not reported)


async def test_check_reports_the_rejected_lines_and_changes_nothing(rig: Rig) -> None:
    good = rig.rendered(a1())
    await rig.control.start(good)
    bad = rig.rendered(a1(), backends=(BackendSpec("broken", natives=(f"{POISON} on",)),))
    verdict = await rig.control.check(bad)
    assert not verdict.ok and verdict.lines
    assert bad.owners(verdict.lines, verdict.proxies) == {"backend:broken"}
    assert (await rig.control.check(good)).ok
    assert set(await rig.control.servers()) == {"app", "web"}  # nothing in force changed


async def test_a_stopped_haproxy_is_unavailable(rig: Rig) -> None:
    await rig.control.start(rig.rendered(a1()))
    await rig.control.stop()
    assert not await rig.control.alive()
    with pytest.raises(HAProxyUnavailable):
        await rig.control.servers()


def _tls_rendered(rig: Rig, certs: tuple[object, ...]) -> Rendered:
    """The agent's config with HTTPS (the crt-list in the state directory) serving these certificates."""
    from dataclasses import replace

    from haplane.model.haproxy import EdgeTls
    from haplane.tls.crtlist import CertFiles

    files = CertFiles(rig.state_dir)
    files.ensure_default()
    base = rig.rendered()
    tls = EdgeTls((Bind("127.0.0.1", free_port()),), str(files.default_path), str(files.crt_list_path),
                  str(rig.state_dir / "acme.map"), str(rig.state_dir / "tls-policy.map"),
                  str(rig.state_dir / "hsts.map"))
    cfg = base.config
    frontends = tuple(replace(f, tls=tls) for f in cfg.frontends)
    maps = (*cfg.maps, (tls.acme_map, ""), (tls.policy_map, ""), (tls.hsts_map, ""))
    return render_config(replace(cfg, frontends=frontends, maps=maps, certificates=certs))  # type: ignore[arg-type]


async def test_certificates_put_replace_remove_and_refuse_alike(rig: Rig) -> None:
    import time

    from haplane.model.haproxy import ServedCert
    from haplane.model.ops import CertDel, CertPut
    from haplane.testing_tls import TestCA
    from haplane.tls.certs import parse_bundle
    from haplane.tls.crtlist import CertFiles

    ca = TestCA()
    files = CertFiles(rig.state_dir)
    b = {n: parse_bundle(c.chain_pem, c.key_pem, time.time())
         for n, c in (("a", ca.issue(["a.test"])), ("a2", ca.issue(["a.test"])), ("b", ca.issue(["b.test"])))}
    served_a = ServedCert("a", files.path_of("a"), b["a"].pem, b["a"].info.sha1, b["a"].info.hosts)
    rendered = _tls_rendered(rig, (served_a,))
    await rig.control.start(rendered)
    lst = str(files.crt_list_path)
    assert await rig.control.certificates(lst) == {files.path_of("a"): b["a"].info.sha1}
    results = await rig.control.execute([
        CertPut("b", files.path_of("b"), lst, b["b"].pem, C),
        CertPut("a", files.path_of("a"), lst, b["a2"].pem, C),
        CertPut("x", files.path_of("x"), lst, b["a"].chain_pem + b["b"].key_pem, C),  # a key of another cert
    ])
    assert [r.ok for r in results] == [True, True, False]
    assert await rig.control.certificates(lst) == {files.path_of("a"): b["a2"].info.sha1,
                                                   files.path_of("b"): b["b"].info.sha1}
    assert await rig.control.certificates(lst, [files.path_of("b"), files.path_of("x")]) == {
        files.path_of("b"): b["b"].info.sha1}
    results = await rig.control.execute([CertDel("b", files.path_of("b"), lst, C),
                                         CertDel("b", files.path_of("b"), lst, C)])  # gone already: not an error
    assert [r.ok for r in results] == [True, True]
    assert await rig.control.certificates(lst) == {files.path_of("a"): b["a2"].info.sha1}


async def test_an_exit_is_reported_and_a_stop_is_not(rig: Rig) -> None:
    """``on_exit`` callbacks run when HAProxy dies (a SIGKILL of the master here), never for a stop asked for;
    ``restart_from_last_good`` brings back the last config started."""
    import asyncio
    import os
    import signal

    exits: list[str] = []
    rig.control.on_exit(lambda: exits.append("exit"))
    await rig.control.start(rig.rendered(a1()))
    if isinstance(rig.control, FakeHAProxy):
        rig.control.kill()
    else:
        os.kill(rig.control.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    for _ in range(200):
        if exits:
            break
        await asyncio.sleep(0.01)
    assert exits == ["exit"] and not await rig.control.alive()
    await rig.control.restart_from_last_good()
    assert (await rig.control.servers())["app"]["s1"] == SlotObs("127.0.0.2", 8080, 5, False, False)
    await rig.control.stop()
    await asyncio.sleep(0.1)
    assert exits == ["exit"]
