"""haplane status: frontends, rules, backends and servers as HAProxy runs them now."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from haplane.commands._client import Remote, Style, add_remote_options, local_settings, progress, table
from haplane.commands._common import add_settings_options
from haplane.errors import HaplaneError, HAProxyError
from haplane.settings import Settings

HELP = "show frontends, rules, backends and servers with their state, health, weight and sessions"
DESCRIPTION = """\
A table of what HAProxy runs: frontends and their rules, backends, and each server's state (up, down,
draining, maint), health check, weight (→ the target it ramps to), current sessions, version and zone.

Reads the local state directory (the store, and HAProxy's admin socket there), or a remote haplane with
--api URL. Also lists the agents (nodes) that report to the store, where the store keeps them, and the
certificates HAProxy serves (a certificate expiring within 14 days, or a failed ACME order, is a warning).

  haplane status --state-dir /var/lib/haplane
  haplane status --api http://127.0.0.1:9090 --token $TOKEN --json
"""


def configure(p: argparse.ArgumentParser) -> None:
    add_settings_options(p)
    add_remote_options(p)


def run(args: argparse.Namespace) -> int:
    doc = asyncio.run(_remote(args)) if args.api else asyncio.run(local_overview(*local_settings(args)))
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(render(doc, Style(sys.stdout)))
    return 0


async def _remote(args: argparse.Namespace) -> dict[str, Any]:
    remote = Remote.from_args(args)
    try:
        with progress(f"asking {remote.url}"):
            doc: dict[str, Any] = await remote.get("/ui/api/overview")
            try:
                doc["nodes"] = await remote.get("/nodes")
            except HaplaneError:
                doc["nodes"] = None  # an older haplane without /nodes
            try:
                doc["certificates"] = await remote.get("/certificates")
                doc["acme_orders"] = await remote.get("/acme/orders")
            except HaplaneError:
                doc["certificates"] = None  # an older haplane without certificates
        return doc
    finally:
        await remote.close()


def admin_socket(settings: Settings, directory: Path) -> Path:
    from haplane.haproxy.process import ADMIN_SOCKET

    return Path(settings.admin_socket) if settings.admin_socket else directory / ADMIN_SOCKET


async def local_overview(settings: Settings, directory: Path) -> dict[str, Any]:
    """The overview from the store and HAProxy's admin socket in the state directory."""
    from haplane.agent.runner import agent_options
    from haplane.compose import compose
    from haplane.haproxy.runtime import RuntimeClient
    from haplane.overview import build
    from haplane.registry import RegistryStore
    from haplane.store import open_store

    store = open_store(settings.store_url(), settings.store_settings())
    try:
        with progress("reading the store"):
            snapshot = await RegistryStore(store).snapshot()
        options = agent_options(settings, directory).compose
        rows = None
        note = None
        sock = admin_socket(settings, directory)
        if sock.exists():
            try:
                with progress("reading HAProxy's state"):
                    from haplane.agent.planning import pools_as_observed
                    from haplane.agent.stats import parse_live
                    from haplane.haproxy.control import RuntimeReader

                    client = RuntimeClient(sock, timeout=5)
                    rows = {r.key: r for r in parse_live(await client.command("show stat"))}
                    # the spares services hold, as HAProxy's route maps say: shown by the services' names
                    options = await pools_as_observed(RuntimeReader(client), snapshot, options,
                                                      {proxy for proxy, _server in rows})
            except HAProxyError as exc:
                note = f"HAProxy did not answer on {sock}: {exc}"
        else:
            note = f"no HAProxy admin socket at {sock}: showing the registry's desired state"
        config = compose(snapshot, options)
        doc = build(config, snapshot, rows)
        doc["note"] = note
        doc["nodes"] = await _nodes(store)
        doc["certificates"], doc["acme_orders"] = await _certificates(store)
        return doc
    finally:
        await store.close()


async def _nodes(store: Any) -> list[dict[str, Any]]:
    """The agents reporting to this store."""
    from haplane.agent.nodes import read_nodes

    return await read_nodes(store)


async def _certificates(store: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The registry's certificates as ``GET /certificates`` shows them (no key), and the last ACME orders."""
    import time

    from haplane.api.routes.certificates import _view
    from haplane.tls.store import CertificateStore

    certs = CertificateStore(store)
    now = time.time()
    listed = [_view(c, rev, now) for c, rev in sorted(await certs.all(), key=lambda p: p[0].name)]
    return listed, [o.to_dict() for _, o in sorted((await certs.orders()).items())]


WARN_DAYS = 14  # a certificate expiring within this many days is a warning


def _certificate_lines(doc: dict[str, Any], style: Style) -> list[str]:
    certs = doc.get("certificates")
    if not certs:
        return []
    rows = [[style(h, "bold") for h in ("CERTIFICATE", "HOSTS", "ISSUER", "DAYS LEFT", "SOURCE", "SERIAL")]]
    warnings = []
    for c in certs:
        left = float(c["days_left"])
        shown = "expired" if left <= 0 else f"{left:.0f}"
        if left <= WARN_DAYS:
            shown = style(shown, "yellow")
            warnings.append(f"certificate {c['name']} ({', '.join(c['hosts'])}) "
                            + ("has expired" if left <= 0 else f"expires in {left:.0f} days"))
        rows.append([c["name"], ", ".join(c["hosts"]), c["issuer"], shown, c["source"], c["serial"]])
    out = ["", table(rows)]
    for o in doc.get("acme_orders") or []:
        if o.get("result") == "failed":
            warnings.append(f"ACME order for {', '.join(o['hosts'])} failed {o['failures']} time(s): {o.get('error')}")
    out += [style(f"warning: {w}", "yellow") for w in warnings]
    return out


def _v(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def render(doc: dict[str, Any], style: Style) -> str:
    out: list[str] = []
    fe_rows = [[style("FRONTEND", "bold"), style("BINDS", "bold"), style("RULE", "bold"), style("BACKEND", "bold")]]
    for fe in doc["frontends"]:
        rules = list(fe["rules"])
        if fe.get("default_backend"):
            rules.append({"match": "default", "value": "", "backend": fe["default_backend"]})
        for i, r in enumerate(rules or [{"match": "-", "value": "", "backend": ""}]):
            fe_rows.append([fe["name"] if i == 0 else "", ",".join(fe["binds"]) if i == 0 else "",
                            f"{r['match']} {r['value']}".strip(), r["backend"]])
    out.append(table(fe_rows))
    for be in doc["backends"]:
        servers = be["servers"]
        head = [style(f"backend {be['name']}", "bold"), be["kind"]]
        if be.get("service") and be["kind"] == "dynamic":
            head.append(f"follows {be['service']} {be.get('version')}")
        head.append(be["balance"])
        head.append(f"{be['servers_up']}/{len(servers)} up")
        if be.get("sessions") is not None:
            head.append(f"{be['sessions']} sessions")
        if be.get("slots"):
            head.append(f"{be['free_slots']} free of {be['slots']} slots")
        if be.get("status"):
            head.append(f"HAProxy {be['status']}")
        out.append("")
        out.append("  ".join(head[:1]) + "  (" + ", ".join(head[1:]) + ")")
        if not servers:
            out.append("  no servers")
            continue
        rows = [[style(h, "bold") for h in ("SERVER", "INSTANCE", "ADDRESS", "STATE", "HEALTH", "WEIGHT", "SESSIONS",
                                            "VERSION", "ZONE")]]
        for s in servers:
            weight = _v(s["target"]) if s["weight"] is None else (
                f"{s['weight']}→{s['target']}" if s["weight"] != s["target"] else str(s["weight"]))
            rows.append([s["name"], _v(s["instance"]), s["address"], style.state(s["state"]), _v(s["health"]),
                         weight, _v(s["sessions"]), _v(s["version"]), _v(s["zone"])])
        out.append(table(rows, indent="  "))
    for entry in doc.get("waiting") or []:
        out.append("")
        out.append(style(entry["message"], "yellow"))
    if doc.get("quarantined"):
        out.append("")
        out.append(style("held back (haproxy -c rejected their lines):", "yellow"))
        for owner, msg in sorted(doc["quarantined"].items()):
            out.append(f"  {owner}: {msg}")
    if doc.get("held"):
        out.append("")
        out.append(style("held (HAProxy refused their runtime change; change the record to try again):", "yellow"))
        for owner, msg in sorted(doc["held"].items()):
            out.append(f"  {owner}: {msg}")
    nodes = doc.get("nodes")
    if nodes:
        out.append("")
        rows = [[style(h, "bold") for h in ("NODE", "REVISION", "LAG", "AGE", "MODEL", "HAPROXY", "STORE", "RELOADS",
                                            "LAST ERROR")]]
        for n in nodes:
            age = n.get("age")
            rows.append([_v(n.get("node")), _v(n.get("revision")), _v(n.get("lag")),
                         "-" if age is None else f"{float(age):.1f}s", _v(n.get("model_hash"))[:12],
                         style.state("ok" if n.get("haproxy_ok") else "failed"),
                         style.state("ok" if n.get("store_ok") else "failed"), _v(n.get("reloads")),
                         _v(n.get("last_error"))])
        out.append(table(rows))
    out += _certificate_lines(doc, style)
    footer = f"store revision {doc.get('revision')}"
    agent = doc.get("agent")
    if agent:
        footer += f", applied {agent.get('revision')}, {agent.get('reloads')} reloads"
        if agent.get("last_error"):
            footer += f", last error: {agent['last_error']}"
    if not doc.get("live"):
        footer += " — desired state only (HAProxy's live view not at hand)"
    out.append("")
    out.append(style(footer, "dim"))
    if doc.get("note"):
        out.append(style(doc["note"], "yellow"))
    return "\n".join(out)
