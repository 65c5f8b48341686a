"""A small certificate authority for tests and trials, shipped beside the real thing (like ``haplane.testing``).

``TestCA()`` makes a root (and, with ``intermediate=True``, an intermediate) and issues leaf certificates for
host names with the serial, validity and key type a test asks for::

    ca = TestCA()
    leaf = ca.issue(["web.example.test"], serial=1001)      # IssuedCert: chain_pem (leaf first), key_pem
    ca.root_pem                                             # what an HTTPS client trusts

It never touches the network or the disk unless told (``write_root(path)``). Use it to test what the registry
refuses (an expired leaf, a chain in the wrong order, a key of another certificate) with real certificates,
and to serve real TLS through HAProxy that a client verifies against ``root_pem``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from haplane.tls.certs import PrivateKey, private_key_pem

__all__ = ["IssuedCert", "TestCA"]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class IssuedCert:
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # leaf first, then intermediates (never the root)
    key: PrivateKey

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def chain_pem(self) -> str:
        return "".join(_pem(c) for c in self.chain)

    @property
    def key_pem(self) -> str:
        return private_key_pem(self.key)

    @property
    def pem(self) -> str:
        """Chain then key in one text: HAProxy's ``crt`` file form."""
        return self.chain_pem + self.key_pem


class TestCA:
    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "haplane test CA", intermediate: bool = False) -> None:
        now = dt.datetime.now(dt.UTC)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._ca_cert(name, self.root_key, None, now)
        self.issuer_key: PrivateKey = self.root_key
        self.issuer = self.root
        self.intermediate: x509.Certificate | None = None
        if intermediate:
            key = ec.generate_private_key(ec.SECP256R1())
            self.intermediate = self._ca_cert(name + " intermediate", key, (self.root, self.root_key), now)
            self.issuer, self.issuer_key = self.intermediate, key
        self._serial = 1000

    @staticmethod
    def _ca_cert(name: str, key: ec.EllipticCurvePrivateKey,
                 parent: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, now: dt.datetime
                 ) -> x509.Certificate:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer_name, signer = (parent[0].subject, parent[1]) if parent else (subject, key)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(signer, hashes.SHA256()))

    @property
    def root_pem(self) -> str:
        return _pem(self.root)

    def write_root(self, path: str | os.PathLike[str]) -> str:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(self.root_pem)
        return os.fspath(path)

    def issue(self, hosts: Sequence[str], *, serial: int | None = None, days: float = 90,
              not_before: dt.datetime | None = None, key: PrivateKey | None = None, rsa_bits: int = 0
              ) -> IssuedCert:
        """A leaf for ``hosts`` (DNS SANs; the first is the common name), valid ``days`` from ``not_before``
        (default: an hour ago). ``rsa_bits`` > 0 makes an RSA key, else P-256."""
        if serial is None:
            self._serial += 1
            serial = self._serial
        if key is None:
            key = rsa.generate_private_key(65537, rsa_bits) if rsa_bits else ec.generate_private_key(ec.SECP256R1())
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
                .issuer_name(self.issuer.subject).public_key(key.public_key()).serial_number(serial)
                .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.issuer_key, hashes.SHA256()))  # type: ignore[arg-type]
        chain = (cert,) if self.intermediate is None else (cert, self.intermediate)
        return IssuedCert(cert, chain, key)
