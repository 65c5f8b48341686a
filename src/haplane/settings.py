"""Typed settings, read once at start and passed down (never read from module state inside a function).

Precedence, strongest first: command-line options, ``HAPLANE_*`` environment variables, a YAML file
(``--config FILE`` or ``HAPLANE_CONFIG``), the defaults below. HSDO's variable names are understood where
they mean something here (see ``HSDO_ALIASES``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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

# never echoed in errors
SECRET_SETTINGS = frozenset({"token", "tokens", "session_secret", "consul_token", "etcd_password"})
_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
               "off": False}


class Settings(BaseSettings):
    """Every setting, with its default. Numbers, booleans, lists and token tables are parsed strictly."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=False,
                                      arbitrary_types_allowed=False)

    state_dir: Path = Path(".state")
    store: str | None = None  # default: sqlite under state_dir
    etcd_cacert: str | None = None  # an etcd:// store over TLS: the CA of etcd's server certificate (PEM)
    etcd_cert: str | None = None  # the client certificate etcd's --client-cert-auth asks for (PEM)
    etcd_key: str | None = None  # its private key (PEM)
    etcd_user: str | None = None  # etcd's RBAC user
    etcd_password: str | None = None  # its password (HAPLANE_ETCD_PASSWORD; never shown)
    listen: str = "127.0.0.1:9090"  # API and UI
    http_port: int = Field(8080, ge=0, le=65535)  # the proxy's main frontend
    http_address: str = "*"
    token: str | None = None  # HAPLANE_TOKEN: one admin token
    tokens: dict[str, str] = Field(default_factory=dict)  # token -> role (read|write|admin)
    session_secret: str | None = None  # signs UI session cookies (default: derived from the tokens)
    session_ttl: float = Field(43200.0, gt=0)  # seconds a UI session lasts
    tls_cert: str | None = None
    tls_key: str | None = None
    template: str | None = None
    haproxy_bin: str = "haproxy"
    admin_socket: str | None = None  # attach to an operator-run HAProxy instead of starting one
    master_socket: str | None = None
    reload_interval: float = Field(1.0, ge=0)  # at most one reload per this many seconds
    coalesce_ms: float = Field(1.0, ge=0)  # events closer than this are applied together
    resync_interval: float = Field(30.0, gt=0)  # full resync against HAProxy and the store
    ramp_min: int = Field(1, ge=0, le=256)
    ramp_max: int = Field(10, ge=0, le=256)
    ramp_step: int = Field(1, ge=1, le=256)
    ramp_interval: float = Field(30.0, ge=0)
    drain_timeout: float = Field(30.0, ge=0)
    min_slots: int = Field(8, ge=1, le=4096)
    host_map: bool = True
    focus_zones: tuple[str, ...] = ()
    focus_groups: tuple[str, ...] = ()
    all_in_fallback: bool = False
    node: str | None = None  # this agent's name (default: host name)
    metrics_port: int = Field(0, ge=0, le=65535)  # 0: no separate metrics listener (/metrics is on the API)
    metrics_address: str = "127.0.0.1"  # where the separate metrics listener binds (0.0.0.0: every address)
    poll_interval: float = Field(10.0, gt=0)
    aws_asg_names: tuple[str, ...] = ()
    dynamodb_table: str | None = None
    aws_region: str | None = None  # default: boto3's (AWS_DEFAULT_REGION, ~/.aws/config)
    aws_endpoint_url: str | None = None  # default: boto3's (AWS_ENDPOINT_URL)
    consul_address: str = "http://127.0.0.1:8500"  # default: CONSUL_HTTP_ADDR if set
    consul_service: str | None = None
    consul_token: str | None = None  # default: CONSUL_HTTP_TOKEN if set
    consul_cacert: str | None = None  # https Consul: its CA (PEM); default: CONSUL_CACERT, else the system's
    consul_cert: str | None = None  # client certificate for Consul's verify_incoming; default: CONSUL_CLIENT_CERT
    consul_key: str | None = None  # its key; default: CONSUL_CLIENT_KEY
    docker_keyword: str = "asteroid"
    docker_host: str | None = None  # default: DOCKER_HOST, else unix:///var/run/docker.sock
    docker_source: str | None = None  # default: docker-<hostname>
    docker_host_address: str = "127.0.0.1"  # for --network host containers and published ports
    docker_forget_after: float = Field(60.0, ge=0)  # daemon unreachable this long: withdraw its instances (0: keep)
    # HTTPS at the edge (0: no HTTPS listener; `haplane up` defaults to 8443)
    https_port: int = Field(0, ge=0, le=65535)
    https_address: str = "*"
    tls_min_version: str = "TLSv1.2"  # ssl-min-ver of every HTTPS bind
    # Mozilla's "intermediate" profile (TLS 1.2 ECDHE suites; the DHE ones need DH parameters HAProxy does not make)
    tls_ciphers: str = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
    tls_ciphersuites: str = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
    tls_alpn: str = "h2,http/1.1"
    tls_policy: str = "on"  # the tls policy of services the AWS and Consul watchers create (off|on|redirect|auto)
    tls_hsts: int | None = None  # and their HSTS max-age
    certs_dir: str | None = None  # a directory of PEM files to serve (watched)
    acme_directory: str | None = None  # an ACME directory URL: certificates for tls:auto services
    acme_email: str | None = None
    acme_ca_bundle: str | None = None  # trust this CA bundle for the ACME directory (a private ACME server)
    acme_renew_days: float = Field(30.0, gt=0)  # renew this many days before expiry
    acme_retry: float = Field(60.0, gt=0)  # first retry after a failed order (doubles, at most 6 h)
    acme_interval: float = Field(60.0, gt=0)  # how often the ordering node looks (service changes wake it)

    def store_url(self) -> str:
        if self.store:
            return self.store
        if self.dynamodb_table:  # HSDO's DYNAMODB_TABLE_NAME: the AWS-native setup
            options = [f"region={self.aws_region}"] if self.aws_region else []
            options += [f"endpoint={self.aws_endpoint_url}"] if self.aws_endpoint_url else []
            return f"dynamodb://{self.dynamodb_table}" + ("?" + "&".join(options) if options else "")
        return f"sqlite:///{(self.state_dir / 'haplane.db').resolve()}"

    def store_settings(self) -> dict[str, str | None]:
        """The engine settings ``open_store`` hands to the store's engine (``etcd_*`` for an etcd store)."""
        return {name: getattr(self, name) for name in ("etcd_cacert", "etcd_cert", "etcd_key", "etcd_user",
                                                       "etcd_password")}

    def all_tokens(self) -> dict[str, str]:
        tokens = dict(self.tokens)
        if self.token:
            tokens[self.token] = "admin"
        return tokens


    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # only what is passed in: load() layers the file, the environment and the options itself, so that
        # direct construction (tests, embedding) never picks up the process environment behind its back
        return (init_settings,)

    @field_validator("*", mode="before")
    @classmethod
    def _parse_text(cls, value: Any, info: Any) -> Any:
        """Environment variables and option values arrive as text: read them the way each type says."""
        if not isinstance(value, str):
            return value
        annotation = cls.model_fields[info.field_name].annotation
        kinds = set(get_args(annotation)) | {annotation, get_origin(annotation)}
        text = value.strip()
        if bool in kinds:
            word = _BOOL_WORDS.get(text.lower())
            if word is None:
                raise ValueError("must be a boolean: true/false, yes/no, on/off or 1/0")
            return word
        if tuple in kinds:
            return tuple(p.strip() for p in text.split(",") if p.strip())
        if dict in kinds:
            out: dict[str, str] = {}
            for part in text.split(","):
                if part.strip():
                    tok, sep, role = part.strip().rpartition(":")
                    if not sep or not tok:
                        raise ValueError("must be a comma-separated list of TOKEN:ROLE")
                    out[tok] = role
            return out
        if kinds & {int, float} and not text.isascii():
            raise ValueError("must be written with ASCII digits")
        if type(None) in kinds and str not in kinds and text == "":
            return None
        return text

    @field_validator("tokens")
    @classmethod
    def _roles(cls, tokens: dict[str, str]) -> dict[str, str]:
        for token, role in tokens.items():
            if role not in ROLES:
                raise ValueError(f"token ending {token[-4:]!r} has role {role!r}; roles are {', '.join(ROLES)}")
            if len(token) < 8:
                raise ValueError(f"a token must be at least 8 characters (role {role})")
        return tokens

    @field_validator("token")
    @classmethod
    def _token(cls, token: str | None) -> str | None:
        if token is not None and len(token) < 8:
            raise ValueError("must be at least 8 characters")
        return token

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied, validated like everything else."""
        return type(self).model_validate({**self.model_dump(), **changes})


def _read_yaml(path: str) -> dict[str, Any]:
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
    return data


def load(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_file: str | None = None) -> Settings:
    """Settings from defaults < YAML file < environment < ``overrides`` (None values are ignored).

    A value that does not parse is a ``ConfigurationError`` naming the setting and where it came from."""
    env = os.environ if env is None else env
    names = set(Settings.model_fields)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}  # setting -> where its value came from, for error messages
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        for key, value in _read_yaml(path).items():
            name = HSDO_ALIASES.get(str(key), str(key).lower().replace("-", "_"))
            if name not in names:
                raise ConfigurationError(f"settings file {path}: unknown setting {key!r}")
            merged[name] = value
            origin[name] = f"{key} in {path}"
    env_layer: dict[str, Any] = {}
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            name = key[len(ENV_PREFIX):].lower()
            if name in names:
                env_layer[name] = value
                origin[name] = key
        elif key in HSDO_ALIASES and HSDO_ALIASES[key] not in env_layer:
            env_layer[HSDO_ALIASES[key]] = value
            origin.setdefault(HSDO_ALIASES[key], key)
    merged.update(env_layer)
    for name, value in (overrides or {}).items():
        if value is not None and name in names:
            merged[name] = value if not isinstance(value, Path) else str(value)
            origin[name] = "--" + name.replace("_", "-")
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            where = origin.get(name, name)
            given = merged.get(name)
            shown = "(value hidden)" if name in SECRET_SETTINGS else (
                f"{given!r}" if len(repr(given)) <= 80 else repr(given)[:77] + "...")
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"setting {name} ({where}): {shown}: {msg}")
        raise ConfigurationError("; ".join(problems)) from None
