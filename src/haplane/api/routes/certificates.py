"""Certificates: ``PUT/GET/DELETE /certificates/{name}``, ``GET /certificates``, and the ACME orders.

A certificate is checked before anything is stored (the PEM parses, the key matches the leaf, the leaf is valid
now, the chain is in order, the name is a plain file name): a refusal names the field and the rule, and nothing
is written. Writing one needs the admin role (it carries a private key); reading needs read, and the key never
comes back out of the API. Every HAProxy node sharing the store serves the certificate within milliseconds,
through the Runtime API (no reload).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from haplane.api.auth import Principal, require
from haplane.api.deps import ApiDeps
from haplane.api.routes._util import body_doc, changed, if_match, json_body, object_body, reject_fields, set_etag
from haplane.tls.certs import parse_bundle, split_combined, validate_cert_name
from haplane.tls.records import Certificate
from haplane.tls.store import CertificateStore

CERT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["certificate", "key"],
    "properties": {
        "certificate": {"type": "string", "description": "PEM: the leaf certificate first, then its intermediates"},
        "key": {"type": "string", "description": "PEM: the leaf's private key (unencrypted; RSA >= 2048, ECDSA "
                                                 "P-256/384/521 or Ed25519). Never returned by the API."},
    },
}
DAY = 86400.0


def _view(cert: Certificate, rev: int, now: float, chain: bool = False) -> dict[str, Any]:
    d = cert.public()
    if not chain:
        d.pop("certificate")
    d["days_left"] = round((cert.info.not_after - now) / DAY, 1)
    d["revision"] = rev
    return d


def router(deps: ApiDeps) -> APIRouter:
    r = APIRouter(tags=["certificates"])
    read = Depends(require(deps.settings, "read"))
    admin = Depends(require(deps.settings, "admin"))
    certs = CertificateStore(deps.registry.store)

    @r.get("/certificates", summary="Every certificate: names, hosts, issuer, validity, source (no key, no PEM)")
    async def list_certificates(_: Principal = read) -> list[dict[str, Any]]:
        now = time.time()
        return [_view(c, rev, now) for c, rev in sorted(await certs.all(), key=lambda p: p[0].name)]

    @r.get("/certificates/{name}", summary="One certificate, with its PEM chain (never its key)")
    async def get_certificate(name: str, response: Response, _: Principal = read) -> dict[str, Any]:
        cert, rev = await certs.get(validate_cert_name(name, "name"))
        set_etag(response, rev)
        return _view(cert, rev, time.time(), chain=True)

    @r.put("/certificates/{name}", summary="Add or replace a certificate (admin): served at once, no reload",
           openapi_extra=body_doc(CERT_SCHEMA, {"certificate": "-----BEGIN CERTIFICATE-----\n...",
                                                "key": "-----BEGIN PRIVATE KEY-----\n..."}))
    async def put_certificate(name: str, request: Request, response: Response, _: Principal = admin
                              ) -> dict[str, Any]:
        validate_cert_name(name, "name")
        d = object_body(await json_body(request))
        reject_fields(d, tuple(k for k in d if k not in ("certificate", "key")),
                      "is not a field of a certificate (certificate, key)")
        chain, key = d.get("certificate"), d.get("key")
        if isinstance(chain, str) and key is None and "PRIVATE KEY" in chain:
            chain, key = split_combined(chain)  # one combined PEM, as HAProxy's crt files are
        bundle = parse_bundle(chain, key, time.time())
        cert, rev, created = await certs.put(name, bundle, "api", if_match(request))
        changed(request, f"certificate {name} ({', '.join(cert.info.hosts)}, serial {cert.info.serial}) "
                         f"{'added' if created else 'replaced'} at revision {rev}")
        response.status_code = 201 if created else 200
        set_etag(response, rev)
        return _view(cert, rev, time.time())

    @r.delete("/certificates/{name}", summary="Remove a certificate (admin): its hosts get the default certificate")
    async def delete_certificate(name: str, request: Request, _: Principal = admin) -> dict[str, Any]:
        rev = await certs.delete(validate_cert_name(name, "name"), if_match(request))
        changed(request, f"certificate {name} deleted at revision {rev}")
        return {"deleted": name, "revision": rev}

    @r.get("/acme/orders", tags=["certificates"], summary="The last ACME order for each certificate haplane orders")
    async def acme_orders(_: Principal = read) -> list[dict[str, Any]]:
        return [o.to_dict() for _, o in sorted((await certs.orders()).items())]

    return r
