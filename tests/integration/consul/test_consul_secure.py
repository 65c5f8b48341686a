"""Consul as production runs it: HTTPS with a CA of its own, client certificates (``verify_incoming``) and ACLs
with ``default_policy = deny`` (the stand-in emulates these as Consul documents them; the certificates are made
by the tests). The source follows the catalog with the right files and token; a wrong token, an anonymous
(filtered) answer or an untrusted certificate is a clear error that never touches the set."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.pki import Pki, make_pki

from haplane.commands.watch import configure_consul, consul_from_args
from haplane.errors import ConfigurationError, SourceUnavailable
from haplane.model.records import Instance
from haplane.registry import RegistryStore
from haplane.settings import Settings
from haplane.sources.base import StoreSink
from haplane.sources.consul import ConsulSource
from haplane.store.memory import MemoryStore
from haplane.testing_consul import ConsulStandIn

pytestmark = pytest.mark.integration
TOKEN = "5b4c1f0e-acl-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("consul-pki"))


@pytest.fixture
def consul(pki: Pki) -> Iterator[ConsulStandIn]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ctx.verify_mode = ssl.CERT_REQUIRED  # Consul's verify_incoming
    with ConsulStandIn(ssl_context=ctx, acl_token=TOKEN) as c:
        c.register("api", "127.0.0.71", 8080, service_id="a1", tags=["version=1"])
        yield c


def source(consul: ConsulStandIn, pki: Pki, **kw: object) -> ConsulSource:
    options: dict[str, object] = {"address": consul.address, "token": TOKEN, "cacert": str(pki.ca),
                                  "cert": str(pki.client_cert), "key": str(pki.client_key), "wait": 5,
                                  "max_backoff": 0.2}
    options.update(kw)
    return ConsulSource("api", **options)  # type: ignore[arg-type]


async def query(src: ConsulSource) -> tuple[list[Instance], int]:
    async with httpx.AsyncClient(base_url=src.address, verify=src.verify, trust_env=False,
                                 headers={"X-Consul-Token": src.token} if src.token else {}) as client:
        return await src.query(client)


async def test_https_with_a_client_certificate_and_a_token_follows_the_catalog(consul: ConsulStandIn,
                                                                                pki: Pki) -> None:
    reg = RegistryStore(MemoryStore())
    task = asyncio.create_task(source(consul, pki).run(StoreSink(reg)))
    try:
        for _ in range(300):
            if [i.id for i, _ in await reg.list_instances("api")] == ["node1-a1"]:
                break
            await asyncio.sleep(0.02)
        consul.register("api", "127.0.0.72", 8080, service_id="a2", tags=["version=1"])
        for _ in range(300):
            if len(await reg.list_instances("api")) == 2:
                break
            await asyncio.sleep(0.02)
        assert sorted(i.address for i, _ in await reg.list_instances("api")) == ["127.0.0.71", "127.0.0.72"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_unknown_token_is_refused_naming_the_setting(consul: ConsulStandIn, pki: Pki) -> None:
    with pytest.raises(SourceUnavailable, match=r"403 'ACL not found': Consul refused the token \(consul_token"):
        await query(source(consul, pki, token="not-the-token"))


async def test_an_anonymous_answer_filtered_by_acls_is_refused_and_keeps_the_last_view(consul: ConsulStandIn,
                                                                                     pki: Pki) -> None:
    with pytest.raises(SourceUnavailable, match="filtered the answer by ACLs: the anonymous token"):
        await query(source(consul, pki, token=None))
    # run() keeps the set as it was: a registry that had the instance still has it
    reg = RegistryStore(MemoryStore())
    await reg.replace_source("consul-api", [Instance("node1-a1", "api", "127.0.0.71", 8080)])
    src = source(consul, pki, token=None)
    task = asyncio.create_task(src.run(StoreSink(reg)))
    try:
        for _ in range(300):
            if src.errors >= 2:
                break
            await asyncio.sleep(0.02)
        assert src.errors >= 2
        assert [i.id for i, _ in await reg.list_instances("api")] == ["node1-a1"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_untrusted_server_certificate_or_no_client_certificate_says_so(consul: ConsulStandIn,
                                                                               pki: Pki) -> None:
    with pytest.raises(SourceUnavailable, match=r"TLS certificate is not trusted.*check consul_cacert"):
        await query(source(consul, pki, cacert=str(pki.other_ca)))
    with pytest.raises(SourceUnavailable, match=r"consul https://127\.0\.0\.1:\d+: "):
        await query(source(consul, pki, cert=None, key=None))


def test_files_and_token_come_from_settings_or_consuls_own_variables(consul: ConsulStandIn, pki: Pki,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    p = argparse.ArgumentParser()
    configure_consul(p)
    args = p.parse_args(["--service", "api"])
    for name, value in {"CONSUL_HTTP_ADDR": consul.address.removeprefix("https://"), "CONSUL_HTTP_SSL": "true",
                        "CONSUL_HTTP_TOKEN": TOKEN, "CONSUL_CACERT": str(pki.ca),
                        "CONSUL_CLIENT_CERT": str(pki.client_cert), "CONSUL_CLIENT_KEY": str(pki.client_key)}.items():
        monkeypatch.setenv(name, value)
    src = consul_from_args(args, Settings())
    assert src.address == consul.address and src.token == TOKEN
    instances, _ = asyncio.run(query(src))
    assert [i.id for i in instances] == ["node1-a1"]
    settings = Settings(consul_address=consul.address, consul_token=TOKEN, consul_cacert=str(pki.ca),
                        consul_cert=str(pki.client_cert), consul_key=str(pki.client_key))
    for name in ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL", "CONSUL_HTTP_TOKEN", "CONSUL_CACERT", "CONSUL_CLIENT_CERT",
                 "CONSUL_CLIENT_KEY"):
        monkeypatch.delenv(name)
    instances, _ = asyncio.run(query(consul_from_args(args, settings)))
    assert [i.id for i in instances] == ["node1-a1"]


def test_bad_tls_settings_are_configuration_errors(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="needs both consul_cert and consul_key"):
        ConsulSource("api", address="https://127.0.0.1:8501", cert=str(pki.client_cert))
    with pytest.raises(ConfigurationError, match="use an https:// address"):
        ConsulSource("api", address="http://127.0.0.1:8500", cacert=str(pki.ca))
    with pytest.raises(ConfigurationError, match="consul_cacert '/nonexistent' is not a readable file"):
        ConsulSource("api", address="https://127.0.0.1:8501", cacert="/nonexistent")
