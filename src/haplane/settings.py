"""Typed settings, read once at start and passed down (never read from module state inside a function).

Precedence, strongest first: command-line options, ``HAPLANE_*`` environment variables, a YAML file
(``--config FILE`` or ``HAPLANE_CONFIG``), the defaults below. HSDO's variable names are understood where
they mean something here (see ``HSDO_ALIASES``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from haplane.errors import ConfigurationError

log = logging.getLogger(__name__)

ENV_PREFIX = "HAPLANE_"
ROLES = ("read", "write", "admin")  # each role may do what the ones before it may

# HSDO setting name -> haplane setting name (environment variable or key of HSDO's conf/env.yaml). An empty
# value is HSDO's "not set" (its defaults are " ") and is skipped.
HSDO_ALIASES: dict[str, str] = {
    "SERVER_HAPROXY_BACKEND_SERVER_MIN_WEIGHT": "ramp_min",
    "SERVER_HAPROXY_BACKEND_SERVER_MAX_WEIGHT": "ramp_max",
    "SERVER_HAPROXY_BACKEND_SERVER_INCREASE_WEIGHT": "ramp_step",
    "SERVER_HAPROXY_BACKEND_SERVER_INCREASE_WEIGHT_INTERVAL": "ramp_interval",
    "CLIENT_HAPROXY_SOCKET_PATH": "admin_socket",  # only with a master socket too: see _hsdo_rules
    "CLIENT_HAPROXY_BACKEND_NAME": "aws_service",
    "CLIENT_HAPROXY_BACKEND_BASE_NAME": "server_prefix",
    "CLIENT_HAPROXY_BACKEND_SERVER_PORT": "aws_port",
    "CLIENT_DEDICATED_ASG": "dedicated_asg",
    "CLIENT_HAPROXY_FALLBACK_BACKEND_NAME": "fallback_backend",
    "CLIENT_HAPROXY_FALLBACK_BACKEND_BASE_NAME": "fallback_server_prefix",
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
# read from a settings file only (in the environment boto3 reads them itself)
FILE_ONLY_ALIASES: dict[str, str] = {"AWS_DEFAULT_REGION": "aws_region", "AWS_ENDPOINT_URL": "aws_endpoint_url",
                                     "keyword": "docker_keyword"}

# Names the four older systems used that mean nothing here: a warning that says what to use instead (never an
# error: an HSDO env file or a Thalassa/Cosmonaut launch line must not stop haplane from starting).
FOREIGN_SETTINGS: dict[str, str] = {
    # HSDO
    "SERVER_MODE": "haplane picks the source by command: `haplane watch aws` (SERVER_MODE=aws) or "
                   "`haplane watch consul` (SERVER_MODE=consul)",
    "DEBUG": "use `haplane --log-level debug COMMAND`",
    "CLIENT_HAPROXY_BACKEND_LIST": "each service has its own backend here: run one `haplane watch aws --service "
                                   "BACKEND --port PORT` per entry (the backend is named after the service)",
    "AWS_PROFILE": "set AWS_PROFILE in the environment (boto3 reads it), not in the settings file",
    # Cosmonaut
    "COSMONAUT_LOG": "use `haplane --log-level debug watch docker`",
    "cosmosUrl": "`haplane watch docker` writes to the store itself, or to a remote API with --api URL",
    "cosmosTable": "the Docker watcher needs no table: each container names its service (SERVICE_NAME)",
    # Lambda-Registry
    "table": "a table is named by each /generate payload ({\"table\": ...}), not by a setting",
    # Thalassa (its command-line options, as keys of a settings file)
    "haproxySocketPath": "the agent makes its own admin socket under state_dir; to attach to a running HAProxy "
                         "set admin_socket and master_socket",
    "haproxyPidPath": "the agent runs HAProxy in master-worker mode and needs no pid file",
    "haproxyCfgPath": "the agent writes haproxy.cfg under state_dir (GET /haproxy/config shows it)",
    "templateFile": "use the template setting (a Jinja2 template; see docs/migrating.md)",
    "persistence": "the registry lives in the store; import the file once: `haplane import FILE`",
    "serviceReg": "use consul_address (http://HOST:8500) and `haplane watch consul`",
    "serviceRegPort": "use consul_address (http://HOST:PORT)",
    "datacenter": "point consul_address at an agent of that datacenter",
    "location": "has no meaning here",
    "label": "use the node setting (this agent's name in status and /nodes)",
    "sudo": "the agent runs HAProxy as its own user; bind ports below 1024 with setcap or a higher --http-port",
    "dbPath": "activity and stats need no database here",
}
_FOREIGN_ENV = frozenset({"SERVER_MODE", "DEBUG", "CLIENT_HAPROXY_BACKEND_LIST", "COSMONAUT_LOG"})
# HAPLANE_* variables of the project's scripts and tests, not settings
_TOOL_VARIABLES = frozenset({"HAPLANE_CONFIG", "HAPLANE_API_TOKEN", "HAPLANE_APT_PACKAGES", "HAPLANE_UV_VERSION",
                             "HAPLANE_GOLDEN_UPDATE", "HAPLANE_ARTIFACTS"})

# never echoed in errors
SECRET_SETTINGS = frozenset({"token", "tokens", "session_secret", "consul_token", "etcd_password",
                             "haproxy_stats_password"})
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
    max_heartbeat_batch: int = Field(10000, ge=1, le=1_000_000)  # instances in one POST /heartbeats (else 413)
    max_source_instances: int = Field(50000, ge=1, le=1_000_000)  # instances in one source set PUT (else 413)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)  # a request body the API reads (else 413, before parsing)
    # ... on the bulk writes: PUT /sources/{source}/instances, POST /heartbeats, /import, /generate
    max_bulk_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024)  # request line and headers (else 431)
    http_port: int = Field(8080, ge=0, le=65535)  # the proxy's main frontend
    http_address: str = "*"
    token: str | None = None  # HAPLANE_TOKEN: one admin token
    tokens: dict[str, str] = Field(default_factory=dict)  # token -> role (read|write|admin)
    session_secret: str | None = None  # signs UI session cookies (default: derived from the tokens)
    session_ttl: float = Field(43200.0, gt=0)  # seconds a UI session lasts
    login_failures_allowed: int = Field(5, ge=1, le=1_000_000)  # wrong tokens from one address before it waits (429)
    tls_cert: str | None = None
    tls_key: str | None = None
    template: str | None = None
    haproxy_bin: str = "haproxy"
    admin_socket: str | None = None  # attach to an operator-run HAProxy instead of starting one
    master_socket: str | None = None
    keep_haproxy: bool = False  # a clean stop of haplane leaves the HAProxy it runs serving (the next one adopts it)
    reload_interval: float = Field(1.0, ge=0)  # at most one reload per this many seconds
    reload_budget: int = Field(30, ge=0)  # at most this many reloads in any minute (0: no limit)
    coalesce_ms: float = Field(1.0, ge=0)  # events closer than this are applied together
    resync_interval: float = Field(30.0, gt=0)  # full resync against HAProxy and the store
    ramp_min: int = Field(1, ge=0, le=256)
    ramp_max: int = Field(10, ge=0, le=256)
    ramp_step: int = Field(1, ge=1, le=256)
    ramp_interval: float = Field(30.0, ge=0)
    drain_timeout: float = Field(30.0, ge=0)
    min_slots: int = Field(8, ge=1, le=4096)
    # HAProxy's maxconn; default: 4,096, or less where the hard limit on open files is low (haproxy/limits.py)
    maxconn: int | None = Field(None, ge=16, le=10_000_000)
    host_map: bool = True  # route hosts and path prefixes through runtime maps (False: one ACL per route)
    # pools of ready backends: spares per profile (0: no pools), and the profiles (BALANCE[:cookie=N][:check=P])
    pool_size: int = Field(8, ge=0, le=256)
    pool_profiles: tuple[str, ...] = ("roundrobin", "leastconn", "roundrobin:cookie=JSESSIONID")
    focus_zones: tuple[str, ...] = ()
    focus_groups: tuple[str, ...] = ()
    all_in_fallback: bool = False
    node: str | None = None  # this agent's name (default: host name)
    metrics_port: int = Field(0, ge=0, le=65535)  # 0: no separate metrics listener (/metrics is on the API)
    metrics_address: str = "127.0.0.1"  # where the separate metrics listener binds (0.0.0.0: every address)
    poll_interval: float = Field(10.0, gt=0)
    aws_asg_names: tuple[str, ...] = ()
    aws_service: str | None = None  # the service `watch aws` feeds (HSDO's CLIENT_HAPROXY_BACKEND_NAME)
    aws_port: int | None = Field(None, ge=1, le=65535)  # its instances' port (CLIENT_HAPROXY_BACKEND_SERVER_PORT)
    dedicated_asg: bool | None = None  # HSDO's CLIENT_DEDICATED_ASG: CLIENT_ASG_NAMES apply only when true
    server_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # aws_service's slots
    fallback_backend: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    fallback_server_prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
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
    # the access log (haplane.accesslog): HAProxy -> a UNIX datagram socket in the state directory -> here
    access_log: Literal["off", "sampled", "full"] = "off"  # sampled: 1 request in access_log_sample
    access_log_sample: int = Field(10, ge=2, le=100_000)
    access_log_format: Literal["json", "haproxy"] = "json"  # haproxy: HAProxy's httplog line, with names
    access_log_file: str = ""  # "": <state_dir>/access.log; "-": stdout
    access_log_max_bytes: int = Field(50 * 1024 * 1024, ge=4096)  # rotate past this size
    access_log_keep: int = Field(5, ge=0, le=1000)  # rotated files kept (access.log.1 .. .N)
    # HAProxy's own stats page and Prometheus exporter (/metrics), on a loopback port, with basic auth
    haproxy_stats_port: int = Field(0, ge=0, le=65535)  # 0: off
    haproxy_stats_address: str = "127.0.0.1"  # must be a loopback address
    haproxy_stats_user: str = Field("haplane", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    haproxy_stats_password: str | None = None  # default: made once, kept in <state_dir>/haproxy-stats.password

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

    @field_validator("pool_profiles")
    @classmethod
    def _pool_profiles(cls, texts: tuple[str, ...]) -> tuple[str, ...]:
        from haplane.compose import pool_profiles
        from haplane.errors import ValidationError as BadValue

        try:
            profiles = pool_profiles(texts)
        except BadValue as exc:
            raise ValueError(str(exc)) from None
        seen = [(p.balance, p.cookie, p.health) for p in profiles]
        if len(set(seen)) != len(seen):
            raise ValueError("a profile is given twice")
        return texts

    @field_validator("tokens")
    @classmethod
    def _roles(cls, tokens: dict[str, str]) -> dict[str, str]:
        for token, role in tokens.items():
            if role not in ROLES:
                raise ValueError(f"token ending {token[-4:]!r} has role {role!r}; roles are {', '.join(ROLES)}")
            if len(token) < 8:
                raise ValueError(f"a token must be at least 8 characters (role {role})")
        return tokens

    @field_validator("haproxy_stats_address")
    @classmethod
    def _loopback(cls, address: str) -> str:
        import ipaddress

        try:
            ok = ipaddress.ip_address(address).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("must be a loopback address (127.0.0.0/8 or ::1): HAProxy's stats page shows every "
                             "server and its exporter every figure")
        return address

    @field_validator("haproxy_stats_password")
    @classmethod
    def _stats_password(cls, password: str | None) -> str | None:
        if password is not None and (len(password) < 8 or not password.isprintable() or " " in password
                                     or '"' in password or "'" in password or "\\" in password):
            raise ValueError("must be at least 8 printable characters without spaces, quotes or backslashes")
        return password

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
         config_file: str | None = None, notices: list[str] | None = None) -> Settings:
    """Settings from defaults < YAML file < environment < ``overrides`` (None values are ignored).

    A value that does not parse, an unknown key of the file or an unknown ``HAPLANE_*`` variable is a
    ``ConfigurationError`` naming it (and where it came from). A name one of the four older systems used that
    means nothing here is a warning saying what to use instead (logged, and appended to ``notices``)."""
    env = os.environ if env is None else env
    names = set(Settings.model_fields)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}  # setting -> where its value came from, for error messages
    warnings: list[str] = []
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        for key, value in _read_yaml(path).items():
            key = str(key)
            if key in FOREIGN_SETTINGS:
                warnings.append(f"{key} (in {path}) has no meaning here: {FOREIGN_SETTINGS[key]}")
                continue
            alias = HSDO_ALIASES.get(key) or FILE_ONLY_ALIASES.get(key)
            if alias is not None and (value is None or value == ""):
                continue  # HSDO's "not set"
            name = alias or key.lower().replace("-", "_")
            if name not in names:
                raise ConfigurationError(f"settings file {path}: unknown setting {key!r}")
            merged[name] = value
            origin[name] = f"{key} in {path}"
    env_layer: dict[str, Any] = {}
    for key, value in env.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX):].lower()
            if name in names:
                env_layer[name] = value
                origin[name] = key
            elif not (key in _TOOL_VARIABLES or key.endswith("_BIN")
                      or key.startswith((ENV_PREFIX + "TEST_", ENV_PREFIX + "SETUP_"))):
                raise ConfigurationError(f"unknown setting {key} in the environment (settings: "
                                         "`haplane COMMAND --help` lists each with its HAPLANE_* name)")
        elif key in HSDO_ALIASES and value.strip() != "" and HSDO_ALIASES[key] not in env_layer:
            env_layer[HSDO_ALIASES[key]] = value  # a HAPLANE_* variable of the same setting wins
            origin[HSDO_ALIASES[key]] = key
        elif key in _FOREIGN_ENV:
            warnings.append(f"{key} (environment) has no meaning here: {FOREIGN_SETTINGS[key]}")
    merged.update(env_layer)
    for name, value in (overrides or {}).items():
        if value is not None and name in names:
            merged[name] = value if not isinstance(value, Path) else str(value)
            origin[name] = "--" + name.replace("_", "-")
    _hsdo_rules(merged, origin, warnings)
    try:
        settings = Settings(**merged)
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
    for text in warnings:
        log.warning("%s", text)
    if notices is not None:
        notices.extend(warnings)
    return settings


def _from_hsdo(origin: dict[str, str], name: str) -> bool:
    where = origin.get(name, "")
    return not where.startswith((ENV_PREFIX, "--")) and where.split(" ", 1)[0] in HSDO_ALIASES


def _hsdo_rules(merged: dict[str, Any], origin: dict[str, str], warnings: list[str]) -> None:
    """What HSDO's settings meant together, kept: CLIENT_ASG_NAMES only with CLIENT_DEDICATED_ASG=true; its
    socket path only to attach to a running HAProxy (which needs a master socket too)."""
    dedicated = merged.get("dedicated_asg")
    flag = _BOOL_WORDS.get(str(dedicated).strip().lower()) if isinstance(dedicated, str) else dedicated
    if "focus_groups" in merged and _from_hsdo(origin, "focus_groups") and flag is not True:
        warnings.append(f"{origin['focus_groups'].split(' ', 1)[0]} is not applied: CLIENT_DEDICATED_ASG is "
                        f"{'false' if flag is False else 'not set'} (as HSDO did); set CLIENT_DEDICATED_ASG=true "
                        "or HAPLANE_FOCUS_GROUPS to send other groups to the fallback backend")
        del merged["focus_groups"]
    if flag is True and not merged.get("focus_groups"):
        warnings.append("CLIENT_DEDICATED_ASG is true but CLIENT_ASG_NAMES names no group: every server stays "
                        "in the main backend")
    if "admin_socket" in merged and _from_hsdo(origin, "admin_socket") and not merged.get("master_socket"):
        warnings.append(f"CLIENT_HAPROXY_SOCKET_PATH={merged['admin_socket']} is not used: haplane starts and "
                        "reloads its own HAProxy (admin socket under state_dir); to drive an HAProxy you started, "
                        "run it in master-worker mode and set HAPLANE_ADMIN_SOCKET and HAPLANE_MASTER_SOCKET")
        del merged["admin_socket"]
