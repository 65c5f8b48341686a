"""haplane watch SOURCE: run one discovery source, pushing its whole view into the store or a remote API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
from types import ModuleType
from typing import Any

from haplane.commands._common import add_settings_options, load_settings
from haplane.errors import ConfigurationError

HELP = "run a discovery source (docker, aws, consul) and push what it sees to the store or a remote API"
DESCRIPTION = """\
Run one discovery source. It pushes its whole view (one source-owned set) at start, after every reconnect and
on every change: into the local store (--store, default the SQLite store in STATE_DIR) or to a remote
registry's API (--api URL --token T), where the set is bound to a lease of --ttl seconds that the watcher keeps
renewing, so a dead watcher's instances expire by themselves.

With --elect NAME, several watchers of the same thing (an AWS poller on two hosts) share one store and only
the one that holds the election NAME runs its source; when it dies, another takes over within --elect-ttl
seconds and pushes its own view. The election is a lease-bound key in the store, so --elect needs the store
(--store), not --api.

  haplane watch docker
  haplane watch docker --api https://registry:9443 --token $TOKEN --ttl 30
  haplane watch aws --asg web-a,web-b --service web --port 8080
  haplane watch aws --store etcd://10.0.0.11:2379,10.0.0.12:2379/haplane --elect aws-web --asg web-a \
      --service web --port 8080
"""

# name -> module; each exposes WATCH_HELP, configure_watch(parser), source_from_args(args, settings)
SOURCES: dict[str, str] = {
    "docker": "haplane.sources.docker",
    "aws": "haplane.sources.aws_autoscaling",
    "consul": "haplane.sources.consul",
}

log = logging.getLogger("haplane.watch")


def _modules() -> dict[str, ModuleType]:
    out = {}
    for name, module_name in SOURCES.items():
        try:
            out[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
    return out


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="source_kind", metavar="SOURCE", required=True)
    for name, module in _modules().items():
        sp = sub.add_parser(name, help=module.WATCH_HELP,
                            description=getattr(module, "WATCH_DESCRIPTION", module.WATCH_HELP),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        add_settings_options(sp)
        sp.add_argument("--api", metavar="URL", help="push to this registry API instead of the store")
        sp.add_argument("--token", metavar="TOKEN", help="the API's write token (default: HAPLANE_TOKEN)")
        sp.add_argument("--ttl", type=float, default=30.0, metavar="SECONDS",
                        help="with --api: the set expires unless renewed within this (default: 30)")
        sp.add_argument("--ca", metavar="FILE", help="with --api over https: trust this CA certificate")
        if name != "docker":  # containers define their services themselves (SERVICE_NAME, PREDICATE, ...)
            sp.add_argument("--define", metavar="FIELD=VALUE[,...]",
                            help="define the source's service if it is not (or update these fields of it): mode, "
                                 "predicate, port, cookie, balance; e.g. mode=host,predicate=shop.example.com. "
                                 "Without it, instances of an undefined service wait (and say so)")
        sp.add_argument("--elect", metavar="NAME",
                        help="run the source only while this process leads the election NAME in the store (one "
                             "of several watchers on other hosts; needs the store, not --api)")
        sp.add_argument("--elect-ttl", type=float, default=10.0, metavar="SECONDS",
                        help="with --elect: a dead leader is replaced within this (default: 10)")
        module.configure_watch(sp)
        sp.set_defaults(_module=module)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("httpx", "httpcore"):  # one line per request to Docker and the API: only with --log-level debug
            logging.getLogger(name).setLevel(logging.WARNING)
    return asyncio.run(_run(args, settings))


async def define_tls(source: Any, sink: Any, settings: Any) -> None:
    """The HTTPS policy of the service an AWS or Consul watcher feeds, from the settings ``tls_policy`` and
    ``tls_hsts`` (those sources have no labels to say it): set on the service, the rest of it kept. Nothing is
    written when the settings keep the defaults."""
    service = getattr(source, "target", None) or getattr(source, "service", None)
    if not isinstance(service, str) or (settings.tls_policy == "on" and settings.tls_hsts is None):
        return
    from haplane.model.records import TLS_POLICIES

    if settings.tls_policy not in TLS_POLICIES:
        from haplane.errors import ConfigurationError

        raise ConfigurationError(f"setting tls_policy: {settings.tls_policy!r} is not one of {', '.join(TLS_POLICIES)}")
    await sink.define([{"name": service, "tls": settings.tls_policy, "hsts": settings.tls_hsts}])


async def _run(args: argparse.Namespace, settings: Any) -> int:
    from haplane.sources.base import ApiSink, Sink, StoreSink, parse_define

    source = args._module.source_from_args(args, settings)
    define = getattr(args, "define", None)
    definition = None
    if define:
        service = getattr(source, "target", None) or getattr(source, "service", None)
        if not isinstance(service, str):
            raise ConfigurationError("--define needs one service: give --service NAME")
        definition = parse_define(define, service)  # checked before anything runs
    if args.elect and args.api:
        raise ConfigurationError("--elect needs the store (--store URL): the election is a key in it; with --api, "
                                 "run exactly one watcher")
    if args.elect is not None:
        from haplane.model import values

        values.name(args.elect, "--elect")  # it becomes a store key
    if args.elect and not args.elect_ttl > 0:
        raise ConfigurationError(f"--elect-ttl: {args.elect_ttl!r} must be a positive number of seconds")
    election = None
    sink: Sink
    if args.api:
        sink = ApiSink(args.api, args.token or settings.token, ttl=args.ttl, verify=args.ca or True)
        where = args.api
    else:
        from haplane.registry import RegistryStore
        from haplane.store import open_store

        if settings.store is None:
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.store_url(), settings.store_settings())
        sink = StoreSink(RegistryStore(store, slot_cooldown=settings.drain_timeout, min_slots=settings.min_slots))
        where = store.url
        if args.elect:
            from haplane.election import Election

            node = settings.node or f"{socket.gethostname().split('.')[0]}-{os.getpid()}"
            election = Election(store, args.elect, node, ttl=args.elect_ttl)
    log.info("watching %s as source %s, pushing to %s", args.source_kind, source.name, where)
    await define_tls(source, sink, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if definition is not None:
        await sink.define([definition])
    if election is not None:
        module = args._module

        async def lead() -> None:  # a fresh source each term: it pushes its whole view when it takes over
            await module.source_from_args(args, settings).run(sink)

        log.info("campaigning in election %s as %s (ttl %gs)", args.elect, election.node, election.ttl)
        task = asyncio.create_task(election.run(lead))
    else:
        task = asyncio.create_task(source.run(sink))
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        return 0
    finally:
        task.cancel()
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if election is not None:
            await election.resign()  # a clean stop hands the lead over at once
        await sink.close()
