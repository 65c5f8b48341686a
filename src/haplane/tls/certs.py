"""Certificates and keys: parse, validate, describe, and make them. PURE (computation with ``cryptography``;
no I/O, the clock is passed in).

``parse_bundle(chain_pem, key_pem, now)`` is the one door every certificate comes through (the API, a watched
directory, an ACME order): it refuses, with the field and the rule, a PEM that does not parse, a key that does
not match the leaf, an expired or not yet valid leaf, a chain in the wrong order, an encrypted key, a key
HAProxy cannot serve, and a bundle too large for one Runtime API payload. What it returns is canonical: the
chain re-encoded by ``cryptography`` and the key as unencrypted PKCS#8, so the text handed to HAProxy has no
empty line (an empty line ends a CLI payload, and what follows it would run as commands) and nothing that did
not come out of the parser.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from haplane.errors import MISSING, BadRequest, ValidationError

__all__ = [
    "MAX_BUNDLE_BYTES", "CertBundle", "CertInfo", "describe", "make_csr", "make_key", "make_self_signed",
    "parse_bundle", "parse_chain", "parse_key", "private_key_pem", "split_combined", "validate_cert_name",
]

# HAProxy reads a whole CLI command into one buffer (tune.bufsize, 16384 by default): the
# "set ssl cert <path> <<" line, the payload and the empty line must fit, with room for the path.
MAX_BUNDLE_BYTES = 15_000
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)
_PEM_ANY = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
# File names HAProxy gives a meaning to beside a certificate (crt: ".key", ".issuer", ".ocsp", ".sctl").
_RESERVED_SUFFIXES = (".key", ".issuer", ".ocsp", ".sctl")
_CERT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def validate_cert_name(value: object, field: str = "name") -> str:
    """A certificate's name: it becomes a file name (``<name>.pem``) in the state directory and a word of a
    Runtime API command, so: 1-100 of A-Z a-z 0-9 _ . -, starting with a letter or digit (no path separator,
    no newline, no space), and not ending in an extension HAProxy reserves."""
    if value is MISSING or value is None:
        raise ValidationError(field, MISSING, "is required")
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a string")
    if not _CERT_NAME.fullmatch(value):
        raise ValidationError(field, value, "is not a valid certificate name (1-100 of A-Z a-z 0-9 _ . -, "
                                            "starting with a letter or digit: no '/', no newline, no space)")
    if value.lower().endswith(_RESERVED_SUFFIXES):
        raise ValidationError(field, value, "must not end in .key, .issuer, .ocsp or .sctl (HAProxy reads files "
                                            "with those names beside a certificate)")
    return value


def _pem_summary(text: str) -> str:
    """How an error shows a PEM value: never the text itself (it may hold a private key)."""
    kinds = _PEM_ANY.findall(text)
    return f"<{len(text)} characters" + (f": {', '.join(kinds)}>" if kinds else ", no PEM block>")


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What a certificate says about itself (the public facts the API, status and metrics show)."""

    subject: str
    issuer: str
    serial: str  # hex, upper case, as HAProxy's "show ssl cert" prints it
    not_before: float  # epoch seconds
    not_after: float
    hosts: tuple[str, ...]  # DNS names of the SAN (the subject CN when there is no SAN), lower case
    sha1: str  # hex upper case of the leaf's DER, as "show ssl cert" prints "SHA1 FingerPrint"
    key_type: str  # "RSA2048", "EC256", ... as "show ssl cert" prints "Algorithm"

    def covers(self, host: str) -> bool:
        """The leaf serves ``host`` (exact name, or a ``*.`` wildcard for one label), as SNI selection does."""
        host = host.lower()
        for name in self.hosts:
            if name == host:
                return True
            if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
                return True
        return False


@dataclass(frozen=True, slots=True)
class CertBundle:
    """A validated leaf + chain + key. ``chain_pem`` is the certificates only (public); ``key_pem`` the key;
    ``pem`` the two together, as HAProxy loads a ``crt`` file and as ``set ssl cert`` takes its payload."""

    chain_pem: str
    key_pem: str
    info: CertInfo

    @property
    def pem(self) -> str:
        return self.chain_pem + self.key_pem

    @property
    def fingerprint(self) -> str:
        """sha256 of the whole bundle: changes when the chain or the key does."""
        return hashlib.sha256(self.pem.encode()).hexdigest()


def _name_text(name: x509.Name) -> str:
    """OpenSSL's one-line form, as HAProxy prints it (``/C=US/O=Example/CN=example.com``)."""
    out = []
    for rdn in name.rdns:
        for attr in rdn:
            short = {NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O", NameOID.COUNTRY_NAME: "C",
                     NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.LOCALITY_NAME: "L",
                     NameOID.STATE_OR_PROVINCE_NAME: "ST"}.get(attr.oid, attr.oid.dotted_string)
            out.append(f"/{short}={attr.value!s}")
    return "".join(out)


def _hosts(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(dict.fromkeys(names))


def _key_type(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC{key.curve.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "ED25519"
    return type(key).__name__


def describe(cert: x509.Certificate) -> CertInfo:
    return CertInfo(
        subject=_name_text(cert.subject), issuer=_name_text(cert.issuer), serial=f"{cert.serial_number:X}",
        not_before=cert.not_valid_before_utc.timestamp(), not_after=cert.not_valid_after_utc.timestamp(),
        hosts=_hosts(cert), sha1=cert.fingerprint(hashes.SHA1()).hex().upper(),
        key_type=_key_type(cert.public_key()))


def parse_chain(text: object, field: str = "certificate") -> list[x509.Certificate]:
    """The certificates of a PEM text, leaf first. Any other PEM block (a key) is refused here: keys go in
    their own field."""
    if text is MISSING or text is None:
        raise ValidationError(field, MISSING, "is required (PEM: the certificate, then its intermediates)")
    if not isinstance(text, str):
        raise ValidationError(field, MISSING, "must be a string of PEM text")
    blocks = _PEM_CERT.findall(text)
    kinds = set(_PEM_ANY.findall(text))
    if not blocks:
        raise ValidationError(field, _pem_summary(text), "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    if kinds - {"CERTIFICATE"}:
        raise ValidationError(field, _pem_summary(text), "must hold certificates only; the private key goes in "
                                                          "the field 'key'")
    certs = []
    for i, block in enumerate(blocks):
        try:
            certs.append(x509.load_pem_x509_certificate(block.encode()))
        except ValueError as exc:
            raise ValidationError(field, _pem_summary(text), f"certificate #{i + 1} does not parse: {exc}") from None
    return certs


def parse_key(text: object, field: str = "key") -> PrivateKey:
    if text is MISSING or text is None:
        raise ValidationError(field, MISSING, "is required (the PEM private key of the certificate)")
    if not isinstance(text, str):
        raise ValidationError(field, MISSING, "must be a string of PEM text")
    kinds = _PEM_ANY.findall(text)
    if len(kinds) != 1 or "PRIVATE KEY" not in kinds[0]:
        raise ValidationError(field, _pem_summary(text), "must hold exactly one PEM private key")
    if kinds[0] == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" in text.split("-----END", 1)[0].upper():
        raise ValidationError(field, _pem_summary(text), "is encrypted; HAProxy needs an unencrypted key")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValidationError(field, _pem_summary(text), f"does not parse as a private key: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValidationError(field, _pem_summary(text), f"is an RSA key of {key.key_size} bits; at least "
                                                              "2048 are needed")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, EC_CURVES):
            raise ValidationError(field, _pem_summary(text), f"uses the curve {key.curve.name}; P-256, P-384 or "
                                                              "P-521 are served")
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        pass
    else:
        raise ValidationError(field, _pem_summary(text), f"is a {type(key).__name__}; RSA, ECDSA or Ed25519 keys "
                                                          "are served")
    return key


def _public_bytes(key: object) -> bytes:
    if not isinstance(key, PublicKey):
        return b""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def parse_bundle(chain_pem: object, key_pem: object, now: float, *, chain_field: str = "certificate",
                 key_field: str = "key", allow_expired: bool = False) -> CertBundle:
    """Validate a certificate chain and its key (see the module's docstring for the rules)."""
    certs = parse_chain(chain_pem, chain_field)
    key = parse_key(key_pem, key_field)
    leaf = certs[0]
    mine = _public_bytes(key.public_key())
    if _public_bytes(leaf.public_key()) != mine:
        owner = next((i for i, c in enumerate(certs) if _public_bytes(c.public_key()) == mine), None)
        if owner is not None:
            raise ValidationError(chain_field, MISSING, f"is a chain in the wrong order: the key belongs to "
                                  f"certificate #{owner + 1}; put that leaf first, then the certificates that "
                                  "issued it")
        raise BadRequest(key_field, MISSING, "does not match the certificate: the key's public half is not the "
                                             "leaf certificate's (the first one in 'certificate')")
    info = describe(leaf)
    if info.not_after <= now and not allow_expired:
        raise ValidationError(chain_field, MISSING, f"has expired: its leaf was valid until "
                                                    f"{_iso(info.not_after)}")
    if info.not_before > now + 300:
        raise ValidationError(chain_field, MISSING, f"is not valid yet: its leaf is valid from "
                                                    f"{_iso(info.not_before)}")
    if not info.hosts:
        raise ValidationError(chain_field, MISSING, "names no host: the leaf has neither a DNS subject alternative "
                                                    "name nor a common name")
    for i in range(len(certs) - 1):
        if not _issued_by(certs[i], certs[i + 1]):
            issued = [j + 1 for j in range(len(certs)) if j != i and _issued_by(certs[i], certs[j])]
            hint = (f"; certificate #{i + 1} was issued by #{issued[0]}" if issued else "")
            raise ValidationError(chain_field, MISSING, "is a chain in the wrong order: each certificate must be "
                                  f"followed by the one that issued it (#{i + 2} did not issue #{i + 1}{hint}); "
                                  "put the leaf first, then its intermediates")
    chain = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
    key_text = private_key_pem(key)
    bundle = CertBundle(chain, key_text, info)
    if len(bundle.pem) > MAX_BUNDLE_BYTES:
        raise ValidationError(chain_field, MISSING, f"with its key is {len(bundle.pem)} bytes; at most "
                                                    f"{MAX_BUNDLE_BYTES} fit in one Runtime API payload (drop the "
                                                    "root certificate from the chain: clients have it)")
    return bundle


def split_combined(text: str) -> tuple[str, str | None]:
    """A combined PEM file (certificates and key in one, as HAProxy's ``crt`` takes it) → (certificates, key)."""
    certs = "".join(m + "\n" for m in _PEM_CERT.findall(text))
    key = re.search(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", text, re.S)
    return certs, (key.group(0) + "\n" if key else None)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- making keys and certificates (the default certificate, ACME requests, test CAs) -----------------------

def make_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 key: quick to make, and every client since 2013 takes ECDSA."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def make_self_signed(common_name: str, now: float, days: int = 3650, hosts: Sequence[str] = ()) -> CertBundle:
    """A self-signed certificate (haplane's default certificate: served for names nothing else covers)."""
    key = make_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start)
               .not_valid_after(start + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]),
                                        critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return CertBundle(cert.public_bytes(serialization.Encoding.PEM).decode(), private_key_pem(key), describe(cert))


def make_csr(key: PrivateKey, hosts: Sequence[str]) -> bytes:
    """A PEM certificate signing request for ``hosts`` (the first is also the common name)."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
           .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)
