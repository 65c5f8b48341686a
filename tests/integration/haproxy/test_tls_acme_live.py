"""ACME end to end at the tls-package level: pebble (a real ACME server) validates HTTP-01 challenges that a
real HAProxy answers from a runtime map (``add map`` / ``del map``: no reload), and the issued chain is served
through the Runtime API ssl commands. Names resolve to 127.0.0.1 through a loopback DNS server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from hx_support import StartHAProxy, free_port, http_get, tls_served

from haplane.errors import AcmeError
from haplane.tls import runtime as ssl
from haplane.tls.acme import AcmeClient
from haplane.tls.certs import make_key, parse_bundle, private_key_pem
from haplane.tls.crtlist import CertFiles
from support.acme import Pebble

pytestmark = pytest.mark.integration


def _config(state_dir: Path, files: CertFiles, http_port: int, https_port: int, acme_map: Path) -> str:
    return f"""global
    stats socket {state_dir}/admin.sock mode 600 level admin expose-fd listeners
    stats timeout 30s
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{http_port}
    bind 127.0.0.1:{https_port} ssl crt {files.default_path} crt-list {files.crt_list_path} alpn h2,http/1.1
    http-request return status 200 content-type text/plain lf-string "%[path,field(4,/),map({acme_map})]" \
if {{ path_beg /.well-known/acme-challenge/ }} {{ path,field(4,/),map({acme_map}) -m found }}
    http-request return status 200 content-type text/plain string ok
"""


async def test_pebble_issues_through_haproxy_challenge_map(start_haproxy: StartHAProxy, state_dir: Path,
                                                           make_pebble: Callable[[int], Pebble]) -> None:
    http_port, https_port = free_port(), free_port()
    files = CertFiles(state_dir)
    files.ensure_default()
    acme_map = state_dir / "acme.map"
    acme_map.write_text("")
    hp = await start_haproxy(_config(state_dir, files, http_port, https_port, acme_map))
    reloads = (await hp.master.show_proc()).reloads
    pebble = await asyncio.to_thread(make_pebble, http_port)

    account_key = make_key()
    acme = await asyncio.to_thread(AcmeClient, pebble.directory_url, account_key, verify=pebble.ca_file)
    # the same key finds the same account again
    again = await asyncio.to_thread(AcmeClient, pebble.directory_url, account_key, verify=pebble.ca_file)
    assert again.account_uri == acme.account_uri

    hosts = ["shop.example.test", "www.shop.example.test"]
    for round_ in range(2):  # the first issue, then a renewal with a new key
        cert_key = make_key()
        pending = await asyncio.to_thread(acme.begin, hosts, cert_key)
        assert sorted(c.host for c in pending.challenges) == sorted(hosts)
        await hp.runtime.run_checked([f"add map {acme_map} {c.token} {c.key_authorization}"
                                      for c in pending.challenges])
        first = pending.challenges[0]
        answer = await http_get(http_port, f"/.well-known/acme-challenge/{first.token}", headers={"Host": first.host})
        assert answer.body == first.key_authorization
        await asyncio.to_thread(acme.answer, pending)
        chain = await asyncio.to_thread(acme.finish, pending, 60)
        await hp.runtime.run_checked([f"del map {acme_map} {c.token}" for c in pending.challenges])

        bundle = parse_bundle(chain, private_key_pem(cert_key), __import__("time").time())
        assert set(bundle.info.hosts) == set(hosts)
        await ssl.install_cert(hp.runtime, files.path_of("shop"), bundle.pem, str(files.crt_list_path))
        root = state_dir / "pebble-root.pem"
        root.write_text(pebble.root_pem())
        for h in hosts:
            served = await asyncio.to_thread(tls_served, https_port, h, cafile=str(root))
            assert served.serial == int(bundle.info.serial, 16), f"round {round_}"
    assert (await hp.master.show_proc()).reloads == reloads


async def test_a_challenge_nobody_answers_fails_with_the_cas_words(start_haproxy: StartHAProxy, state_dir: Path,
                                                                   make_pebble: Callable[[int], Pebble]) -> None:
    http_port = free_port()  # nothing listens there: pebble's validation cannot connect
    pebble = await asyncio.to_thread(make_pebble, http_port)
    acme = await asyncio.to_thread(AcmeClient, pebble.directory_url, make_key(), verify=pebble.ca_file)
    pending = await asyncio.to_thread(acme.begin, ["nobody.example.test"], make_key())
    await asyncio.to_thread(acme.answer, pending)
    with pytest.raises(AcmeError) as err:
        await asyncio.to_thread(acme.finish, pending, 30)
    assert "nobody.example.test" in str(err.value) and "connection" in str(err.value).lower()
