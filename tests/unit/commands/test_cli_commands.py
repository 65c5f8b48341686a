"""The pure parts of ``haplane status``, ``plan`` and ``events``: structure comparison, ramp memory, formatting,
following a rotating file."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from haplane.commands._client import Style, table
from haplane.commands.events import follow_file, format_record
from haplane.commands.plan import infer_memory, structure_changes
from haplane.commands.status import render
from haplane.compose import ComposeOptions, compose
from haplane.haproxy.runtime import command_of
from haplane.model.observed import SlotObs
from haplane.model.records import Instance, Registry, Service
from haplane.overview import build
from haplane.plan import Policy, plan
from haplane.render import render as render_config

PLAIN = Style(io.StringIO())


def registry(*instances: Instance, services: tuple[Service, ...] = (Service("web", "host", "web.test"),)) -> Registry:
    return Registry(services, instances, (), (), 7)


def test_slot_contents_are_not_structure() -> None:
    opts = ComposeOptions(min_slots=4)
    before = compose(registry(Instance("a", "web", "127.0.0.2", 80, slot=1)), opts)
    moved = compose(registry(Instance("a", "web", "127.0.0.9", 81, slot=1), Instance("b", "web", "127.0.0.3", 80,
                                                                                    slot=2)), opts)
    assert structure_changes(render_config(before), moved, render_config(moved)) == []
    grown = compose(registry(*(Instance(f"i{n}", "web", "127.0.0.2", 80 + n, slot=n) for n in range(1, 6))), opts)
    assert structure_changes(render_config(before), grown, render_config(grown)) == ["backend web changed"]
    two = compose(registry(services=(Service("web", "host", "web.test"), Service("api", "path", "/api"))), opts)
    changes = structure_changes(render_config(before), two, render_config(two))
    assert "backend api added" in changes and "frontend http changed" in changes
    assert structure_changes(None, two, render_config(two)) == ["no configuration applied yet"]


def test_ramping_slots_are_left_to_ramp() -> None:
    desired = compose(registry(Instance("a", "web", "127.0.0.2", 80, weight=10, slot=1)), ComposeOptions(min_slots=4))
    observed = {"web": {"s1": SlotObs("127.0.0.2", 80, 3, False, False)} | {
        f"s{n}": SlotObs("127.0.0.1", 1, 1, True, False) for n in (2, 3, 4)}}
    policy = Policy(ramp_min=1, ramp_step=1, ramp_interval=30)
    memory = infer_memory(desired, observed, policy, 1000.0)
    p = plan(desired, observed, memory, desired, 1000.0, policy)
    assert [command_of(op) for op in p.ops] == []  # weight 3 is where a ramp placed 60 s ago stands
    p = plan(desired, observed, memory, desired, 1031.0, policy)
    assert [command_of(op) for op in p.ops] == ["set server web/s1 weight 4"]  # and it goes on stepping
    p = plan(desired, observed, {}, desired, 1000.0, policy)
    assert [command_of(op) for op in p.ops] == ["set server web/s1 weight 10"]  # what a memory-less plan would say


def test_status_table_and_record_lines() -> None:
    config = compose(registry(Instance("a", "web", "127.0.0.2", 80, weight=5, version="1.0", zone="z", slot=1)),
                     ComposeOptions(min_slots=4))
    doc = build(config, registry(Instance("a", "web", "127.0.0.2", 80, slot=1)))
    out = render(doc, PLAIN)
    assert "backend web" in out and "127.0.0.2:80" in out and "desired state only" in out
    row = next(line for line in out.splitlines() if " a " in line).split()
    assert row[:4] == ["s1", "a", "127.0.0.2:80", "up"] and row[5] == "5"
    rec = {"seq": 3, "time": 0.5, "kind": "reload", "subject": "haproxy", "reason": "backend x added",
           "result": "ok", "detail": {"diff": "--- a\n+++ b\n+backend x\n-old\n", "check": "valid"}}
    text = format_record(rec, PLAIN, diff=True)
    assert "2 config lines changed, haproxy -c: valid" in text and "+backend x" in text
    assert table([["a", "bb"], ["ccc", "d"]]) == "a    bb\nccc  d"


async def test_follow_file_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"seq": 1}) + "\n")
    seen: list[int] = []

    async def reader() -> None:
        async for rec in follow_file(path, since=1, interval=0.01):
            seen.append(rec["seq"])

    task = asyncio.create_task(reader())
    try:
        with path.open("a") as fh:
            fh.write(json.dumps({"seq": 2}) + "\n" + '{"seq": 3')  # a line half written
        for _ in range(200):
            if seen == [2]:
                break
            await asyncio.sleep(0.01)
        with path.open("a") as fh:
            fh.write("}\n")
        path.rename(tmp_path / "events.jsonl.1")
        path.write_text(json.dumps({"seq": 4}) + "\n")
        for _ in range(300):
            if seen == [2, 3, 4]:
                break
            await asyncio.sleep(0.01)
        assert seen == [2, 3, 4]
    finally:
        task.cancel()


def test_status_lists_nodes() -> None:
    doc = build(compose(registry(), ComposeOptions(min_slots=4)), registry())
    doc["nodes"] = [{"node": "lb-1", "revision": 9, "lag": 0, "age": 0.4, "model_hash": "abcdef0123456789",
                     "haproxy_ok": True, "store_ok": True, "reloads": 2, "last_error": None},
                    {"node": "lb-2", "revision": 7, "lag": 2, "age": 12.0, "model_hash": "0000", "haproxy_ok": False,
                     "store_ok": True, "reloads": 1, "last_error": "haproxy: gone"}]
    out = render(doc, PLAIN)
    lb2 = next(line for line in out.splitlines() if line.startswith("lb-2")).split()
    assert lb2[:7] == ["lb-2", "7", "2", "12.0s", "0000", "failed", "ok"] and "haproxy: gone" in out


def test_status_lists_certificates_and_warns_within_14_days() -> None:
    doc = build(compose(registry(), ComposeOptions(min_slots=4)), registry())
    doc["certificates"] = [
        {"name": "shop", "hosts": ["shop.test"], "issuer": "/CN=ca", "days_left": 80.2, "source": "api",
         "serial": "1A"},
        {"name": "acme-old.test", "hosts": ["old.test"], "issuer": "/CN=ca", "days_left": 9.6, "source": "acme",
         "serial": "2B"},
        {"name": "gone", "hosts": ["gone.test"], "issuer": "/CN=ca", "days_left": -1.0, "source": "dir:abc",
         "serial": "3C"}]
    doc["acme_orders"] = [{"name": "acme-x.test", "hosts": ["x.test"], "result": "failed", "failures": 2,
                           "error": "validation failed: x.test: connection refused"}]
    out = render(doc, PLAIN)
    shop = next(line for line in out.splitlines() if line.startswith("shop")).split()
    assert shop == ["shop", "shop.test", "/CN=ca", "80", "api", "1A"]
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: certificate acme-old.test (old.test) expires in 10 days",
                        "warning: certificate gone (gone.test) has expired",
                        "warning: ACME order for x.test failed 2 time(s): validation failed: x.test: "
                        "connection refused"]
    assert "shop" not in " ".join(warnings)
