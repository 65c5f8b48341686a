"""haplane agent: keep one HAProxy in sync with the store."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from haplane.commands._common import add_pool_options, add_settings_options, add_traffic_options, load_settings
from haplane.tasks import stop_tasks
from haplane.tls.wiring import tls_overrides

HELP = "run the agent beside one HAProxy: watch the store, apply changes (Runtime API first)"
DESCRIPTION = """\
Watch the store, compose the desired HAProxy configuration, and apply it: membership changes through the
Runtime API (no reload), structural changes through a checked seamless reload. By default haplane starts
HAProxy itself in STATE_DIR (master.sock, admin.sock, haproxy.cfg, its last good copy, the server-state
file); with --admin-socket and --master-socket it drives an HAProxy you run. The HAProxy haplane starts
outlives it: killed, haplane leaves it serving, and the next agent on STATE_DIR attaches to it; a clean
stop (SIGTERM, Ctrl-C) stops it too unless --keep-haproxy.

  haplane agent --state-dir /var/lib/haplane --http-port 80
  haplane agent --store etcd://10.0.0.1:2379,10.0.0.2:2379/haplane --state-dir /var/lib/haplane
  haplane agent --https-port 443 --acme-directory https://acme-v02.api.letsencrypt.org/directory

With --https-port, HTTPS is served too: certificates from the registry (PUT /certificates/NAME, --certs-dir, ACME)
are added, replaced and removed through the Runtime API, never by a reload. With several agents on one store,
exactly one orders ACME certificates at a time; every node serves them and answers the challenges.
"""


def configure(p: argparse.ArgumentParser) -> None:
    add_settings_options(p)
    p.add_argument("--http-port", type=int, help="the proxy's port (default: 8080)")
    p.add_argument("--http-address", help="the proxy's bind address (default: * = all)")
    p.add_argument("--template", metavar="FILE", help="render haproxy.cfg with this Jinja2 template")
    p.add_argument("--admin-socket", metavar="PATH", help="attach to a running HAProxy: its admin socket")
    p.add_argument("--master-socket", metavar="PATH", help="attach to a running HAProxy: its master CLI socket")
    p.add_argument("--haproxy-bin", metavar="PATH", help="the haproxy binary (default: haproxy on PATH)")
    p.add_argument("--maxconn", type=int, metavar="N",
                   help="HAProxy's maxconn (HAPLANE_MAXCONN; default: 4096, or less where the hard limit on open "
                        "files is low). Before starting HAProxy, haplane checks that its connections (2 descriptors "
                        "each) and health checks (1 per filled slot) fit in that limit, and says what to change")
    p.add_argument("--keep-haproxy", action="store_true", default=None,
                   help="on SIGTERM/Ctrl-C, leave the HAProxy haplane runs serving; the next agent on this state "
                        "directory attaches to it (HAPLANE_KEEP_HAPROXY; default: it is stopped)")
    p.add_argument("--reload-interval", type=float, metavar="SECONDS",
                   help="at most one reload per this many seconds (default: 1)")
    p.add_argument("--reload-budget", type=int, metavar="N",
                   help="at most N reloads of HAProxy in any minute (HAPLANE_RELOAD_BUDGET; default: 30; 0: no "
                        "limit). A structural change past it waits, said once in the log and the activity, and is "
                        "applied when the budget allows; runtime changes (instances, weights, routes) never wait")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus /metrics on this port (HSDO's EXPORTER_PORT; default: off)")
    add_traffic_options(p)
    add_pool_options(p)
    from haplane.tls.wiring import add_tls_options

    add_tls_options(p, "0 = none")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args, http_port=args.http_port, http_address=args.http_address,
                             admin_socket=args.admin_socket, master_socket=args.master_socket,
                             haproxy_bin=args.haproxy_bin, reload_interval=args.reload_interval,
                             reload_budget=args.reload_budget,
                             keep_haproxy=args.keep_haproxy, maxconn=args.maxconn,
                             metrics_port=args.metrics_port, **tls_overrides(args))
    return asyncio.run(_run(settings))


async def _run(settings: object) -> int:
    from haplane.agent.runner import build_agent
    from haplane.commands._common import refuse_a_foreign_store
    from haplane.settings import Settings

    assert isinstance(settings, Settings)
    bundle = build_agent(settings)
    await refuse_a_foreign_store(bundle.store)
    await bundle.open()
    log = logging.getLogger("haplane.agent")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(bundle.agent.run())
    tasks = {task}
    from haplane.tls.wiring import edge_parts

    edge = edge_parts(settings, bundle.store)
    tasks |= {asyncio.create_task(coro, name=name) for name, coro in edge.tasks}
    if settings.metrics_port:
        from prometheus_client import CollectorRegistry

        from haplane.agent.view import AgentView
        from haplane.api.server import serve_metrics
        from haplane.metrics import Metrics

        metrics = Metrics(CollectorRegistry(), agent=AgentView(bundle.agent))
        metrics.acme = edge.acme
        tasks.add(asyncio.create_task(serve_metrics(metrics, settings.metrics_address, settings.metrics_port)))
        log.info("metrics on http://%s:%d/metrics", settings.metrics_address, settings.metrics_port)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for t in done & tasks:
            t.result()  # raise what ended it
        log.info("stopping")
    finally:
        stopper.cancel()
        await stop_tasks(tasks)
        await bundle.close()
    return 0
