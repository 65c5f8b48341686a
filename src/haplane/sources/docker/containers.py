"""One container as the registry sees it: ``GET /containers/{id}/json`` → ``ContainerView`` (an instance, the
service fields the container states, or why it is skipped). PURE: the unit tests feed it recorded JSON.

Which containers: the keyword (default ``asteroid``, case-insensitive) in the container's name, or the label
``haplane.enable=true``. What they are: Cosmonaut's env vars ``SERVICE_NAME``, ``CONFIG_MODE``, ``PREDICATE``,
``COOKIE``, ``PORT`` and the labels ``haplane.service``, ``haplane.mode``, ``haplane.predicate``,
``haplane.cookie``, ``haplane.port``, ``haplane.version``, ``haplane.weight``, ``haplane.zone``, ``haplane.tls``,
``haplane.hsts``; a label wins over the env var. A container with a wrong or missing value is skipped with a
warning naming it and the value (once per distinct problem); the others carry on.

Instance ids: ``<container name>.<host>``, where host is the source name without its ``docker-`` prefix
(default: this machine's short host name), so the same compose project on two hosts pushing to one registry
gives two instances, not one fought over.

Where they are: the label ``haplane.address`` if set; else, for ``--network host``, the host address setting
(default 127.0.0.1); else the container's address on its first network with one; else the published host
port of ``PORT`` on the host address (or the binding's own HostIp). Only a running, unpaused container is an
instance; one with a HEALTHCHECK is routable only while ``healthy``: while ``starting`` or ``unhealthy`` it
is pushed with ``healthy=false``, so it keeps its slot (in maintenance) and comes back without a reload.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from haplane.errors import MISSING, ValidationError
from haplane.model.records import Instance, Service

LABEL = "haplane."
ENV_KEYS = {"service": "SERVICE_NAME", "mode": "CONFIG_MODE", "predicate": "PREDICATE", "cookie": "COOKIE",
            "port": "PORT"}


@dataclass(frozen=True)
class ContainerView:
    """What one container means for the registry: an instance and the service fields it states, or why it is
    skipped. ``started`` orders containers that disagree about their service (the latest wins)."""

    name: str
    instance: Instance | None = None
    service: Service | None = None
    stated: Mapping[str, Any] = field(default_factory=dict)  # the service fields the container names
    skipped: str | None = None  # a warning: wrong or missing value
    selected: bool = True
    started: tuple[str, str] = ("", "")
    stop_signal: int | None = None  # Config.StopSignal, as a number


TERMINATING = {int(signal.SIGINT), int(signal.SIGQUIT), int(signal.SIGKILL), int(signal.SIGTERM)}


def signal_number(raw: Any) -> int | None:
    """``15``, ``SIGTERM`` or ``TERM`` as 15; None when unknown or empty."""
    text = str(raw or "").strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
    except KeyError:
        return None


def _env(config: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for item in config.get("Env") or []:
        key, sep, value = str(item).partition("=")
        if sep:
            out[key] = value
    return out


_STARTED = re.compile(r"^([0-9T:-]+)(?:\.([0-9]+))?")


def _started_key(raw: Any) -> tuple[str, str]:
    """State.StartedAt (RFC 3339 with up to 9 fraction digits, trailing zeros trimmed) as a sortable key."""
    m = _STARTED.match(str(raw or ""))
    return (m.group(1), (m.group(2) or "").ljust(9, "0")) if m else ("", "")


def container_view(info: Mapping[str, Any], keyword: str, host_address: str = "127.0.0.1",
                   qualifier: str | None = None) -> ContainerView:
    """Turn ``GET /containers/{id}/json`` into a ContainerView. Pure: the unit tests feed it recorded JSON.
    ``qualifier`` (the host) is appended to the container name to make the instance id."""
    name = str(info.get("Name", "")).lstrip("/") or str(info.get("Id", ""))[:12]
    config = info.get("Config") or {}
    labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    if not (keyword.lower() in name.lower() or labels.get(LABEL + "enable", "").strip().lower() == "true"):
        return ContainerView(name, selected=False)
    state = info.get("State") or {}
    started = _started_key(state.get("StartedAt"))
    stop_signal = signal_number(config.get("StopSignal")) or int(signal.SIGTERM)
    if not state.get("Running") or state.get("Paused") or state.get("Restarting"):
        return ContainerView(name, started=started, stop_signal=stop_signal)  # selected, not an instance now
    env = _env(config)

    def value(key: str) -> str | None:
        if LABEL + key in labels:
            return labels[LABEL + key].strip()
        env_key = ENV_KEYS.get(key)
        raw = env.get(env_key) if env_key else None
        return raw.strip() if raw is not None else None

    def source_of(key: str) -> str:
        return f"label {LABEL}{key}" if LABEL + key in labels else f"env {ENV_KEYS.get(key, '?')}"

    where = f"container {name}"
    try:
        svc_name = value("service")
        if not svc_name:
            raise ValidationError(f"{where}: label {LABEL}service / env SERVICE_NAME", MISSING, "is missing")
        stated: dict[str, Any] = {}
        for key in ("mode", "predicate", "cookie", "tls"):
            raw = value(key)
            if raw:
                stated[key] = {"true": "on", "false": "off"}.get(raw.lower(), raw) if key == "tls" else raw
        hsts = value("hsts")
        if hsts:
            if not hsts.isdigit():
                raise ValidationError(f"{where}: label {LABEL}hsts", hsts, "is not a number of seconds")
            stated["hsts"] = int(hsts)
        if "predicate" in stated:
            stated.setdefault("mode", "host")  # the predicate's meaning depends on it; Cosmonaut's default
        port_raw = value("port")
        if port_raw:
            if not port_raw.isdigit():
                raise ValidationError(f"{where}: {source_of('port')}", port_raw, "is not a port number")
            stated["port"] = int(port_raw)
        try:
            service = Service.from_dict({"name": svc_name, **stated}, where)
        except ValidationError as exc:  # name the label or env var the bad value came from
            key = exc.field.rsplit(".", 1)[-1]
            if key in ENV_KEYS or key in ("name", "tls", "hsts"):
                key = "service" if key == "name" else key
                raise ValidationError(f"{where}: {source_of(key)}", exc.value, exc.rule) from None
            raise
        address = labels.get(LABEL + "address", "").strip() or None
        port = service.port
        network = str((info.get("HostConfig") or {}).get("NetworkMode", ""))
        settings = info.get("NetworkSettings") or {}
        if not address and network == "host":
            address = host_address
        if not address:
            for net in (settings.get("Networks") or {}).values():
                if net and net.get("IPAddress"):
                    address = str(net["IPAddress"])
                    break
        if not address and port is not None:
            published = (settings.get("Ports") or {}).get(f"{port}/tcp") or []
            if published:
                host_ip = published[0].get("HostIp") or ""
                address = host_address if host_ip in ("", "0.0.0.0", "::") else host_ip
                port = int(published[0]["HostPort"])
        if not address:
            raise ValidationError(f"{where}: address", MISSING, "cannot be found (no network address, no "
                                                            f"{LABEL}address label, no published PORT)")
        if port is None:
            raise ValidationError(f"{where}: label {LABEL}port / env PORT", MISSING, "is missing")
        health = (state.get("Health") or {}).get("Status")
        inst_doc: dict[str, Any] = {"id": f"{name}.{qualifier}" if qualifier else name, "service": service.name,
                                    "address": address, "port": port, "healthy": health in (None, "", "healthy")}
        for key in ("version", "zone"):
            if value(key):
                inst_doc[key] = value(key)
        if value("weight"):
            raw = value("weight") or ""
            if not raw.isdigit():
                raise ValidationError(f"{where}: label {LABEL}weight", raw, "is not a whole number")
            inst_doc["weight"] = int(raw)
        try:
            instance = Instance.from_dict(inst_doc, where)
        except ValidationError as exc:
            key = exc.field.rsplit(".", 1)[-1]
            if key in ("version", "zone", "weight", "address"):
                raise ValidationError(f"{where}: label {LABEL}{key}", exc.value, exc.rule) from None
            raise
    except ValidationError as exc:
        return ContainerView(name, skipped=str(exc), started=started, stop_signal=stop_signal)
    return ContainerView(name, instance, service, stated, started=started, stop_signal=stop_signal)
