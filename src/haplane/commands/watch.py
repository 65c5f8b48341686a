"""haplane watch SOURCE: run one discovery source, pushing its whole view into the store or a remote API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from haplane.commands._common import add_settings_options, load_settings
from haplane.errors import ConfigurationError
from haplane.settings import Settings
from haplane.sources import load_source
from haplane.sources.base import Sink, Source

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

log = logging.getLogger("haplane.watch")


@dataclass(frozen=True)
class WatchCommand:
    """One source's command line: its options, and how they (with the settings) make the source. The source's
    class comes from ``sources.SOURCES`` and loads only when the command runs (boto3 only for aws)."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace, Settings], Source]
    description: str | None = None


# --- haplane watch docker ---------------------------------------------------------------------------------------

DOCKER_HELP = "turn the containers of a Docker host into instances (events, with a full resync on reconnect)"
DOCKER_DESCRIPTION = f"""\
{DOCKER_HELP}.

Which containers: a name containing the keyword (any case; default asteroid), or the label haplane.enable=true.
What they are (a label wins over the env var):
  label haplane.service   env SERVICE_NAME  the service (required)
  label haplane.port      env PORT          the port the container listens on (required)
  label haplane.mode      env CONFIG_MODE   host or path routing (default host)
  label haplane.predicate env PREDICATE     the host name or path prefix requests are routed by
  label haplane.cookie    env COOKIE        a sticky-session cookie
  label haplane.tls       HTTPS for its host: on (default), off, redirect (308 to HTTPS), auto (an ACME
                          certificate, then redirect); true/false as Traefik's tls=true
  label haplane.hsts      Strict-Transport-Security max-age in seconds, on HTTPS answers
  label haplane.version, haplane.weight, haplane.zone, and haplane.address (where to reach it; default: the
  host address for --network host, else its network address, else the published PORT)
A container with a HEALTHCHECK is routed only while healthy; a stopped, killed, paused or dying one leaves at
once. A container with a bad value is skipped with a warning naming it and the value.

  DOCKER_HOST=unix:///var/run/docker.sock haplane watch docker
  docker run -d --name web-asteroid-1 -e SERVICE_NAME=web -e PREDICATE=web.example.com -e PORT=8080 IMAGE
"""


def configure_docker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--docker-host", metavar="URL",
                   help="the daemon, unix:///path or tcp://host:port (default: setting docker_host, else "
                        "DOCKER_HOST, else unix:///var/run/docker.sock); DOCKER_TLS_VERIFY and DOCKER_CERT_PATH "
                        "apply to tcp:// as for the docker CLI")
    p.add_argument("--keyword", metavar="WORD", help="pick containers whose name contains WORD, any case "
                                                     "(default: setting docker_keyword, asteroid); the label "
                                                     "haplane.enable=true also picks")
    p.add_argument("--source", metavar="NAME", help="the source id (default: docker-<hostname>)")
    p.add_argument("--host-address", metavar="ADDR",
                   help="this host's address, for --network host containers and published ports "
                        "(default: setting docker_host_address, 127.0.0.1)")
    p.add_argument("--forget-after", type=float, metavar="SECONDS",
                   help="with the daemon unreachable this long, withdraw its instances until it is back; 0 keeps "
                        "them (default: setting docker_forget_after, 60)")


def docker_from_args(args: argparse.Namespace, settings: Settings) -> Source:
    def pick(arg: Any, setting: str, default: Any) -> Any:
        return arg if arg is not None else getattr(settings, setting, default)

    source: Source = load_source("docker")(
        host=args.docker_host or getattr(settings, "docker_host", None) or None,
        keyword=pick(args.keyword, "docker_keyword", "asteroid"),
        name=args.source or getattr(settings, "docker_source", None) or None,
        host_address=pick(args.host_address, "docker_host_address", "127.0.0.1"),
        forget_after=pick(args.forget_after, "docker_forget_after", 60.0))
    return source


# --- haplane watch aws ------------------------------------------------------------------------------------------

AWS_HELP = "turn the in-service instances of AWS AutoScaling groups into instances (one set per group)"


def configure_aws(p: argparse.ArgumentParser) -> None:
    p.add_argument("--asg", metavar="NAME[,NAME...]",
                   help="the AutoScaling groups (default: setting aws_asg_names, HSDO's SERVER_ASG_NAMES)")
    p.add_argument("--service", metavar="NAME", help="the service the instances belong to (default: setting "
                                                     "aws_service, HSDO's CLIENT_HAPROXY_BACKEND_NAME)")
    p.add_argument("--port", type=int, metavar="PORT", help="the port the instances listen on (default: setting "
                                                            "aws_port, HSDO's CLIENT_HAPROXY_BACKEND_SERVER_PORT)")
    p.add_argument("--interval", type=float, metavar="SECONDS",
                   help="seconds between polls (default: setting poll_interval, HSDO's INTERVAL)")
    p.add_argument("--weight", type=int, default=10, metavar="N", help="the instances' weight (default: 10)")
    p.add_argument("--region", metavar="REGION", help="AWS region (default: setting aws_region, else boto3's: "
                                                      "AWS_DEFAULT_REGION, ~/.aws/config)")
    p.add_argument("--endpoint-url", metavar="URL", help="AWS endpoint (default: setting aws_endpoint_url, else "
                                                         "boto3's: AWS_ENDPOINT_URL)")


def aws_from_args(args: argparse.Namespace, settings: Settings) -> Source:
    groups = tuple(p.strip() for p in (args.asg or "").split(",") if p.strip()) or \
        tuple(getattr(settings, "aws_asg_names", ()) or ())
    service = args.service or getattr(settings, "aws_service", None)
    port = args.port if args.port is not None else getattr(settings, "aws_port", None)
    if not service:
        raise ConfigurationError("watch aws: no service given (--service NAME, setting aws_service, or HSDO's "
                                 "CLIENT_HAPROXY_BACKEND_NAME)")
    if port is None:
        raise ConfigurationError("watch aws: no port given (--port PORT, setting aws_port, or HSDO's "
                                 "CLIENT_HAPROXY_BACKEND_SERVER_PORT)")
    source: Source = load_source("aws")(
        groups, service, port,
        interval=args.interval if args.interval is not None else getattr(settings, "poll_interval", 10.0),
        region=args.region or getattr(settings, "aws_region", None) or None,
        endpoint_url=args.endpoint_url or getattr(settings, "aws_endpoint_url", None) or None, weight=args.weight)
    return source


# --- haplane watch consul ---------------------------------------------------------------------------------------

CONSUL_HELP = "turn the healthy instances of a Consul service into instances (blocking queries), with versions"


def configure_consul(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag", metavar="TAG", help="follow every Consul service carrying TAG (the catalog, through a "
                                                "blocking query) instead of the dynamic backends' services")
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help="following the dynamic backends: how often their names are read again (default: 2)")
    p.add_argument("--service", metavar="NAME", help="follow this one Consul service; without it (and without "
                                                     "--tag), every service a dynamic backend names is followed, "
                                                     "as Thalassa subscribed to its backends' names (default: "
                                                     "setting consul_service, HSDO's "
                                                     "SERVER_CONSUL_SERVICE_NAME)")
    p.add_argument("--consul", metavar="URL", help="Consul's HTTP address (default: setting consul_address, "
                                                   "else CONSUL_HTTP_ADDR, else http://127.0.0.1:8500); an https:// "
                                                   "address is checked against HAPLANE_CONSUL_CACERT (else "
                                                   "CONSUL_CACERT), with a client certificate from "
                                                   "HAPLANE_CONSUL_CERT/HAPLANE_CONSUL_KEY (else CONSUL_CLIENT_CERT/"
                                                   "CONSUL_CLIENT_KEY); the ACL token is HAPLANE_CONSUL_TOKEN (else "
                                                   "CONSUL_HTTP_TOKEN)")
    p.add_argument("--as", dest="as_service", metavar="NAME", help="the haplane service the instances belong to "
                                                                   "(default: the Consul service's name)")
    p.add_argument("--version-from", choices=("tag", "meta"), default="tag",
                   help="where an instance's version is: a tag PREFIX<version> or ServiceMeta[KEY] (default: tag)")
    p.add_argument("--version-prefix", default="version=", metavar="PREFIX",
                   help="with --version-from tag: the tag prefix (default: version=)")
    p.add_argument("--version-key", default="version", metavar="KEY",
                   help="with --version-from meta: the ServiceMeta key (default: version)")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long one blocking query may wait (default: 60; Consul caps it at 600)")
    p.add_argument("--dc", metavar="DATACENTER", help="the datacenter to query (default: the agent's)")
    p.add_argument("--source", metavar="NAME", help="the source id (default: consul-<service>)")


def consul_from_args(args: argparse.Namespace, settings: Settings) -> Source:
    """One ``ConsulSource`` for ``--service``; else a ``ConsulFollower`` of the dynamic backends' services (or of
    every service with ``--tag``)."""
    service = args.service or getattr(settings, "consul_service", None)
    if service and args.tag:
        raise ConfigurationError("watch consul: --tag follows many services; drop --service (or setting "
                                 "consul_service) to use it")
    if not service and args.as_service:
        raise ConfigurationError("watch consul: --as names the one service of --service; following many, each "
                                 "keeps its own name")
    address = args.consul or os.environ.get("CONSUL_HTTP_ADDR") or getattr(settings, "consul_address", None) \
        or "http://127.0.0.1:8500"
    if not args.consul and getattr(settings, "consul_address", "http://127.0.0.1:8500") != "http://127.0.0.1:8500":
        address = settings.consul_address  # an explicit setting wins over the environment's default
    if "://" not in address and os.environ.get("CONSUL_HTTP_SSL", "").lower() in ("1", "true"):
        address = "https://" + address
    token = getattr(settings, "consul_token", None) or os.environ.get("CONSUL_HTTP_TOKEN") or None
    cacert = getattr(settings, "consul_cacert", None) or os.environ.get("CONSUL_CACERT") or None
    cert = getattr(settings, "consul_cert", None) or os.environ.get("CONSUL_CLIENT_CERT") or None
    key = getattr(settings, "consul_key", None) or os.environ.get("CONSUL_CLIENT_KEY") or None
    consul_source = load_source("consul")

    def make(name: str, source_id: str | None = None) -> Any:
        return consul_source(name, address=address, target=args.as_service, version_from=args.version_from,
                             tag_prefix=args.version_prefix, meta_key=args.version_key, wait=args.wait, token=token,
                             datacenter=args.dc, name=source_id, cacert=cacert, cert=cert, key=key)

    if service:
        one: Source = make(service, args.source)
        return one
    from haplane.sources.consul_follow import ConsulFollower

    probe = make("consul")  # checks the address and the TLS files now, before anything runs
    follower: Source = ConsulFollower(make, tag=args.tag, address=probe.address, token=token, datacenter=args.dc,
                                      interval=args.interval, wait=args.wait, verify=probe.verify)
    return follower


# the order is --help's; one entry per name in sources.SOURCES
WATCHES: dict[str, WatchCommand] = {
    "docker": WatchCommand(DOCKER_HELP, configure_docker, docker_from_args, DOCKER_DESCRIPTION),
    "aws": WatchCommand(AWS_HELP, configure_aws, aws_from_args),
    "consul": WatchCommand(CONSUL_HELP, configure_consul, consul_from_args),
}


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="source_kind", metavar="SOURCE", required=True)
    for name, command in WATCHES.items():
        sp = sub.add_parser(name, help=command.help, description=command.description or command.help,
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
        command.configure(sp)
        sp.set_defaults(_watch=command)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("httpx", "httpcore"):  # one line per request to Docker and the API: only with --log-level debug
            logging.getLogger(name).setLevel(logging.WARNING)
    return asyncio.run(_run(args, settings))


async def define_tls(source: Source, sink: Sink, settings: Settings) -> None:
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


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from haplane.sources.base import ApiSink, StoreSink, parse_define

    source = args._watch.build(args, settings)
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
        sink = StoreSink(RegistryStore(store, slot_cooldown=settings.drain_timeout, min_slots=settings.min_slots,
                                       fallback_names=_fallbacks(settings)))
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
        command: WatchCommand = args._watch

        async def lead() -> None:  # a fresh source each term: it pushes its whole view when it takes over
            await command.build(args, settings).run(sink)

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


def _fallbacks(settings: Settings) -> dict[str, str]:
    from haplane.agent.runner import fallback_names

    return fallback_names(settings)
