"""Certificate and ACME records: what the API, the certificates directory and the ACME client write into the
store, and what the agent reads. PURE (no I/O).

A certificate is two store keys written in one transaction (``haplane.store.keys``): the public record
(``Certificate``: the chain and what it says: hosts, issuer, validity, source) and the private key
(``CertificateKey``) apart, so nothing that lists or shows certificates can hand a key out by mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from haplane.errors import MISSING, ValidationError
from haplane.tls.certs import CertBundle, CertInfo, parse_bundle, validate_cert_name

SourceKind = Literal["api", "acme", "dir"]
_SOURCE = re.compile(r"(api|acme|dir)(:[A-Za-z0-9_.-]{1,100})?")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")  # an ACME token: base64url (RFC 8555 section 8.3)
_KEY_AUTH = re.compile(r"[A-Za-z0-9_-]{1,200}\.[A-Za-z0-9_-]{1,100}")


@dataclass(frozen=True, slots=True)
class Certificate:
    """A certificate as the registry keeps it: the chain (public), its facts, and who put it there."""

    name: str
    chain_pem: str
    info: CertInfo
    source: str = "api"  # "api", "acme", or "dir:<directory id>"
    key_sha256: str = ""  # of the key record's PEM: the agent applies a pair only when both halves match

    def to_dict(self) -> dict[str, Any]:
        i = self.info
        return {"name": self.name, "certificate": self.chain_pem, "source": self.source, "hosts": list(i.hosts),
                "subject": i.subject, "issuer": i.issuer, "serial": i.serial, "not_before": i.not_before,
                "not_after": i.not_after, "sha1": i.sha1, "key_type": i.key_type, "key_sha256": self.key_sha256}

    def public(self) -> dict[str, Any]:
        """The API's view: no key material, and the chain only where asked for."""
        d = self.to_dict()
        d.pop("key_sha256")
        return d

    @classmethod
    def from_dict(cls, data: Any) -> Certificate:
        if not isinstance(data, dict):
            raise ValidationError("certificate", data, "must be a JSON object")
        i = CertInfo(subject=str(data["subject"]), issuer=str(data["issuer"]), serial=str(data["serial"]),
                     not_before=float(data["not_before"]), not_after=float(data["not_after"]),
                     hosts=tuple(str(h) for h in data["hosts"]), sha1=str(data["sha1"]),
                     key_type=str(data["key_type"]))
        return cls(validate_cert_name(data["name"]), str(data["certificate"]), i, source=str(data["source"]),
                   key_sha256=str(data.get("key_sha256", "")))


@dataclass(frozen=True, slots=True)
class CertificateKey:
    name: str
    key_pem: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key_pem}

    @classmethod
    def from_dict(cls, data: Any) -> CertificateKey:
        if not isinstance(data, dict):
            raise ValidationError("key", MISSING, "must be a JSON object")
        return cls(validate_cert_name(data["name"]), str(data["key"]))


def records_of(name: str, bundle: CertBundle, source: str) -> tuple[Certificate, CertificateKey]:
    """The two records of a validated bundle."""
    import hashlib

    validate_cert_name(name)
    if not _SOURCE.fullmatch(source):
        raise ValidationError("source", source, "must be api, acme or dir:<id>")
    return (Certificate(name, bundle.chain_pem, bundle.info, source,
                        hashlib.sha256(bundle.key_pem.encode()).hexdigest()),
            CertificateKey(name, bundle.key_pem))


def bundle_of(cert: Certificate, key: CertificateKey, now: float) -> CertBundle | None:
    """The bundle the agent serves for a stored pair, re-validated (a record written by another version or by
    hand is checked as the API checks it); None when the halves do not belong together. An expired certificate
    still serves (it is the operator's to replace; status warns), so expiry is not checked here."""
    import hashlib

    if cert.key_sha256 and hashlib.sha256(key.key_pem.encode()).hexdigest() != cert.key_sha256:
        return None
    return parse_bundle(cert.chain_pem, key.key_pem, now, allow_expired=True)


# --- ACME ------------------------------------------------------------------------------------------------

def validate_token(value: object, field: str = "token") -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValidationError(field, value, "is not an ACME token (base64url: A-Z a-z 0-9 _ -)")
    return value


@dataclass(frozen=True, slots=True)
class Challenge:
    """An HTTP-01 challenge in flight: HAProxy answers ``GET /.well-known/acme-challenge/<token>`` with
    ``key_authorization`` (through a runtime map), on every node sharing the store."""

    token: str
    key_authorization: str
    host: str
    expires: float

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "key_authorization": self.key_authorization, "host": self.host,
                "expires": self.expires}

    @classmethod
    def from_dict(cls, data: Any) -> Challenge:
        if not isinstance(data, dict):
            raise ValidationError("challenge", data, "must be a JSON object")
        token = validate_token(data.get("token"))
        auth = data.get("key_authorization")
        if not isinstance(auth, str) or not _KEY_AUTH.fullmatch(auth) or not auth.startswith(token + "."):
            raise ValidationError("key_authorization", auth, "is not <token>.<base64url thumbprint>")
        return cls(token, auth, str(data.get("host", "")), float(data.get("expires", 0)))


@dataclass(frozen=True, slots=True)
class OrderState:
    """The last ACME order for a set of hosts, kept in the store so every node (and status) sees it and the
    next elected node keeps the back-off."""

    name: str  # the certificate name it orders
    hosts: tuple[str, ...]
    result: str  # "issued", "failed", "pending"
    at: float
    failures: int = 0
    next_attempt: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "hosts": list(self.hosts), "result": self.result, "at": self.at,
                "failures": self.failures, "next_attempt": self.next_attempt, "error": self.error}

    @classmethod
    def from_dict(cls, data: Any) -> OrderState:
        if not isinstance(data, dict):
            raise ValidationError("order", data, "must be a JSON object")
        return cls(str(data["name"]), tuple(str(h) for h in data.get("hosts", [])), str(data["result"]),
                   float(data["at"]), int(data.get("failures", 0)), float(data.get("next_attempt", 0)),
                   data.get("error"))
