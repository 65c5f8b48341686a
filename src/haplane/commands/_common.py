"""Helpers shared by subcommands: common options and settings from parsed arguments."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from haplane import settings as settings_mod
from haplane.errors import ConfigurationError
from haplane.store.base import Store


def add_settings_options(p: argparse.ArgumentParser, *, store: bool = True, state_dir: bool = True) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML settings file (also HAPLANE_CONFIG)")
    if state_dir:
        p.add_argument("--state-dir", metavar="DIR", type=Path,
                       help="where haplane keeps its state: store, haproxy.cfg, sockets (default: ./.state, "
                            "or HAPLANE_STATE_DIR)")
    if store:
        p.add_argument("--store", metavar="URL",
                       help="the store: sqlite:///PATH (default: STATE_DIR/haplane.db), memory://, "
                            "etcd://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT]/PREFIX[?cacert=F&cert=F&key=F] "
                            "(TLS and etcd's auth also from HAPLANE_ETCD_CACERT, HAPLANE_ETCD_CERT, "
                            "HAPLANE_ETCD_KEY, HAPLANE_ETCD_USER, HAPLANE_ETCD_PASSWORD), dynamodb://TABLE?region=R")


def add_traffic_options(p: argparse.ArgumentParser) -> None:
    """The access log and HAProxy's own stats listener (``haplane agent`` and ``haplane up``)."""
    g = p.add_argument_group("access log and HAProxy's stats", "HAProxy logs every request to a socket in the "
                             "state directory; haplane names each one's service and instance and writes it out "
                             "(read it with `haplane logs`)")
    g.add_argument("--access-log", choices=("off", "sampled", "full"),
                   help="log every request, one in HAPLANE_ACCESS_LOG_SAMPLE (default 10), or none "
                        "(HAPLANE_ACCESS_LOG; default: off)")
    g.add_argument("--access-log-file", metavar="PATH",
                   help="where: a file rotated at HAPLANE_ACCESS_LOG_MAX_BYTES (default 50 MiB) keeping "
                        "HAPLANE_ACCESS_LOG_KEEP (5) old ones, or - for stdout (HAPLANE_ACCESS_LOG_FILE; "
                        "default: STATE_DIR/access.log)")
    g.add_argument("--access-log-format", choices=("json", "haproxy"),
                   help="one JSON object a line, or HAProxy's httplog line with service/instance names "
                        "(HAPLANE_ACCESS_LOG_FORMAT; default: json)")
    g.add_argument("--haproxy-stats-port", type=int, metavar="PORT",
                   help="HAProxy's stats page (/) and Prometheus exporter (/metrics) on this loopback port, with "
                        "basic auth: user HAPLANE_HAPROXY_STATS_USER (haplane), password "
                        "HAPLANE_HAPROXY_STATS_PASSWORD (default: made once, in STATE_DIR/haproxy-stats.password); "
                        "address HAPLANE_HAPROXY_STATS_ADDRESS (127.0.0.1); default: off")


TRAFFIC_OPTIONS = ("access_log", "access_log_file", "access_log_format", "haproxy_stats_port")


def add_pool_options(p: argparse.ArgumentParser) -> None:
    """The pools of ready backends (``haplane agent`` and ``haplane up``)."""
    g = p.add_argument_group("pools of ready backends", "HAProxy's config carries spare backends, one pool per "
                             "profile; a new service that fits a profile (host routing, its balance, cookie and "
                             "health check, its instances within the spare's slots) takes a spare through the "
                             "Runtime API and is routable at once, without a reload; a background reload refills "
                             "a pool once half its spares are taken")
    g.add_argument("--pool-size", type=int, metavar="N",
                   help="spares per profile (HAPLANE_POOL_SIZE; default: 8; 0: no pools, every new service "
                        "takes a reload)")
    g.add_argument("--pool-profiles", metavar="LIST",
                   help="the profiles, comma-separated, each BALANCE[:cookie=NAME][:check=PATH] "
                        "(HAPLANE_POOL_PROFILES; default: roundrobin,leastconn,roundrobin:cookie=JSESSIONID)")


POOL_OPTIONS = ("pool_size", "pool_profiles")


def load_settings(args: argparse.Namespace, **extra: Any) -> settings_mod.Settings:
    overrides = {k: getattr(args, k, None) for k in ("state_dir", "store", "template", *TRAFFIC_OPTIONS,
                                                    *POOL_OPTIONS)}
    overrides.update(extra)
    return settings_mod.load(overrides, config_file=getattr(args, "config", None))


def read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_json(path: str, what: str) -> Any:
    """The JSON document at ``path`` (``-``: standard input); PayloadError naming ``what`` and where it breaks."""
    import json
    import sys

    from haplane.errors import PayloadError

    text = sys.stdin.read() if path == "-" else read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(what, f"line {exc.lineno} column {exc.colno}", f"is not valid JSON: {exc.msg}") from None


async def refuse_a_foreign_store(store: Store) -> None:
    """A store that is not haplane's (HSDO's DynamoDB table) stops the command at once with its own message; a
    store that is only unreachable now does not (the API answers 503, the agent waits, until it is back)."""
    import asyncio

    from haplane.errors import ConfigurationError, HaplaneError

    try:
        await asyncio.wait_for(store.revision(), 5)
    except ConfigurationError:
        await store.close()
        raise
    except (HaplaneError, TimeoutError):
        pass
