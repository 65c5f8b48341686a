"""Where the Docker daemon is and how to reach it, as the docker CLI reads it: ``DOCKER_HOST`` (``unix://`` or
``tcp://``), ``DOCKER_TLS_VERIFY`` / ``DOCKER_TLS`` and ``DOCKER_CERT_PATH``. Builds the httpx client the
watcher talks to the daemon with; ``docker_socket_reachable`` answers whether a daemon is there at all.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx

from haplane.errors import ConfigurationError

if TYPE_CHECKING:
    from haplane.settings import Settings

DEFAULT_SOCKET = "/var/run/docker.sock"


def docker_host(env: Mapping[str, str] | None = None) -> str:
    """The daemon's address as the docker CLI reads it: ``DOCKER_HOST``, else the default unix socket."""
    env = os.environ if env is None else env
    return env.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def host_and_env(settings_or_env: Settings | Mapping[str, str] | None = None) -> tuple[str, Mapping[str, str]]:
    """(host, env) from a Settings-like object (its ``docker_host``, else the environment), a mapping of
    environment variables, or None (the process environment)."""
    if settings_or_env is None:
        return docker_host(os.environ), os.environ
    if isinstance(settings_or_env, Mapping):
        return docker_host(settings_or_env), settings_or_env
    return getattr(settings_or_env, "docker_host", None) or docker_host(os.environ), os.environ


def _flag(env: Mapping[str, str], key: str) -> bool:
    return env.get(key, "") not in ("", "0", "false", "False")


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext | None:
    """TLS for a ``tcp://`` daemon, as the docker CLI does it: ``DOCKER_TLS_VERIFY`` (verify the daemon
    against ``ca.pem``) or ``DOCKER_TLS`` (encrypt, verify nothing), with the client certificate
    ``cert.pem``/``key.pem`` if present; all in ``DOCKER_CERT_PATH`` (default ``~/.docker``)."""
    verify = _flag(env, "DOCKER_TLS_VERIFY")
    if not (verify or _flag(env, "DOCKER_TLS")):
        return None
    certs = Path(env.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    if verify:
        ca = certs / "ca.pem"
        if not ca.is_file():
            raise ConfigurationError(f"DOCKER_TLS_VERIFY is set but the CA certificate {ca} is missing "
                                     "(set DOCKER_CERT_PATH to the folder holding ca.pem, cert.pem, key.pem)")
        ctx = ssl.create_default_context(cafile=str(ca))
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = certs / "cert.pem", certs / "key.pem"
    if cert.is_file() and key.is_file():
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"DOCKER_CERT_PATH {certs}: cannot load cert.pem/key.pem: {exc}") from None
    return ctx


def endpoint(host: str, env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """(base_url, transport keyword arguments) for httpx."""
    url = urlparse(host)
    if url.scheme == "unix":
        if not url.path:
            raise ConfigurationError(f"DOCKER_HOST {host!r}: a unix:// address needs a socket path")
        return "http://docker", {"uds": url.path}
    if url.scheme in ("tcp", "http", "https"):
        if not url.hostname:
            raise ConfigurationError(f"DOCKER_HOST {host!r}: a tcp:// address needs a host")
        ctx = tls_context(env)
        scheme = "https" if ctx is not None or url.scheme == "https" else "http"
        port = url.port or (2376 if scheme == "https" else 2375)
        shown = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        return f"{scheme}://{shown}:{port}", {"verify": ctx if ctx is not None else True}
    raise ConfigurationError(f"DOCKER_HOST {host!r}: only unix:// and tcp:// addresses are supported")


def client(host: str, env: Mapping[str, str], timeout: float | None = 10.0) -> httpx.AsyncClient:
    base, kw = endpoint(host, env)
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(**kw), base_url=base, timeout=timeout,
                             trust_env=False)


def docker_socket_reachable(settings_or_env: Settings | Mapping[str, str] | None = None) -> bool:
    """Does a Docker daemon answer ``/_ping`` where the watcher would look (``settings.docker_host``, else
    ``DOCKER_HOST``, else the default socket)? Cheap (1 s at most); never raises."""
    try:
        host, env = host_and_env(settings_or_env)
        base, kw = endpoint(host, env)
        with httpx.Client(transport=httpx.HTTPTransport(**kw), base_url=base, timeout=1.0,
                          trust_env=False) as c:
            return c.get("/_ping").status_code == 200
    except (httpx.HTTPError, OSError, ConfigurationError):
        return False
