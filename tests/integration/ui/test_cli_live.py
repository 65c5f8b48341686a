"""``haplane status``, ``plan`` and ``events`` as processes, against the state directory of a real agent driving a
real HAProxy (SQLite store, admin socket, events.jsonl), and against its API with --api."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.support.procs import MakeHttpBackend

from haplane.haproxy.runtime import RuntimeClient
from haplane.model.records import Instance, Service

from .conftest import READ, Haplane, running_haplane


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state/haplane.db"


async def web_with_two(hp: Haplane, http_backends: MakeHttpBackend) -> None:
    reg = hp.rig.reg
    await reg.put_service(Service("web", "host", "web.test"))
    await hp.rig.settled()
    b1, b2 = http_backends("w1"), http_backends("w2")
    await reg.put_instance(Instance("w-a", "web", b1.host, b1.port, weight=6, version="1.2", zone="z1"))
    await reg.put_instance(Instance("w-b", "web", b2.host, b2.port, version="1.2", zone="z2"))
    await hp.rig.until_status("web.test", 200)
    await hp.rig.settled()


async def test_status_local_and_remote(tmp_path: Path, http_backends: MakeHttpBackend) -> None:
    async with running_haplane(tmp_path, store=sqlite(tmp_path)) as hp:
        await web_with_two(hp, http_backends)
        code, out, err = await hp.cli("status", "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["live"] is True and doc["note"] is None
        (web,) = [b for b in doc["backends"] if b["name"] == "web"]
        by_inst = {s["instance"]: s for s in web["servers"]}
        assert by_inst["w-a"]["state"] == "up" and by_inst["w-a"]["weight"] == 6 and by_inst["w-a"]["zone"] == "z1"
        assert by_inst["w-b"]["health"] is not None
        assert {"match": "host", "value": "web.test", "backend": "web"} in doc["frontends"][0]["rules"]

        code, out, err = await hp.cli("status")
        assert code == 0, err
        assert "backend web" in out and "w-a" in out and "w-b" in out and "\033[" not in out  # no colour in a pipe
        line = next(ln for ln in out.splitlines() if "w-a" in ln)
        cells = line.split()
        assert (cells[3], cells[5]) == ("up", "6")  # state, weight

        # the same through the API of that haplane, with a read token
        code, out, err = await hp.cli("status", "--api", hp.url, "--token", READ, "--json")
        assert code == 0, err
        remote = json.loads(out)
        assert {s["instance"] for b in remote["backends"] for s in b["servers"]} == {"w-a", "w-b"}
        assert remote["agent"]["revision"] == await hp.rig.bundle.store.revision()
        code, out, err = await hp.cli("status", "--api", hp.url, "--token", "wrong-token-123")
        assert code == 1 and "unknown bearer token" in err


async def test_plan_shows_drift_and_a_pending_reload_without_changing_anything(
        tmp_path: Path, http_backends: MakeHttpBackend) -> None:
    # the agent reloads at most every 600 s here: a second structural change stays pending
    async with running_haplane(tmp_path, store=sqlite(tmp_path), reload_interval=600) as hp:
        await web_with_two(hp, http_backends)  # web takes a pool's spare: no reload
        code, out, err = await hp.cli("plan", "--exit-code")
        assert code == 0, err + out  # the plan knows web is in a spare (HAProxy's host map says so)
        assert "runtime commands: none" in out and "reload: no" in out
        # a reload now (a service outside every profile), so the next structural change waits reload_interval
        before = await hp.rig.reloads()
        await hp.rig.reg.put_service(Service("first", "path", "/first", balance="source"))
        await hp.rig.settled()
        assert await hp.rig.reloads() == before + 1

        # HAProxy drifts (someone set a weight by hand): the plan puts it back, through the Runtime API
        a, _ = await hp.rig.reg.get_instance("web", "w-a")
        admin = RuntimeClient(hp.rig.bundle.state_dir / "admin.sock")
        desired = hp.rig.bundle.agent.desired
        assert desired is not None
        web = next(b.name for b in desired.backends if b.shown == "web")  # its own backend since the reload
        await admin.run_checked([f"set server {web}/s{a.slot} weight 2"])
        # a new service: structural; its reload waits for reload_interval
        await hp.rig.reg.put_service(Service("api", "path", "/api", balance="source"))
        for _ in range(100):
            if hp.rig.bundle.agent.reload_pending:
                break
            await asyncio.sleep(0.02)
        code, out, err = await hp.cli("plan", "--json", "--exit-code")
        assert code == 2, err + out
        doc = json.loads(out)
        assert [c["command"] for c in doc["commands"]] == [f"set server {web}/s{a.slot} weight 6"]
        assert doc["reload"] is True and "backend api added" in doc["reload_reason"]
        # nothing was applied: HAProxy still runs the drifted weight
        (row,) = [r for r in await admin.stat() if r.key == (web, f"s{a.slot}")]
        assert row.weight == 2

        code, out, err = await hp.cli("plan")
        assert f"set server {web}/s{a.slot} weight 6" in out and "reload: yes" in out and "backend api added" in out

        # the agent's own dry run (with its memory), through the API
        code, out, err = await hp.cli("plan", "--api", hp.url, "--token", READ, "--json")
        assert code == 0, err
        remote = json.loads(out)
        assert remote["reload"] is True and f"set server {web}/s{a.slot} weight 6" in [
            c["command"] for c in remote["commands"]]


async def test_events_print_filter_and_follow(tmp_path: Path, http_backends: MakeHttpBackend) -> None:
    # no pools: the new service takes the reload whose record (its diff) this reads
    async with running_haplane(tmp_path, store=sqlite(tmp_path), pool_size=0) as hp:
        await web_with_two(hp, http_backends)
        code, out, err = await hp.cli("events", "-n", "100")
        assert code == 0, err
        assert "reload" in out and "set server web/s1 addr" in out and "haproxy -c: valid" in out

        code, out, err = await hp.cli("events", "--json", "--kind", "reload")
        recs = [json.loads(line) for line in out.splitlines()]
        assert recs and {r["kind"] for r in recs} == {"reload"}
        code, out, err = await hp.cli("events", "--kind", "reload", "--diff", "-n", "500")
        assert "+backend web" in out  # the reload that added the backend, with its diff
        code, out, err = await hp.cli("events", "--service", "web", "-n", "500")
        assert "web/s2" in out and "haproxy -c" not in out

        # --follow prints changes as they come (--since: whatever happens after this point, however slowly the
        # commands start)
        since = str(hp.view.activity.seq)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "haplane", "events", "--follow", "--since",
                                                    since, env=hp.cli_env(), stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        remote = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "haplane", "events", "--api", hp.url, "--token", READ, "--follow", "--since", since,
            "--kind", "server-state", env=hp.cli_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            inst, _ = await hp.rig.reg.get_instance("web", "w-b")
            from dataclasses import replace

            await hp.rig.reg.put_instance(replace(inst, state="drain"))
            for p in (proc, remote):
                assert p.stdout is not None
                lines: list[str] = []
                while not any("state drain" in ln for ln in lines):
                    line = await asyncio.wait_for(p.stdout.readline(), 15)
                    assert line, f"events ended early: {lines} {(await p.stderr.read()).decode()}"  # type: ignore[union-attr]
                    lines.append(line.decode())
                assert any("server-state" in ln for ln in lines)
        finally:
            for p in (proc, remote):
                p.terminate()
                await p.wait()
