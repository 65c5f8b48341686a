"""Certificate validation: each rule the registry applies, with real certificates from haplane.testing_tls."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from haplane.errors import BadRequest, ValidationError
from haplane.testing_tls import TestCA
from haplane.tls.certs import MAX_BUNDLE_BYTES, make_self_signed, parse_bundle, split_combined, validate_cert_name

NOW = time.time()


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA(intermediate=True)


def test_a_good_chain_is_described_and_made_canonical(ca: TestCA) -> None:
    leaf = ca.issue(["web.example.test", "www.example.test"], serial=0x1234)
    # CRLF line ends and text around the blocks are dropped; what comes out has no empty line
    messy = "comment\r\n" + leaf.chain_pem.replace("\n", "\r\n") + "\n\n"
    b = parse_bundle(messy, leaf.key_pem, NOW)
    assert b.info.hosts == ("web.example.test", "www.example.test")
    assert b.info.serial == "1234"
    assert b.info.issuer == "/CN=haplane test CA intermediate"
    assert b.info.key_type == "EC256"
    assert b.chain_pem.count("BEGIN CERTIFICATE") == 2
    assert "\n\n" not in b.pem and "\r" not in b.pem
    assert b.info.covers("WWW.example.test") and not b.info.covers("api.example.test")


def test_a_pem_that_does_not_parse_names_the_field(ca: TestCA) -> None:
    leaf = ca.issue(["a.test"])
    with pytest.raises(ValidationError) as e:
        parse_bundle("hello", leaf.key_pem, NOW)
    assert e.value.field == "certificate" and "no PEM certificate" in str(e.value)
    broken = leaf.chain_pem.replace(leaf.chain_pem.splitlines()[3], "AAAA" * 16)
    with pytest.raises(ValidationError, match="does not parse"):
        parse_bundle(broken, leaf.key_pem, NOW)
    with pytest.raises(ValidationError) as e:
        parse_bundle(leaf.chain_pem, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", NOW)
    assert e.value.field == "key"


def test_errors_never_echo_a_key(ca: TestCA) -> None:
    leaf = ca.issue(["a.test"])
    with pytest.raises(ValidationError) as e:
        parse_bundle(leaf.pem, leaf.key_pem, NOW)  # the key pasted into the certificate field
    assert "must hold certificates only" in str(e.value)
    assert leaf.key_pem.splitlines()[1] not in str(e.value)


def test_a_key_that_does_not_match_is_refused(ca: TestCA) -> None:
    a, b = ca.issue(["a.test"]), ca.issue(["b.test"])
    with pytest.raises(BadRequest) as e:
        parse_bundle(a.chain_pem, b.key_pem, NOW)
    assert e.value.field == "key" and "does not match" in str(e.value)


def test_an_expired_or_future_certificate_is_refused(ca: TestCA) -> None:
    old = ca.issue(["a.test"], days=10, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=20))
    with pytest.raises(ValidationError, match="has expired"):
        parse_bundle(old.chain_pem, old.key_pem, NOW)
    assert parse_bundle(old.chain_pem, old.key_pem, NOW, allow_expired=True).info.not_after < NOW
    future = ca.issue(["a.test"], not_before=dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
    with pytest.raises(ValidationError, match="not valid yet"):
        parse_bundle(future.chain_pem, future.key_pem, NOW)


def test_a_chain_in_the_wrong_order_is_refused(ca: TestCA) -> None:
    leaf = ca.issue(["a.test"])
    assert ca.intermediate is not None
    reversed_chain = "".join(reversed([p + "-----END CERTIFICATE-----\n"
                                       for p in leaf.chain_pem.split("-----END CERTIFICATE-----\n") if p]))
    with pytest.raises(ValidationError) as e:
        parse_bundle(reversed_chain, leaf.key_pem, NOW)
    assert e.value.field == "certificate" and "wrong order" in str(e.value) and "belongs to certificate #2" in str(
        e.value)
    # the leaf first but followed by a certificate that did not issue it
    other = TestCA().issue(["x.test"])
    with pytest.raises(ValidationError, match="wrong order"):
        parse_bundle(leaf.chain_pem.split("-----END CERTIFICATE-----\n")[0] + "-----END CERTIFICATE-----\n"
                     + other.chain_pem, leaf.key_pem, NOW)


@pytest.mark.parametrize("name", ["a/b", "../x", "a\nb", "a b", ".hidden", "x.key", "-rf", "", "a" * 101,
                                  "a;b", "web.pem.ocsp"])
def test_bad_certificate_names(name: str) -> None:
    with pytest.raises(ValidationError) as e:
        validate_cert_name(name, "name")
    assert e.value.field == "name"


def test_weak_and_oversized_material_is_refused(ca: TestCA) -> None:
    weak = ca.issue(["a.test"], rsa_bits=1024)
    with pytest.raises(ValidationError, match="at least 2048"):
        parse_bundle(weak.chain_pem, weak.key_pem, NOW)
    big = ca.issue([f"h{i}.{'x' * 50}.test" for i in range(250)])
    assert len(big.pem) > MAX_BUNDLE_BYTES
    with pytest.raises(ValidationError, match="Runtime API payload"):
        parse_bundle(big.chain_pem, big.key_pem, NOW)


def test_self_signed_default_and_combined_files() -> None:
    b = make_self_signed("haplane default certificate", NOW)
    assert b.info.issuer == b.info.subject == "/CN=haplane default certificate"
    chain, key = split_combined(b.pem)
    assert parse_bundle(chain, key, NOW).fingerprint == b.fingerprint
