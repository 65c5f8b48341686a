"""haplane up: the whole thing on one machine — HAProxy, the agent, the API and UI, over SQLite."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from haplane.commands._common import add_pool_options, add_settings_options, add_traffic_options, load_settings
from haplane.commands.serve import check_exposure, split_listen
from haplane.registry import RegistryStore
from haplane.settings import Settings
from haplane.tasks import stop_tasks

HELP = "run HAProxy + agent + API + UI on this machine (the embedded default)"
DESCRIPTION = """\
Start everything on this machine, with all state under STATE_DIR (default ./.state):
  - HAProxy, in master-worker mode, driven by the agent (haproxy.cfg, master.sock, admin.sock there);
  - the registry's API and web UI on --listen (default 127.0.0.1:9090);
  - the proxy on --http-port (default 8080) and HTTPS on --https-port (default 8443; 0: none), with a
    self-signed default certificate made at first start, and the registry's certificates by SNI;
  - a Docker watcher when a Docker daemon is reachable (DOCKER_HOST or /var/run/docker.sock), unless
    --no-docker.
The admin token comes from HAPLANE_TOKEN, or is made once and kept in STATE_DIR/admin.token; a login link
for the UI is printed at start. Ctrl-C (or SIGTERM) stops everything, HAProxy included, unless
--keep-haproxy (HAPLANE_KEEP_HAPROXY=1) leaves it serving. HAProxy runs in its own session: if haplane is
killed, HAProxy keeps serving with the last config it was given, and the next `haplane up` on the same
STATE_DIR attaches to it (same master pid, no restart) instead of starting another. A second haplane on the
same STATE_DIR, or a proxy port another process holds, is refused with a one-line message.

  haplane up
  haplane up --state-dir /var/lib/haplane --listen 127.0.0.1:9090 --http-port 80
  haplane up --http-port 80 --https-port 443 --acme-directory https://acme-v02.api.letsencrypt.org/directory
"""

log = logging.getLogger("haplane.up")
UP_HTTPS_PORT = 8443


def configure(p: argparse.ArgumentParser) -> None:
    add_settings_options(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="API and UI address (default: 127.0.0.1:9090)")
    p.add_argument("--http-port", type=int, metavar="PORT", help="the proxy's port (default: 8080)")
    p.add_argument("--http-address", metavar="ADDR", help="the proxy's bind address (default: * = all)")
    p.add_argument("--template", metavar="FILE", help="render haproxy.cfg with this Jinja2 template")
    p.add_argument("--haproxy-bin", metavar="PATH", help="the haproxy binary (default: haproxy on PATH)")
    p.add_argument("--no-docker", action="store_true", help="do not watch a local Docker daemon")
    p.add_argument("--maxconn", type=int, metavar="N",
                   help="HAProxy's maxconn (HAPLANE_MAXCONN; default: 4096, or less where the hard limit on open "
                        "files is low). Before starting HAProxy, haplane checks that its connections (2 descriptors "
                        "each) and health checks (1 per filled slot) fit in that limit, and says what to change")
    p.add_argument("--reload-budget", type=int, metavar="N",
                   help="at most N reloads of HAProxy in any minute (HAPLANE_RELOAD_BUDGET; default: 30; 0: no "
                        "limit). A structural change past it waits, said once in the log and the activity, and is "
                        "applied when the budget allows; runtime changes (instances, weights, routes) never wait")
    p.add_argument("--keep-haproxy", action="store_true", default=None,
                   help="on Ctrl-C/SIGTERM, stop haplane but leave HAProxy serving; the next haplane on this "
                        "state directory attaches to it (HAPLANE_KEEP_HAPROXY; default: HAProxy is stopped)")
    add_traffic_options(p)
    add_pool_options(p)
    from haplane.tls.wiring import add_tls_options

    add_tls_options(p, "8443")


def run(args: argparse.Namespace) -> int:
    from haplane.tls.wiring import tls_overrides

    tls = tls_overrides(args)
    if tls["https_port"] is None and "HAPLANE_HTTPS_PORT" not in os.environ:
        tls["https_port"] = UP_HTTPS_PORT
    settings = load_settings(args, listen=args.listen, http_port=args.http_port, http_address=args.http_address,
                             haproxy_bin=args.haproxy_bin, keep_haproxy=args.keep_haproxy, maxconn=args.maxconn,
                             reload_budget=args.reload_budget, **tls)
    return asyncio.run(_run(settings, docker=not args.no_docker))


def _admin_token(state_dir: Path) -> str:
    path = state_dir / "admin.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return token


async def _run(settings: Settings, docker: bool) -> int:
    from haplane.agent.runner import build_agent, state_dir_of
    from haplane.agent.view import AgentView
    state_dir = state_dir_of(settings)
    if not settings.all_tokens():
        settings = settings.with_(token=_admin_token(state_dir))
    token = next(t for t, role in settings.all_tokens().items() if role == "admin") if any(
        r == "admin" for r in settings.all_tokens().values()) else None
    host, port = split_listen(settings.listen)
    check_exposure(settings, host)
    bundle = build_agent(settings)
    await bundle.open()
    registry = RegistryStore(bundle.store, slot_cooldown=settings.drain_timeout, min_slots=settings.min_slots,
                             fallback_names=_fallbacks(settings))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(bundle.agent.run(), name="agent")]
    api_started = asyncio.Event()
    from haplane.api import ApiDeps, create_app
    from haplane.api.server import bind_socket, serve_api
    from haplane.tls.wiring import edge_parts

    edge = edge_parts(settings, bundle.store)
    tasks += [asyncio.create_task(coro, name=name) for name, coro in edge.tasks]
    sock = bind_socket(host, port)
    view = AgentView(bundle.agent, latency=bundle.latency)
    deps = ApiDeps(registry=registry, settings=settings, agent=view)
    if edge.acme is not None:
        from prometheus_client import CollectorRegistry

        from haplane.metrics import Metrics

        deps.extra["metrics"] = Metrics(CollectorRegistry(), agent=deps.agent, store=bundle.store)
        deps.extra["metrics"].acme = edge.acme
    app = create_app(deps)
    tasks.append(asyncio.create_task(
        serve_api(app, host, port, ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key,
                  started=api_started, sock=sock, max_header_bytes=settings.max_header_bytes), name="api"))
    if docker:
        watcher = _docker_watcher(registry, settings)
        if watcher is not None:
            tasks.append(asyncio.create_task(watcher, name="docker"))

    stopper = asyncio.create_task(stop.wait())
    ready: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(bundle.agent.ready.wait(), api_started.wait()))
    try:
        done, _ = await asyncio.wait({ready, stopper, *tasks},
                                     return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t in tasks:
                t.result()
        if not stop.is_set():
            _banner(settings, state_dir, host, port, token)
            done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t in tasks:
                    t.result()  # a task that ended on its own is an error: say what
        print("haplane up: stopping", file=sys.stderr)
        return 0
    finally:
        stopper.cancel()
        await stop_tasks([*tasks, ready])
        await bundle.close()


def _docker_watcher(registry: RegistryStore, settings: Settings) -> Coroutine[Any, Any, None] | None:
    """A coroutine watching the local Docker daemon, if one is reachable; None otherwise."""
    from haplane.sources.base import StoreSink
    from haplane.sources.docker import DockerSource, docker_socket_reachable

    if not docker_socket_reachable(settings):
        log.info("no Docker daemon reachable (DOCKER_HOST or /var/run/docker.sock): not watching Docker")
        return None
    source = DockerSource.from_settings(settings)
    log.info("watching the local Docker daemon as source %s", source.name)
    run: Coroutine[Any, Any, None] = source.run(StoreSink(registry))
    return run


def _banner(settings: object, state_dir: Path, host: str, port: int, token: str | None) -> None:
    from haplane.settings import Settings

    assert isinstance(settings, Settings)
    scheme = "https" if settings.tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    api = f"{scheme}://{shown}:{port}"
    proxy_host = "127.0.0.1" if settings.http_address in ("*", "0.0.0.0") else settings.http_address
    loopback = True
    with contextlib.suppress(ValueError):
        loopback = ipaddress.ip_address(host).is_loopback
    lines = [
        f"haplane up: state in {state_dir}",
        f"  proxy   http://{proxy_host}:{settings.http_port}/   (HAProxy; master CLI {state_dir}/master.sock)",
        *([f"  https   https://{proxy_host}:{settings.https_port}/   (certificates: PUT /certificates/NAME"
           + (f", {settings.certs_dir}" if settings.certs_dir else "")
           + (", ACME for tls: auto services" if settings.acme_directory else "") + ")"]
          if settings.https_port else []),
        f"  API     {api}/   (OpenAPI: {api}/docs)",
        f"  UI      {api}/ui/",
    ]
    if token and loopback:
        lines.append(f"  login   {api}/ui/login?token={token}")
        lines.append(f"  token   {token}   (admin; kept in {state_dir}/admin.token unless HAPLANE_TOKEN is set)")
    if settings.haproxy_stats_port:
        stats = f"http://{settings.haproxy_stats_address}:{settings.haproxy_stats_port}/"
        lines.append(f"  stats   {stats}   (HAProxy's stats page and /metrics; user {settings.haproxy_stats_user}, "
                     "password in "
                     f"{state_dir}/haproxy-stats.password unless HAPLANE_HAPROXY_STATS_PASSWORD is set)")
    lines.append("Ctrl-C stops everything, HAProxy included." if not settings.keep_haproxy else
                 "Ctrl-C stops haplane and leaves HAProxy serving (--keep-haproxy).")
    print("\n".join(lines), flush=True)


def _fallbacks(settings: Settings) -> dict[str, str]:
    from haplane.agent.runner import fallback_names

    return fallback_names(settings)
