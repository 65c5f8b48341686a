"""An HTTPS client for tests and benchmarks: one TLS handshake with a chosen SNI, what the server presented.
No pytest in here."""

from __future__ import annotations

import socket
from dataclasses import dataclass

__all__ = ["Served", "tls_served"]


@dataclass(frozen=True)
class Served:
    """What an HTTPS server presented: the leaf's serial and names, and the ALPN protocol agreed."""

    serial: int
    hosts: tuple[str, ...]
    alpn: str | None


def tls_served(port: int, sni: str | None, *, cafile: str | None = None, host: str = "127.0.0.1",
               alpn: tuple[str, ...] = (), timeout: float = 5.0) -> Served:
    """One TLS handshake with SNI ``sni``. With ``cafile`` the chain is verified against it (and the name
    against ``sni``); without, anything is accepted (to look at a self-signed default)."""
    import ssl

    from cryptography import x509

    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    if not cafile:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            hosts = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            hosts = ()
        return Served(cert.serial_number, hosts, tls.selected_alpn_protocol())
