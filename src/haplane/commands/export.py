"""haplane export: the whole registry as one JSON document."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from haplane.commands._common import add_settings_options, load_settings

HELP = "write the whole registry as one JSON document (for haplane import)"
DESCRIPTION = """\
Write the whole registry (services, instances with their slots, frontends, backends, Lambda-Registry tables,
slot allocations, certificates) as one JSON document, read at one store revision. `haplane import` reads it
back; importing it into an empty store renders the same haproxy.cfg, byte for byte.

The document holds certificates' private keys when there are any: it is written owner-only (mode 600).
Over the API: GET /export (admin token).

  haplane export > registry.json
  haplane export --store etcd://10.0.0.1:2379/haplane -o registry.json
"""


def configure(p: argparse.ArgumentParser) -> None:
    add_settings_options(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from haplane.commands._common import refuse_a_foreign_store
    from haplane.registry.transfer import export_document
    from haplane.store import open_store
    from haplane.transfer import dumps

    settings = load_settings(args)
    store = open_store(settings.store_url(), settings.store_settings())
    try:
        await refuse_a_foreign_store(store)
        text = dumps(await export_document(store))
    finally:
        await store.close()
    if args.output:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0
