"""Helpers shared by subcommands: common options and settings from parsed arguments."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from haplane import settings as settings_mod
from haplane.errors import ConfigurationError


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


def load_settings(args: argparse.Namespace, **extra: Any) -> settings_mod.Settings:
    overrides = {k: getattr(args, k, None) for k in ("state_dir", "store", "template")}
    overrides.update(extra)
    return settings_mod.load(overrides, config_file=getattr(args, "config", None))


def read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None


async def refuse_a_foreign_store(store: Any) -> None:
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
