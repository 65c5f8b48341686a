"""etcd as production runs it: TLS only on the client port, client certificates checked against etcd's CA,
etcd's RBAC with a user and password. The cluster and its certificates are made by the tests (``etcd_secure`` in
tests/conftest.py, ``support.pki``); the whole store contract also runs on it (tests/contract, ``etcd-secure``).
Here: every way of getting it wrong is refused with one clear line, the password never shows, and the settings
path works like the URL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import pytest

from haplane.errors import ConfigurationError, StoreUnavailable
from haplane.registry import RegistryStore
from haplane.settings import Settings
from haplane.store import Put, open_store
from haplane.store.etcd import EtcdStore
from support.pki import make_pki
from support.procs import EtcdCluster, EtcdTLS, SecureEtcd


def prefix() -> str:
    return f"sec{uuid.uuid4().hex[:8]}"


async def refused(url: str) -> str:
    store = open_store(url)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.get("/k")
    finally:
        await store.close()
    message = str(caught.value)
    assert "\n" not in message
    return message


async def test_the_right_certificate_and_password_get_in(etcd_secure: SecureEtcd) -> None:
    store = open_store(etcd_secure.url(prefix()))
    try:
        assert isinstance(store, EtcdStore) and all(e.startswith("https://") for e in store.endpoints)
        rev = await store.txn([], [Put("/k", "v")])
        kv = await store.get("/k")
        assert kv is not None and kv.value == "v" and kv.mod_revision == rev
    finally:
        await store.close()


async def test_a_client_certificate_from_another_ca_is_refused(etcd_secure: SecureEtcd) -> None:
    pki = etcd_secure.pki
    message = await refused(etcd_secure.url(prefix(), cert=str(pki.other_client_cert),
                                            key=str(pki.other_client_key)))
    assert "refused our TLS client certificate" in message and "check cert and key" in message, message


async def test_no_client_certificate_is_refused(etcd_secure: SecureEtcd) -> None:
    message = await refused(etcd_secure.url(prefix(), cert="", key=""))
    assert "refused our TLS client certificate" in message, message


async def test_a_server_certificate_from_an_untrusted_ca_is_refused(etcd_secure: SecureEtcd) -> None:
    message = await refused(etcd_secure.url(prefix(), cacert=str(etcd_secure.pki.other_ca)))
    assert "TLS certificate is not trusted" in message and "check cacert" in message, message


async def test_plain_http_to_a_tls_port_says_so(etcd_secure: SecureEtcd) -> None:
    url = etcd_secure.url(prefix(), cacert="", cert="", key="")
    message = await refused(url)
    assert etcd_secure.password not in message
    assert "127.0.0.1" in message, message


async def test_a_wrong_password_is_refused_without_showing_it(etcd_secure: SecureEtcd) -> None:
    message = await refused(etcd_secure.url(prefix(), password="not-the-password"))
    assert "refused user 'haplane'" in message and "authentication failed" in message, message
    assert "not-the-password" not in message


async def test_no_user_on_an_rbac_cluster_is_refused_naming_the_setting(etcd_secure: SecureEtcd) -> None:
    message = await refused(etcd_secure.url(prefix(), user="", password=""))
    assert "user name is empty" in message and "etcd_user" in message, message


async def test_expired_tokens_are_renewed(etcd_secure: SecureEtcd) -> None:
    """The fixture's etcd lets tokens live 2 s; a store that sleeps past that keeps working."""
    store = open_store(etcd_secure.url(prefix()))
    assert isinstance(store, EtcdStore)
    try:
        await store.txn([], [Put("/a", "1")])
        first = store._token
        await asyncio.sleep(3.5)
        await store.txn([], [Put("/a", "2")])
        kv = await store.get("/a")
        assert kv is not None and kv.value == "2"
        assert store._token != first, "etcd refused the old token, so a new one was fetched"
    finally:
        await store.close()


async def test_settings_carry_tls_and_credentials_and_the_password_never_shows(etcd_secure: SecureEtcd) -> None:
    pki = etcd_secure.pki
    settings = Settings(store=f"etcd://{etcd_secure.cluster.hostports[0]}/{prefix()}", etcd_cacert=str(pki.ca),
                        etcd_cert=str(pki.client_cert), etcd_key=str(pki.client_key), etcd_user=etcd_secure.user,
                        etcd_password=etcd_secure.password)
    store = open_store(settings.store_url(), settings.store_settings())
    try:
        await store.txn([], [Put("/k", "v")])
        assert (await store.get("/k")) is not None
    finally:
        await store.close()
    # the URL's password is shown as *** wherever the store names itself
    store = open_store(etcd_secure.url(prefix()))
    try:
        assert etcd_secure.password not in store.url and "haplane:***@" in store.url
    finally:
        await store.close()


def test_a_missing_certificate_file_is_a_configuration_error(etcd_secure: SecureEtcd) -> None:
    with pytest.raises(ConfigurationError, match=r"cert '/nonexistent/client\.pem' is not a readable file"):
        open_store(etcd_secure.url(prefix(), cert="/nonexistent/client.pem"))


def test_the_cli_says_in_one_line_why_etcd_refused(etcd_secure: SecureEtcd, tmp_path: object) -> None:
    """``haplane generate --store URL`` with a certificate etcd refuses: one line on stderr, no traceback."""
    pki = etcd_secure.pki
    url = etcd_secure.url(prefix(), cert=str(pki.other_client_cert), key=str(pki.other_client_key))
    payload = '{"table": "t", "running": [], "candidates": []}'
    proc = subprocess.run([sys.executable, "-m", "haplane", "generate", "--store", url, "-"], input=payload,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "refused our TLS client certificate" in proc.stderr, proc.stderr
    assert etcd_secure.password not in proc.stderr + proc.stdout


async def test_a_three_member_tls_cluster_fails_over_with_auth(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Three members, TLS and client certificates on each, RBAC on: the registry keeps writing when the member
    it talked to dies."""
    pki = make_pki(tmp_path_factory.mktemp("pki3"))
    cluster = EtcdCluster(3, tls=EtcdTLS.from_pki(pki))
    try:
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(cluster.enable_auth, "haplane", "pw-3-members")
        store = open_store(cluster.store_url(prefix(), "haplane", "pw-3-members"))
        try:
            reg = RegistryStore(store)
            from haplane.model.records import Instance, Service

            await reg.put_service(Service("web", port=80))
            await reg.put_instance(Instance("a", "web", "127.0.0.2", 80))
            await asyncio.to_thread(cluster.kill, 0)  # the member the store talks to first
            await reg.put_instance(Instance("b", "web", "127.0.0.3", 80))
            assert sorted(i.id for i, _ in await reg.list_instances("web")) == ["a", "b"]
        finally:
            await store.close()
    finally:
        cluster.close()
