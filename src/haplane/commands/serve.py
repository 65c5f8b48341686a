"""haplane serve: the registry's HTTP API over a store."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal

from haplane.commands._common import add_settings_options, load_settings, refuse_a_foreign_store
from haplane.errors import ConfigurationError
from haplane.settings import Settings
from haplane.tasks import stop_tasks

HELP = "run the registry's HTTP API (services, instances, sources, Thalassa's frontends/backends, /generate)"
DESCRIPTION = """\
Serve the registry's API over a store: the one way people, scripts and watchers on other hosts change what
HAProxy should do. Stateless over a shared store: run as many as you like over etcd. OpenAPI at
/openapi.json, browsable at /docs.

Tokens: HAPLANE_TOKEN (one admin token) and/or HAPLANE_TOKENS="tok1:read,tok2:write,tok3:admin". Without any
token the API is open, which is allowed only on a loopback address.

  haplane serve --listen 127.0.0.1:9090
  HAPLANE_TOKEN=... haplane serve --listen 0.0.0.0:9443 --tls-cert api.pem --tls-key api.key \\
      --store etcd://10.0.0.1:2379,10.0.0.2:2379/haplane
"""

log = logging.getLogger("haplane.serve")


def configure(p: argparse.ArgumentParser) -> None:
    add_settings_options(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default: 127.0.0.1:9090)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"listen: {listen!r} must be HOST:PORT (for example 127.0.0.1:9090)")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, host: str) -> None:
    """Refuse an open API on a non-loopback address; warn about an open one on loopback."""
    if settings.all_tokens():
        return
    if not is_loopback(host):
        raise ConfigurationError(f"refusing to listen on {host} without tokens: set HAPLANE_TOKEN (or "
                                 "HAPLANE_TOKENS), or listen on a loopback address")
    log.warning("no token configured: the API on %s is open to every local user", host)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args, listen=args.listen, tls_cert=args.tls_cert, tls_key=args.tls_key)
    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> int:
    from haplane.api import ApiDeps, create_app
    from haplane.api.server import bind_socket, serve_api
    from haplane.registry import RegistryStore
    from haplane.store import open_store

    host, port = split_listen(settings.listen)
    check_exposure(settings, host)
    sock = bind_socket(host, port)
    if settings.store is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store_url(), settings.store_settings())
    await refuse_a_foreign_store(store)
    registry = RegistryStore(store, slot_cooldown=settings.drain_timeout, min_slots=settings.min_slots,
                             fallback_names=_fallbacks(settings))
    app = create_app(ApiDeps(registry=registry, settings=settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = asyncio.Event()
    task = asyncio.create_task(serve_api(app, host, port, ssl_certfile=settings.tls_cert,
                                         ssl_keyfile=settings.tls_key, started=started, sock=sock,
                                         max_header_bytes=settings.max_header_bytes))
    stopper = asyncio.create_task(stop.wait())
    try:
        first = asyncio.create_task(started.wait())
        done, _ = await asyncio.wait({task, first, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        if started.is_set():
            scheme = "https" if settings.tls_cert else "http"
            shown = f"[{host}]" if ":" in host else host
            log.info("API listening on %s://%s:%d (docs: /docs), store %s", scheme, shown, port, store.url)
            print(f"haplane serve: listening on {scheme}://{shown}:{port}", flush=True)
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        log.info("stopping")
        return 0
    finally:
        stopper.cancel()
        await stop_tasks([task])
        await store.close()


def _fallbacks(settings: Settings) -> dict[str, str]:
    from haplane.agent.runner import fallback_names

    return fallback_names(settings)
