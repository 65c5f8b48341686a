"""haplane plan: a dry run of the agent — what it would send HAProxy now, and whether it would reload."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from haplane.commands._client import Remote, Style, add_remote_options, local_settings, progress
from haplane.commands._common import add_settings_options
from haplane.errors import ConfigurationError
from haplane.model.haproxy import Config
from haplane.model.observed import Observed
from haplane.plan import Policy, SlotMemory
from haplane.settings import Settings

HELP = "dry run: the runtime commands the agent would send now, and whether (and why) it would reload"
DESCRIPTION = """\
Compose what the registry asks for, read what HAProxy runs (its admin socket in the state directory),
and print the plan: the Runtime API commands that would be sent, and whether a reload is needed and why.
Nothing is changed: only `show` commands reach HAProxy.

With --api URL the agent inside that haplane (haplane up) plans with its own memory (drains in progress,
ramps); locally, without that memory, a drain in progress shows as finished and ramps as done.

  haplane plan --state-dir /var/lib/haplane
  haplane plan --api http://127.0.0.1:9090 --token $TOKEN
Exit status: 0, or with --exit-code 2 when there is something to do.
"""

_SERVER_LINE = re.compile(r"^(\s+server\s+\S+)\s")


def configure(p: argparse.ArgumentParser) -> None:
    add_settings_options(p)
    add_remote_options(p)
    p.add_argument("--exit-code", action="store_true", help="exit 2 when the plan is not empty")


def run(args: argparse.Namespace) -> int:
    doc = asyncio.run(_remote(args)) if args.api else asyncio.run(local_plan(*local_settings(args)))
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(render(doc, Style(sys.stdout)))
    return 2 if args.exit_code and (doc["commands"] or doc["reload"]) else 0


async def _remote(args: argparse.Namespace) -> dict[str, Any]:
    remote = Remote.from_args(args)
    try:
        with progress(f"asking {remote.url}"):
            doc: dict[str, Any] = await remote.get("/ui/api/plan")
        doc["source"] = f"the agent of {remote.url} (with its memory)"
        return doc
    finally:
        await remote.close()


def sections(text: str, slotted: set[str]) -> dict[str, list[str]]:
    """A config's sections (by header line) with their lines, server lines of slotted backends reduced to
    the server's name: what a slot points at is runtime state, not structure."""
    out: dict[str, list[str]] = {}
    header = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            header = line.strip()
            out.setdefault(header, [])
            continue
        words = header.split()
        if words[:1] == ["backend"] and len(words) > 1 and words[1] in slotted:
            m = _SERVER_LINE.match(line)
            if m:
                line = m.group(1)
        out.setdefault(header, []).append(line.strip())
    return out


def structure_changes(applied_text: str | None, desired: Config, desired_text: str) -> list[str]:
    """Words for the sections whose structure differs between the running config and the desired one."""
    if applied_text is None:
        return ["no configuration applied yet"]
    slotted = {b.name for b in desired.backends if b.slotted}
    old, new = sections(applied_text, slotted), sections(desired_text, slotted)
    out = [f"{h} added" for h in new if h not in old]
    out += [f"{h} removed" for h in old if h not in new]
    out += [f"{h} changed" for h in new if h in old and new[h] != old[h]]
    return out


def infer_memory(desired: Config, observed: Observed, policy: Policy, now: float
                 ) -> dict[tuple[str, str], SlotMemory]:
    """The agent's ramp bookkeeping, guessed from HAProxy: a slot running its instance below the target weight
    is taken to be ramping, placed as long ago as its current weight says, so the plan does not jump it to the
    target (the agent would not)."""
    memory: dict[tuple[str, str], SlotMemory] = {}
    if policy.ramp_interval <= 0 or policy.ramp_step <= 0:
        return memory
    for be in desired.backends:
        for srv in be.servers:
            o = observed.get(be.name, {}).get(srv.name)
            if o is None or srv.instance is None or o.maint or (o.address, o.port) != (srv.address, srv.port):
                continue
            if policy.ramp_min <= o.weight < srv.weight:
                steps = (o.weight - policy.ramp_min) // policy.ramp_step
                memory[(be.name, srv.name)] = SlotMemory(srv.instance, now - steps * policy.ramp_interval - 0.001)
    return memory


async def local_plan(settings: Settings, directory: Path) -> dict[str, Any]:
    from haplane.agent.planning import compose_observe_plan, plan_document, pools_as_observed
    from haplane.agent.runner import build_agent
    from haplane.commands.status import admin_socket
    from haplane.compose import compose
    from haplane.haproxy.control import RuntimeReader
    from haplane.haproxy.runtime import RuntimeClient
    from haplane.registry import RegistryStore
    from haplane.render import render_config
    from haplane.store import open_store

    sock = admin_socket(settings, directory)
    if not sock.exists():
        raise ConfigurationError(f"no HAProxy admin socket at {sock}: is the agent (haplane agent / up) running "
                                 "with this state directory? (or give --api URL)")
    store = open_store(settings.store_url(), settings.store_settings())
    try:
        # the agent's own wiring, so options and template are the ones it uses; nothing is started
        bundle = build_agent(settings, store=store, record=False)
        options = bundle.agent.options
        with progress("reading the store"):
            snapshot = await RegistryStore(store).snapshot()
        reader = RuntimeReader(RuntimeClient(sock, timeout=10))
        with progress("reading HAProxy's state"):
            observed = await reader.servers(None)  # to guess the agent's ramp memory from
            # the spares services hold (HAProxy's route maps), and those new services would take
            compose_options = await pools_as_observed(reader, snapshot, options.compose, observed.keys())
        desired = compose(snapshot, compose_options)
        desired_text = render_config(desired, bundle.agent.template).text
        try:
            with open(bundle.control.config_path, encoding="utf-8") as fh:
                applied_text: str | None = fh.read()
        except OSError:
            applied_text = None
        changes = structure_changes(applied_text, desired, desired_text)
        memory = infer_memory(desired, observed, options.policy, time.monotonic())
        with progress("planning"):
            _, p = await compose_observe_plan(reader, desired, compose_options, options.policy, memory=memory,
                                              applied=desired if not changes else None, now=time.monotonic())
        doc = plan_document(p, snapshot.revision, None, "; ".join(changes) if changes else None)
        doc["source"] = f"{directory} (store and {sock}; without the agent's memory)"
        return doc
    finally:
        await store.close()


def render(doc: dict[str, Any], style: Style) -> str:
    out = [style(f"plan at store revision {doc['revision']}", "bold") + style(f"  — from {doc.get('source')}", "dim")]
    cmds = doc["commands"]
    if cmds:
        out.append(f"runtime commands ({len(cmds)}), sent over one connection, no reload:")
        width = max(len(c["command"]) for c in cmds)
        for c in cmds:
            out.append(f"  {c['command']:<{width}}  " + style(f"# {c['kind']} {c['subject']}: {c['reason']}", "dim"))
    else:
        out.append("runtime commands: none")
    if doc["reload"]:
        out.append(style("reload: yes", "yellow") + f" — {doc['reload_reason']}")
    else:
        out.append(style("reload: no", "green") + " — the structure HAProxy runs is the one the registry asks for")
    if doc.get("waiting"):
        out.append("waiting for drains to finish: " + ", ".join(doc["waiting"]))
    return "\n".join(out)
