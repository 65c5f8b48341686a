"""haplane import: a haplane export, or Thalassa's persistence file, into the registry, whole or not at all."""

from __future__ import annotations

import argparse
import asyncio
import sys

from haplane.commands._common import add_settings_options, load_settings, read_json

HELP = "replace the registry with a document from haplane export, or read Thalassa's --persistence file"
DESCRIPTION = """\
Read one JSON document and make the registry hold exactly what it lists, in one transaction:

- a document from `haplane export`: every section (services, instances, frontends, backends, tables, ...)
  replaces the registry's;
- Thalassa's --persistence file as it is ({"version": 1, "frontends": [...], "backends": [...]}): its
  frontends and backends replace haplane's; services, instances and tables are left alone. A dynamic
  backend's members in the file are not kept: they come from the service's instances.

Every row is validated first (every bad row is listed with its path, e.g. frontends[3].rules[0].operation),
then the config the result renders is checked with haproxy -c; if either fails, nothing is written. A writer
changing the registry meanwhile makes the import fail whole (run it again). --dry-run shows what would change.
Over the API: POST /import (admin token; ?dry_run=1).

  haplane import --dry-run /var/lib/thalassa/thalassa.json
  haplane import registry.json
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("document", metavar="FILE", help="the JSON document, or - for standard input")
    add_settings_options(p)
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p.add_argument("--no-check", action="store_true",
                   help="skip haproxy -c on the config the result renders (rows are still validated)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from haplane.api.rendering import render_registry
    from haplane.commands._common import refuse_a_foreign_store
    from haplane.errors import ConfigCheckFailed
    from haplane.haproxy.check import check_rendered
    from haplane.model.records import Registry
    from haplane.registry.transfer import import_document
    from haplane.store import open_store
    from haplane.transfer import DocumentInvalid, parse_document

    settings = load_settings(args)
    data = read_json(args.document, "document")
    try:
        doc = parse_document(data)
    except DocumentInvalid as exc:
        print(f"haplane import: {len(exc.problems)} bad row(s); nothing was imported:", file=sys.stderr)
        for path, detail in exc.problems:
            print(f"  {path}: {detail}", file=sys.stderr)
        return 1

    async def check(registry: Registry) -> None:
        result = await check_rendered(render_registry(registry, settings, inline_maps=True),
                                      haproxy_bin=settings.haproxy_bin)
        if not result.ok:
            raise ConfigCheckFailed(result.messages, result.lines)

    if settings.store is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store_url(), settings.store_settings())
    try:
        await refuse_a_foreign_store(store)
        result = await import_document(store, doc, dry_run=args.dry_run, check=None if args.no_check else check)
    finally:
        await store.close()
    for note in result.notes:
        print(f"note: {note}")
    for line in result.plan.changes:
        print(line)
    n = len(result.plan.changes)
    what = f"{'Thalassa persistence file' if doc.origin == 'thalassa' else 'haplane export'}"
    if args.dry_run:
        print(f"dry run ({what}): {n} change(s); nothing was written")
    elif result.applied:
        print(f"imported ({what}): {n} change(s) at revision {result.revision}")
    else:
        print(f"nothing to import ({what}): the registry already holds it")
    return 0
