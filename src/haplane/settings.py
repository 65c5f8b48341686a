"""Typed settings, read once at start and passed down (never read from module state inside a function).

Precedence, strongest first: command-line options, ``HAPLANE_*`` environment variables, a YAML file
(``--config FILE`` or ``HAPLANE_CONFIG``), the defaults below. HSDO's variable names are understood where
they mean something here (see ``HSDO_ALIASES``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from haplane.errors import ConfigurationError

ENV_PREFIX = "HAPLANE_"
ROLES = ("read", "write", "admin")  # each role may do what the ones before it may

# HSDO setting name -> haplane setting name
HSDO_ALIASES: dict[str, str] = {
    "SERVER_HAPROXY_BACKEND_SERVER_MIN_WEIGHT": "ramp_min",
    "SERVER_HAPROXY_BACKEND_SERVER_MAX_WEIGHT": "ramp_max",
    "SERVER_HAPROXY_BACKEND_SERVER_INCREASE_WEIGHT": "ramp_step",
    "SERVER_HAPROXY_BACKEND_SERVER_INCREASE_WEIGHT_INTERVAL": "ramp_interval",
    "CLIENT_HAPROXY_SOCKET_PATH": "admin_socket",
    "HAPROXY_BACKEND_SERVERS_LIST_SIZE": "min_slots",
    "CLIENT_ASG_NAMES": "focus_groups",
    "CLIENT_ALL_SERVERS_IN_FALLBACK_BACKEND": "all_in_fallback",
    "SERVER_ASG_NAMES": "aws_asg_names",
    "DYNAMODB_TABLE_NAME": "dynamodb_table",
    "EXPORTER_PORT": "metrics_port",
    "INTERVAL": "poll_interval",
    "SERVER_CONSUL_API_URL": "consul_address",
    "SERVER_CONSUL_SERVICE_NAME": "consul_service",
}


@dataclass(frozen=True)
class Settings:
    state_dir: Path = Path(".state")
    store: str | None = None  # default: sqlite under state_dir
    listen: str = "127.0.0.1:9090"  # API and UI
    http_port: int = 8080  # the proxy's main frontend
    http_address: str = "*"
    token: str | None = None  # HAPLANE_TOKEN: one admin token
    tokens: dict[str, str] = field(default_factory=dict)  # token -> role (read|write|admin)
    session_secret: str | None = None  # signs UI session cookies (default: derived from the tokens)
    session_ttl: float = 43200.0  # seconds a UI session lasts
    tls_cert: str | None = None
    tls_key: str | None = None
    template: str | None = None
    haproxy_bin: str = "haproxy"
    admin_socket: str | None = None  # attach to an operator-run HAProxy instead of starting one
    master_socket: str | None = None
    reload_interval: float = 1.0  # at most one reload per this many seconds
    coalesce_ms: float = 1.0  # events closer than this are applied together
    resync_interval: float = 30.0  # full resync against HAProxy and the store
    ramp_min: int = 1
    ramp_max: int = 10
    ramp_step: int = 1
    ramp_interval: float = 30.0
    drain_timeout: float = 30.0
    min_slots: int = 8
    host_map: bool = True
    focus_zones: tuple[str, ...] = ()
    focus_groups: tuple[str, ...] = ()
    all_in_fallback: bool = False
    node: str | None = None  # this agent's name (default: host name)
    metrics_port: int = 0  # 0: no separate metrics listener (/metrics is on the API)
    metrics_address: str = "127.0.0.1"  # where the separate metrics listener binds (0.0.0.0: every address)
    poll_interval: float = 10.0
    aws_asg_names: tuple[str, ...] = ()
    dynamodb_table: str | None = None
    aws_region: str | None = None  # default: boto3's (AWS_DEFAULT_REGION, ~/.aws/config)
    aws_endpoint_url: str | None = None  # default: boto3's (AWS_ENDPOINT_URL)
    consul_address: str = "http://127.0.0.1:8500"  # default: CONSUL_HTTP_ADDR if set
    consul_service: str | None = None
    consul_token: str | None = None  # default: CONSUL_HTTP_TOKEN if set
    docker_keyword: str = "asteroid"
    docker_host: str | None = None  # default: DOCKER_HOST, else unix:///var/run/docker.sock
    docker_source: str | None = None  # default: docker-<hostname>
    docker_host_address: str = "127.0.0.1"  # for --network host containers and published ports
    docker_forget_after: float = 60.0  # daemon unreachable this long: withdraw its instances (0: keep them)

    def store_url(self) -> str:
        if self.store:
            return self.store
        if self.dynamodb_table:  # HSDO's DYNAMODB_TABLE_NAME: the AWS-native setup
            options = [f"region={self.aws_region}"] if self.aws_region else []
            options += [f"endpoint={self.aws_endpoint_url}"] if self.aws_endpoint_url else []
            return f"dynamodb://{self.dynamodb_table}" + ("?" + "&".join(options) if options else "")
        return f"sqlite:///{(self.state_dir / 'haplane.db').resolve()}"

    def all_tokens(self) -> dict[str, str]:
        tokens = dict(self.tokens)
        if self.token:
            tokens[self.token] = "admin"
        return tokens


def _coerce(name: str, raw: Any, current: Any) -> Any:
    kind = type(current) if current is not None else str
    try:
        if isinstance(current, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in ("1", "true", "yes", "on")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, tuple):
            if isinstance(raw, list | tuple):
                return tuple(str(x) for x in raw)
            return tuple(p.strip() for p in str(raw).split(",") if p.strip())
        if isinstance(current, Path):
            return Path(str(raw))
        if isinstance(current, dict):
            if isinstance(raw, dict):
                return {str(k): str(v) for k, v in raw.items()}
            # "tok1:admin,tok2:read"
            out = {}
            for part in str(raw).split(","):
                if part.strip():
                    tok, _, role = part.strip().rpartition(":")
                    out[tok] = role
            return out
        return kind(raw) if raw is not None else None
    except (TypeError, ValueError):
        raise ConfigurationError(f"setting {name}: {raw!r} is not a valid {kind.__name__}") from None


def load(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_file: str | None = None) -> Settings:
    """Settings from defaults < YAML file < environment < ``overrides`` (None values are ignored)."""
    env = os.environ if env is None else env
    settings = Settings()
    names = {f.name for f in fields(Settings)}
    layers: list[dict[str, Any]] = []
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            import yaml

            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise ConfigurationError(f"cannot read settings file {path}: {exc}") from None
        except Exception as exc:
            raise ConfigurationError(f"settings file {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigurationError(f"settings file {path} must hold a mapping")
        layer = {}
        for key, value in data.items():
            name = HSDO_ALIASES.get(str(key), str(key).lower().replace("-", "_"))
            if name not in names:
                raise ConfigurationError(f"settings file {path}: unknown setting {key!r}")
            layer[name] = value
        layers.append(layer)
    env_layer: dict[str, Any] = {}
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            name = key[len(ENV_PREFIX):].lower()
            if name in names:
                env_layer[name] = value
        elif key in HSDO_ALIASES:
            env_layer.setdefault(HSDO_ALIASES[key], value)
    layers.append(env_layer)
    layers.append({k: v for k, v in (overrides or {}).items() if v is not None and k in names})
    for layer in layers:
        for name, raw in layer.items():
            settings = replace(settings, **{name: _coerce(name, raw, getattr(Settings(), name))})
    for token, role in settings.tokens.items():
        if role not in ROLES:
            raise ConfigurationError(f"setting tokens: token ending {token[-4:]!r} has role {role!r}; "
                                     f"roles are {', '.join(ROLES)}")
        if len(token) < 8:
            raise ConfigurationError(f"setting tokens: a token must be at least 8 characters (role {role})")
    if settings.token is not None and len(settings.token) < 8:
        raise ConfigurationError("setting token (HAPLANE_TOKEN): must be at least 8 characters")
    return settings
