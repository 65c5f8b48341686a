"""Certificates for tests, made by the tests: a CA, server certificates for 127.0.0.1 and client certificates.
No pytest in here.

``make_pki(base)`` writes, under ``base``:

- ``ca.pem`` / ``ca-key.pem``: the CA;
- ``server.pem`` / ``server-key.pem``: a server certificate for 127.0.0.1, ::1 and localhost, signed by the CA;
- ``client.pem`` / ``client-key.pem``: a client certificate signed by the CA, whose subject has no CommonName
  (O=haplane-client): etcd's JSON gateway refuses a client certificate with a CommonName when etcd's own
  authentication is on as well (it could not map the name to an etcd user across the gateway);
- ``other-ca.pem``, ``other-client.pem`` / ``other-client-key.pem``: a client certificate signed by another CA,
  which a server trusting ``ca.pem`` must refuse.

Keys are P-256, certificates valid from five minutes ago for a day.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    base: Path

    @property
    def ca(self) -> Path:
        return self.base / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.base / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.base / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.base / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.base / "client-key.pem"

    @property
    def other_ca(self) -> Path:
        return self.base / "other-ca.pem"

    @property
    def other_client_cert(self) -> Path:
        return self.base / "other-client.pem"

    @property
    def other_client_key(self) -> Path:
        return self.base / "other-client-key.pem"


def make_pki(base: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    base.mkdir(parents=True, exist_ok=True)

    def name(cn: str) -> x509.Name:
        if cn.startswith("O="):
            return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cn[2:])])
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    def write_cert(cert: x509.Certificate, path: Path) -> None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)))

    def make_ca(cn: str, stem: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (builder(cn, name(cn), key)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False),
                               critical=True)
                .sign(key, hashes.SHA256()))
        write_cert(cert, base / f"{stem}.pem")
        write_key(key, base / f"{stem}-key.pem")
        return cert, key

    def leaf(stem: str, cn: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], server: bool) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        b = builder(cn, ca[0].subject, key)
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1")),
                x509.DNSName("localhost")]), critical=False)
            # etcd uses one certificate for serving and for its own connections to peers/gateway
            usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        else:
            usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        write_cert(b.sign(ca[1], hashes.SHA256()), base / f"{stem}.pem")
        write_key(key, base / f"{stem}-key.pem")

    ca = make_ca("haplane-test-ca", "ca")
    leaf("server", "server", ca, server=True)
    leaf("client", "O=haplane-client", ca, server=False)
    other = make_ca("another-ca", "other-ca")
    leaf("other-client", "O=haplane-client", other, server=False)
    return Pki(base)
