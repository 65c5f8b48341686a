"""The HTTPS pieces a process runs beside its agent (``haplane up``, ``haplane agent``): the certificates
directory watcher and the ACME manager, from the settings. Kept here so both commands wire them the same way."""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from haplane.settings import Settings
from haplane.store.base import Store

log = logging.getLogger("haplane.tls")

__all__ = ["EdgeParts", "add_tls_options", "edge_parts", "tls_overrides"]


def add_tls_options(p: argparse.ArgumentParser, https_default: str) -> None:
    g = p.add_argument_group("HTTPS")
    g.add_argument("--https-port", type=int, metavar="PORT",
                   help=f"the proxy's HTTPS port (0: none; default: {https_default}); certificates are served by SNI "
                        "through a crt-list, a self-signed default answers names no certificate covers")
    g.add_argument("--https-address", metavar="ADDR", help="the HTTPS bind address (default: * = all)")
    g.add_argument("--certs-dir", metavar="DIR",
                   help="serve the certificates in this directory (NAME.pem: chain + key, or NAME.pem + NAME.key), "
                        "watched for changes")
    g.add_argument("--acme-directory", metavar="URL",
                   help="order certificates for services with tls: auto from this ACME directory, e.g. "
                        "https://acme-v02.api.letsencrypt.org/directory (HTTP-01, answered by HAProxy)")
    g.add_argument("--acme-email", metavar="EMAIL", help="the ACME account's contact address")


def tls_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"https_port": args.https_port, "https_address": args.https_address, "certs_dir": args.certs_dir,
            "acme_directory": args.acme_directory, "acme_email": args.acme_email}


@dataclass
class EdgeParts:
    tasks: list[tuple[str, Coroutine[Any, Any, None]]] = field(default_factory=list)
    acme: Any = None  # haplane.tls.manager.AcmeManager, for /metrics


def edge_parts(settings: Settings, store: Store) -> EdgeParts:
    """The certificates directory source and the ACME manager the settings ask for (none by default)."""
    parts = EdgeParts()
    if settings.certs_dir:
        from haplane.tls.certdir import CertDirSource
        from haplane.tls.store import CertificateStore

        parts.tasks.append(("certs-dir", CertDirSource(settings.certs_dir, CertificateStore(store)).run()))
    if settings.acme_directory:
        from haplane.tls.manager import DAY, AcmeManager, AcmeOptions

        if not settings.https_port:
            log.warning("acme_directory is set but there is no HTTPS listener (https_port 0): certificates will "
                        "be ordered and stored, and served by the nodes that have one")
        options = AcmeOptions(settings.acme_directory, email=settings.acme_email,
                              verify=settings.acme_ca_bundle or True, renew_before=settings.acme_renew_days * DAY,
                              retry_base=settings.acme_retry, interval=settings.acme_interval,
                              http_port=settings.http_port or None)
        node = settings.node or socket.gethostname().split(".")[0]
        parts.acme = AcmeManager(store, options, node)
        parts.tasks.append(("acme", parts.acme.run()))
    return parts
