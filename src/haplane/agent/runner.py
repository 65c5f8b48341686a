"""Wiring for ``haplane agent`` and ``haplane up``: settings → the agent's collaborators.

Kept apart from cli.py so tests and benches can start a real agent in-process with the same wiring."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from haplane.accesslog import AccessLogCollector, LatencyWindow
from haplane.agent.activity import Activity
from haplane.agent.reconcile import Agent
from haplane.agent.state import AgentOptions
from haplane.compose import ComposeOptions, pool_profiles
from haplane.errors import ConfigurationError
from haplane.model.haproxy import Bind, EdgeTls, Globals
from haplane.model.values import ip_or_wildcard_bind
from haplane.plan import Policy
from haplane.settings import Settings
from haplane.store import Store, open_store
from haplane.typing import HAProxyControl

log = logging.getLogger("haplane.agent")
_SAFE_DIR = re.compile(r"[A-Za-z0-9_./@+-]+")


@dataclass
class AgentBundle:
    agent: Agent
    store: Store
    control: HAProxyControl
    activity: Activity
    state_dir: Path
    access_log: AccessLogCollector | None = None  # HAProxy's requests, when settings.access_log is not off
    latency: LatencyWindow | None = None  # response times of the last minute, from the access log

    async def open(self) -> None:
        """Start what runs beside the agent (the access log collector), before the agent starts HAProxy."""
        if self.access_log is not None:
            await self.access_log.start()

    async def close(self) -> None:
        """Stop HAProxy (if haplane runs it), the access log, the activity log and the store."""
        await self.control.stop()
        if self.access_log is not None:
            await self.access_log.stop()
        self.activity.close()
        await self.store.close()


def state_dir_of(settings: Settings) -> Path:
    """The absolute state directory, created; refused if HAProxy could not name paths inside it."""
    state_dir = settings.state_dir.expanduser().resolve()
    if not _SAFE_DIR.fullmatch(str(state_dir)):
        raise ConfigurationError(f"state directory {str(state_dir)!r} must be a path of A-Z a-z 0-9 _ . / @ + - "
                                 "only: HAProxy's config names sockets and maps inside it")
    state_dir.mkdir(parents=True, exist_ok=True)
    return state_dir


def agent_options(settings: Settings, state_dir: Path, control_global: tuple[str, ...] = (),
                  control_defaults: tuple[str, ...] = (), fd_limit: int | None = None) -> AgentOptions:
    from haplane.accesslog import SOCKET_NAME, log_target
    from haplane.haproxy.limits import auto_maxconn, hard_limit

    if fd_limit is None and not settings.admin_socket:
        fd_limit = hard_limit()  # the limit an HAProxy haplane starts runs under

    addr, port = ip_or_wildcard_bind(f"{settings.http_address}:{settings.http_port}", "http_port")
    logs = log_target(state_dir / SOCKET_NAME, settings.access_log, settings.access_log_sample)
    stats: dict[str, object] = {}
    if settings.haproxy_stats_port:
        from haplane.haproxy.stats_auth import crypt_sha512, stats_password

        stats = {"stats_bind": Bind(settings.haproxy_stats_address, settings.haproxy_stats_port),
                 "stats_user": settings.haproxy_stats_user,
                 "stats_password_hash": crypt_sha512(stats_password(state_dir, settings.haproxy_stats_password))}
    tls, certs_dir = https_options(settings, state_dir)
    compose = ComposeOptions(
        binds=(Bind(addr, port),),
        globals=Globals(maxconn=settings.maxconn or auto_maxconn(fd_limit), log_target=logs,
                        control_global=control_global, control_defaults=control_defaults,
                        tls_min_version=settings.tls_min_version if tls else None,
                        tls_ciphers=settings.tls_ciphers if tls else None,
                        tls_ciphersuites=settings.tls_ciphersuites if tls else None,
                        **stats),  # type: ignore[arg-type]
        min_slots=settings.min_slots,
        host_map=str(state_dir / "hosts.map") if settings.host_map else None,
        path_map=str(state_dir / "paths.map") if settings.host_map else None,
        focus_zones=frozenset(settings.focus_zones),
        focus_groups=frozenset(settings.focus_groups),
        all_in_fallback=settings.all_in_fallback,
        tls=tls,
        certs_dir=certs_dir,
        pools=pool_profiles(settings.pool_profiles),
        pool_size=settings.pool_size,
    )
    compose = replace(compose, **hsdo_names(settings))
    policy = Policy(ramp_min=settings.ramp_min, ramp_step=settings.ramp_step, ramp_interval=settings.ramp_interval,
                    drain_timeout=settings.drain_timeout)
    return AgentOptions(compose=compose, policy=policy, reload_interval=settings.reload_interval,
                        reload_budget=settings.reload_budget,
                        coalesce=settings.coalesce_ms / 1000, resync_interval=settings.resync_interval)


def fallback_names(settings: Settings) -> dict[str, str]:
    """HSDO's fallback backend name of ``aws_service`` (service -> name), for the registry's name checks."""
    return dict(hsdo_names(settings).get("fallback_names", ()))


def hsdo_names(settings: Settings) -> dict[str, Any]:
    """HSDO's backend and server-template names (CLIENT_HAPROXY_BACKEND_NAME and _BASE_NAME, the fallback's
    too) as compose options: the service ``aws_service`` keeps them, so dashboards keep their labels."""
    service = settings.aws_service
    if not service:
        return {}
    fallback = settings.fallback_backend
    prefixes = [(service, settings.server_prefix)] if settings.server_prefix else []
    if fallback and settings.fallback_server_prefix:
        prefixes.append((fallback, settings.fallback_server_prefix))
    return {"server_prefixes": tuple(prefixes), "fallback_names": ((service, fallback),) if fallback else ()}


_TLS_VERSIONS = ("TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_CIPHERS = re.compile(r"[A-Za-z0-9_+.:!-]{1,2000}")
_ALPN = re.compile(r"[A-Za-z0-9./-]{1,40}(,[A-Za-z0-9./-]{1,40}){0,9}")


def https_options(settings: Settings, state_dir: Path) -> tuple[EdgeTls | None, str]:
    """The HTTPS listener (``https_port`` > 0): binds, the crt-list and default certificate in the state
    directory (the default made, self-signed, at first start), the policy maps; and the global TLS defaults.
    Each value is checked the way HAProxy reads it (one word)."""
    if not settings.https_port:
        return None, ""
    from haplane.tls.crtlist import CertFiles

    addr, port = ip_or_wildcard_bind(f"{settings.https_address}:{settings.https_port}", "https_port")
    if settings.https_port == settings.http_port:
        raise ConfigurationError(f"https_port {settings.https_port} is the http_port too: give each its own")
    if settings.tls_min_version not in _TLS_VERSIONS:
        raise ConfigurationError(f"setting tls_min_version: {settings.tls_min_version!r} is not one of "
                                 + ", ".join(_TLS_VERSIONS))
    for name in ("tls_ciphers", "tls_ciphersuites"):
        if not _CIPHERS.fullmatch(getattr(settings, name)):
            raise ConfigurationError(f"setting {name}: must be an OpenSSL cipher list (names joined by ':')")
    if not _ALPN.fullmatch(settings.tls_alpn):
        raise ConfigurationError("setting tls_alpn: must be protocol names joined by ',' (h2,http/1.1)")
    files = CertFiles(state_dir)
    files.ensure_default()
    tls = EdgeTls((Bind(addr, port),), str(files.default_path), str(files.crt_list_path),
                  str(state_dir / "acme.map"), str(state_dir / "tls-policy.map"), str(state_dir / "hsts.map"),
                  https_port=port, alpn=settings.tls_alpn)
    return tls, str(files.certs_dir)


AGENT_SETTINGS = "agent-settings.json"
# what shapes the config an agent renders and where it finds its store and HAProxy: `haplane status`, `plan` and
# `events` read these back from the state directory, so they see what the agent sees
SHAPING = ("store", "http_port", "http_address", "template", "haproxy_bin", "admin_socket", "master_socket",
           "reload_interval", "ramp_min", "ramp_max", "ramp_step", "ramp_interval", "drain_timeout", "min_slots",
           "host_map", "pool_size", "pool_profiles", "focus_zones", "focus_groups", "all_in_fallback", "node",
           "etcd_cacert", "etcd_cert",
           "etcd_key", "etcd_user", "aws_service", "server_prefix", "fallback_backend", "fallback_server_prefix",
           "access_log", "access_log_sample", "access_log_format", "access_log_file", "haproxy_stats_port",
           "haproxy_stats_address", "haproxy_stats_user", "https_port", "https_address", "tls_min_version",
           "tls_ciphers", "tls_ciphersuites", "tls_alpn")


def save_agent_settings(settings: Settings, state_dir: Path) -> None:
    """Record the settings that shape this agent's work in the state directory (no tokens; owner-only)."""
    import json
    import os

    data = {name: getattr(settings, name) for name in SHAPING}
    data["store"] = settings.store_url()
    path = state_dir / AGENT_SETTINGS
    tmp = path.with_suffix(".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, default=list)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot record the agent's settings in %s: %s", path, exc)


def saved_agent_settings(state_dir: Path) -> dict[str, object]:
    """What ``save_agent_settings`` recorded in ``state_dir``; empty if nothing (or nothing readable) is there."""
    import json

    try:
        data = json.loads((state_dir / AGENT_SETTINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if k in SHAPING} if isinstance(data, dict) else {}


def build_agent(settings: Settings, store: Store | None = None, record: bool = True) -> AgentBundle:
    """An agent driving a HAProxy it starts (or the operator's, when ``admin_socket`` is set). ``record``: write
    the settings that shape it into the state directory (``haplane plan`` builds one only to read its wiring)."""
    from haplane.haproxy.control import AttachedHAProxy, ManagedHAProxy
    from haplane.haproxy.limits import hard_limit
    from haplane.haproxy.process import control_globals
    from haplane.render import compile_template

    state_dir = state_dir_of(settings)
    if record:
        save_agent_settings(settings, state_dir)
    control: HAProxyControl
    if settings.admin_socket and not settings.master_socket:
        raise ConfigurationError("attaching to a running HAProxy needs both admin_socket and master_socket")
    # attached: the configs haplane writes keep the operator's admin socket where the operator put it; managed:
    # HAProxy inherits haplane's hard limit on open files, and haplane sizes it (haproxy/limits.py)
    attached = bool(settings.admin_socket and settings.master_socket)
    fd_limit = None if attached else hard_limit()
    try:
        cl = control_globals(state_dir, hard_stop_after=f"{int(max(settings.drain_timeout, 5))}s",
                             admin_socket=settings.admin_socket or None, fd_limit=fd_limit)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    lines = (cl.global_lines, cl.defaults_lines)
    if settings.admin_socket and settings.master_socket:
        control = AttachedHAProxy(settings.admin_socket, settings.master_socket, str(state_dir / "haproxy.cfg"),
                                  settings.haproxy_bin)
    else:
        control = ManagedHAProxy(state_dir, settings.haproxy_bin, keep_running=settings.keep_haproxy,
                                 fd_limit=fd_limit)
    template = None
    if settings.template:
        try:
            template = compile_template(Path(settings.template).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"cannot read template {settings.template}: {exc.strerror}") from None
    store = store or open_store(settings.store_url(), settings.store_settings())
    activity = Activity(state_dir / "events.jsonl")
    agent = Agent(store, control, agent_options(settings, state_dir, *lines, fd_limit=fd_limit), activity, template)
    if settings.node or store.url.startswith("etcd://"):
        # several nodes share the store: say how this one is doing (haplane status, GET /nodes)
        import socket

        from haplane.agent.nodes import NodeReporter

        agent.reporter = NodeReporter(store, settings.node or socket.gethostname().split(".")[0], agent)
    bundle = AgentBundle(agent, store, control, activity, state_dir)
    if record and settings.access_log != "off":
        bundle.latency, bundle.access_log = access_log_of(settings, state_dir, agent)
    return bundle


def access_log_of(settings: Settings, state_dir: Path, agent: Agent) -> tuple[LatencyWindow, AccessLogCollector]:
    """The collector of HAProxy's access log for ``agent``: names from the config the agent applies."""
    from haplane.accesslog import SOCKET_NAME, names_of, open_sink, resolver

    cache: dict[str, object] = {}

    def names() -> dict[tuple[str, str], tuple[str, str | None]]:
        config = agent.desired
        if config is None:
            return {}
        if cache.get("config") is not config:  # a new config: new names (computed once per change)
            cache["config"], cache["names"] = config, names_of(config)
        found: dict[tuple[str, str], tuple[str, str | None]] = cache["names"]  # type: ignore[assignment]
        return found

    latency = LatencyWindow()
    sink = open_sink(settings.access_log_file, state_dir / "access.log", settings.access_log_max_bytes,
                     settings.access_log_keep)
    collector = AccessLogCollector(state_dir / SOCKET_NAME, sink, resolver(names), settings.access_log_format,
                                   observers=[latency.observe])
    return latency, collector
