"""haplane generate: Lambda-Registry's /generate on the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from haplane.commands._common import add_settings_options, load_settings, read_json, read_text

HELP = "print the haproxy.cfg for a Lambda-Registry payload ({table, running, candidates})"
DESCRIPTION = """\
Read a Lambda-Registry payload (a JSON file, or - for standard input), apply it to its table in the store
(services persist while they have running containers), and print the resulting haproxy.cfg.

  haplane generate examples/seed-001.json
  haplane generate --store memory:// --check - < payload.json
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("payload", metavar="PAYLOAD", help="payload JSON file, or - for standard input")
    add_settings_options(p)
    p.add_argument("--template", metavar="FILE", help="render with this Jinja2 template instead of the default")
    p.add_argument("--bind", default="*:80", metavar="ADDR:PORT",
                   help="the frontend's bind address (default: *:80, as Lambda-Registry)")
    p.add_argument("--check", action="store_true", help="also run haproxy -c on the result; exit 1 if rejected")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from haplane.compose import compose_table
    from haplane.model import values
    from haplane.model.haproxy import Bind
    from haplane.registry import RegistryStore
    from haplane.render import compile_template, render
    from haplane.store import open_store

    settings = load_settings(args)
    data = read_json(args.payload, "payload")
    bind = Bind(*values.ip_or_wildcard_bind(args.bind, "--bind"))
    template = compile_template(read_text(settings.template, "template")) if settings.template else None
    if settings.store is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store_url(), settings.store_settings())
    try:
        services, _changes, _rev = await RegistryStore(store).apply_payload(data)
    finally:
        await store.close()
    cfg = render(compose_table(services, (bind,)), template)
    sys.stdout.write(cfg)
    if args.check:
        from haplane.haproxy.check import check_config

        result = await check_config(cfg, haproxy_bin=settings.haproxy_bin)
        for line in result.messages:
            print(line, file=sys.stderr)
        return 0 if result.ok else 1
    return 0
