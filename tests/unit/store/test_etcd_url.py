"""``etcd://`` store URLs: endpoints, TLS files, credentials (from the URL or the settings), and the password kept
out of every message. No etcd is needed: opening a store does not connect."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from haplane.errors import ConfigurationError
from haplane.settings import Settings
from haplane.store import open_store, redact_url
from haplane.store.etcd import EtcdStore, open_etcd


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    """Real PEM files (a CA, a client certificate and its key) made by the tests' PKI helper."""
    from support.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    return {"cacert": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}


def opened(url: str, **settings: str | None) -> EtcdStore:
    store = open_etcd(url, **settings)
    asyncio.run(store.close())
    return store


def test_plain_endpoints_and_prefix() -> None:
    store = opened("etcd://10.0.0.1:2379,10.0.0.2:2379/haplane/")
    assert store.endpoints == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert store.prefix == "/haplane"
    assert store.access.user is None and not store.access.tls


def test_tls_files_switch_every_member_to_https(pem: dict[str, str]) -> None:
    store = opened(f"etcd://h1:2379,h2:2379/p?cacert={pem['cacert']}&cert={pem['cert']}&key={pem['key']}")
    assert store.endpoints == ["https://h1:2379", "https://h2:2379"]
    assert store.access.cacert == pem["cacert"] and store.access.cert == pem["cert"]
    assert opened("etcd://h:2379/p?tls=true").endpoints == ["https://h:2379"]  # the system's CAs


def test_credentials_in_the_url_are_decoded_and_the_password_never_shown() -> None:
    store = opened("etcd://hap%40lane:p%40ss%2Fw%3Ard@h:2379/p")
    assert (store.access.user, store.access.password) == ("hap@lane", "p@ss/w:rd")
    assert "p%40ss" not in store.url and store.url == "etcd://hap%40lane:***@h:2379/p"
    assert redact_url("etcd://u:secret@h:1/p?cacert=/x") == "etcd://u:***@h:1/p?cacert=/x"
    assert redact_url("etcd://h:1/p") == "etcd://h:1/p"


def test_settings_fill_what_the_url_does_not_say(pem: dict[str, str]) -> None:
    settings = Settings(store="etcd://h:2379/p", etcd_cacert=pem["cacert"], etcd_cert=pem["cert"],
                        etcd_key=pem["key"], etcd_user="haplane", etcd_password="pw")
    store = open_store(settings.store_url(), settings.store_settings())
    assert isinstance(store, EtcdStore)
    asyncio.run(store.close())
    assert store.endpoints == ["https://h:2379"]
    assert (store.access.user, store.access.password, store.access.cert) == ("haplane", "pw", pem["cert"])
    # what the URL says wins
    store = opened("etcd://other:pw2@h:2379/p", user="haplane", password="pw")
    assert (store.access.user, store.access.password) == ("other", "pw2")
    # the etcd settings mean nothing to another engine
    sqlite = open_store("memory://", {"etcd_user": "x"})
    asyncio.run(sqlite.close())


@pytest.mark.parametrize(("url", "message"), [
    ("etcd://h:2379/p?cert=/c.pem", "needs both cert and key"),
    ("etcd://h:2379/p?bogus=1", "unknown option(s) bogus"),
    ("etcd://u@h:2379/p?password=secret", "put the password before the host"),
    ("etcd://:secret@h:2379/p", "a password needs a user"),
    ("etcd://h:2379/p?tls=maybe", "tls='maybe' must be true or false"),
    ("etcd://h/p", "'h' must be HOST:PORT"),
    ("etcd://h:2379/p?cacert=/nonexistent/ca.pem", "cacert '/nonexistent/ca.pem' is not a readable file"),
])
def test_bad_urls_are_configuration_errors_without_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_etcd(url)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_file_that_is_not_a_certificate_is_named(tmp_path: Path, pem: dict[str, str]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="is not a PEM CA certificate"):
        open_etcd(f"etcd://h:2379/p?cacert={junk}")
    with pytest.raises(ConfigurationError, match="are not a PEM certificate and its private key"):
        open_etcd(f"etcd://h:2379/p?cert={junk}&key={pem['key']}")


def test_the_password_setting_is_secret() -> None:
    from haplane.settings import load

    with pytest.raises(ConfigurationError) as caught:
        load(env={"HAPLANE_ETCD_PASSWORD": "hunter2hunter2", "HAPLANE_HTTP_PORT": "x"})
    assert "hunter2" not in str(caught.value)
