"""Certificates through the API, over a real store: the rules, the roles, and that no key ever comes back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from tests.unit.api.conftest import ADMIN, READ, WRITE, auth

from haplane.testing_tls import TestCA

A = auth(ADMIN)
CA = TestCA(intermediate=True)


async def rev(client: httpx.AsyncClient) -> int:
    value: int = await client.deps.registry.store.revision()  # type: ignore[attr-defined]
    return value


async def test_lifecycle_without_ever_returning_the_key(client: httpx.AsyncClient) -> None:
    leaf = CA.issue(["shop.example.test", "www.shop.example.test"], serial=0xABC)
    r = await client.put("/certificates/shop", json={"certificate": leaf.chain_pem, "key": leaf.key_pem}, headers=A)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["hosts"] == ["shop.example.test", "www.shop.example.test"] and body["serial"] == "ABC"
    assert body["source"] == "api" and 89 < body["days_left"] <= 90
    etag = r.headers["etag"]

    listed = (await client.get("/certificates", headers=auth(READ))).json()
    assert [c["name"] for c in listed] == ["shop"] and "certificate" not in listed[0]
    one = await client.get("/certificates/shop", headers=auth(READ))
    assert one.json()["certificate"].count("BEGIN CERTIFICATE") == 2
    for resp in (r, one, await client.get("/certificates", headers=auth(READ))):
        assert "PRIVATE KEY" not in resp.text and leaf.key_pem.splitlines()[1] not in resp.text
        assert "key_sha256" not in resp.text

    # replace, with the right revision; a stale one is refused
    newer = CA.issue(["shop.example.test"], serial=0xABD)
    combined = {"certificate": newer.pem}  # one combined PEM is accepted too
    r = await client.put("/certificates/shop", json=combined, headers={**A, "If-Match": etag})
    assert r.status_code == 200 and r.json()["serial"] == "ABD"
    r = await client.put("/certificates/shop", json=combined, headers={**A, "If-Match": etag})
    assert r.status_code == 412

    assert (await client.delete("/certificates/shop", headers=A)).status_code == 200
    assert (await client.get("/certificates/shop", headers=auth(READ))).status_code == 404
    kvs, _ = await client.deps.registry.store.range("/haplane/certificate")  # type: ignore[attr-defined]
    assert kvs == []  # the key went with the certificate


async def test_only_admin_writes_certificates(client: httpx.AsyncClient) -> None:
    leaf = CA.issue(["a.test"])
    r = await client.put("/certificates/a", json={"certificate": leaf.chain_pem, "key": leaf.key_pem},
                         headers=auth(WRITE))
    assert r.status_code == 403
    assert (await client.delete("/certificates/a", headers=auth(WRITE))).status_code in (403, 404)


def _bad_cases() -> list[tuple[str, dict[str, Any], str, str]]:
    a, b = CA.issue(["a.test"]), CA.issue(["b.test"])
    old = CA.issue(["a.test"], days=5, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    blocks = [p + "-----END CERTIFICATE-----\n" for p in a.chain_pem.split("-----END CERTIFICATE-----\n") if p]
    return [
        ("a", {"certificate": "not a pem", "key": a.key_pem}, "certificate", "holds no PEM certificate"),
        ("a", {"certificate": a.chain_pem, "key": b.key_pem}, "key", "does not match the certificate"),
        ("a", {"certificate": old.chain_pem, "key": old.key_pem}, "certificate", "has expired"),
        ("a", {"certificate": "".join(reversed(blocks)), "key": a.key_pem}, "certificate", "wrong order"),
        ("a", {"certificate": a.chain_pem}, "key", "is required"),
        ("a", {"certificate": a.chain_pem, "key": a.key_pem, "extra": 1}, "extra", "is not a field"),
        ("a%0Ab", {"certificate": a.chain_pem, "key": a.key_pem}, "name", "no '/', no newline"),
        (".hidden", {"certificate": a.chain_pem, "key": a.key_pem}, "name", "not a valid certificate name"),
        ("a.key", {"certificate": a.chain_pem, "key": a.key_pem}, "name", "must not end in .key"),
    ]


@pytest.mark.parametrize(("name", "body", "field", "words"), _bad_cases())
async def test_bad_certificates_are_refused_naming_the_field_and_write_nothing(
        client: httpx.AsyncClient, name: str, body: dict[str, Any], field: str, words: str) -> None:
    before = await rev(client)
    r = await client.put(f"/certificates/{name}", json=body, headers=A)
    assert 400 <= r.status_code < 500, r.text
    err = r.json()
    assert err["field"] == field and words in err["detail"], err
    assert "PRIVATE KEY" not in r.text
    assert await rev(client) == before


async def test_a_path_separator_in_the_name_never_reaches_the_store(client: httpx.AsyncClient) -> None:
    leaf = CA.issue(["a.test"])
    before = await rev(client)
    r = await client.put("/certificates/a%2Fb", json={"certificate": leaf.chain_pem, "key": leaf.key_pem}, headers=A)
    assert 400 <= r.status_code < 500
    assert await rev(client) == before
