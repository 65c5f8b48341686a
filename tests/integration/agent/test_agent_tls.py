"""HTTPS at the edge through the whole path: a certificate PUT through the API, the store, an in-process agent and a
real HAProxy 2.6, checked by an HTTPS client that trusts the test CA and reads the served serial. HAProxy's own
reload counter proves that no certificate change reloads."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from haplane.api import ApiDeps, create_app
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Service
from haplane.settings import load
from haplane.testing_tls import TestCA
from support.tlsclient import tls_served

from .conftest import Backend, Rig, agent_rig, free_port, new_backend

pytestmark = pytest.mark.integration
TOKEN = "admin-token-for-tests"


def _api(rig: Rig) -> httpx.AsyncClient:
    app = create_app(ApiDeps(registry=rig.reg, settings=load({"token": TOKEN}, env={})))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                             headers={"Authorization": f"Bearer {TOKEN}"})


async def _serial(port: int, sni: str, cafile: str | None) -> int:
    return (await asyncio.to_thread(tls_served, port, sni, cafile=cafile)).serial


async def _until_serial(port: int, sni: str, cafile: str | None, serial: int, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    seen: Any = None
    while True:
        try:
            seen = await _serial(port, sni, cafile)
            if seen == serial:
                return
        except OSError as exc:  # an unverifiable chain while the default still serves: not there yet
            seen = exc
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{sni}: served {seen!r}, not serial {serial:X}, after {timeout}s")
        await asyncio.sleep(0.01)


def _default_serial(state: Path) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate((state / "tls" / "default.pem").read_bytes()).serial_number


async def test_put_replace_delete_served_by_sni_without_reload(tmp_path: Path, backends: list[Backend]) -> None:
    ca = TestCA(intermediate=True)
    cafile = ca.write_root(tmp_path / "ca.pem")
    https = free_port()
    async with agent_rig(tmp_path, https_port=https, https_address="127.0.0.1") as rig, _api(rig) as api:
        b = new_backend(backends, "a")
        await rig.reg.put_service(Service("shop", "host", "shop.example.test"))
        await rig.reg.put_instance(Instance("i1", "shop", b.address, b.port))
        await rig.until_status("shop.example.test", 200)
        await rig.settled()
        reloads = await rig.reloads()
        default = _default_serial(tmp_path / "state")
        assert await _serial(https, "shop.example.test", None) == default  # nothing covers it yet

        first = ca.issue(["shop.example.test"], serial=0x5101)
        r = await api.put("/certificates/shop", json={"certificate": first.chain_pem, "key": first.key_pem})
        assert r.status_code == 201, r.text
        await _until_serial(https, "shop.example.test", cafile, 0x5101)
        # HTTP/2 by ALPN; and HTTPS is routed like plain HTTP
        served = await asyncio.to_thread(tls_served, https, "shop.example.test", cafile=cafile, alpn=("h2",))
        assert served.alpn == "h2"
        async with httpx.AsyncClient(verify=False, timeout=5) as client:
            r = await client.get(f"https://127.0.0.1:{https}/", headers={"Host": "shop.example.test"})
            assert r.status_code == 200 and r.text == "backend=a"

        second = ca.issue(["shop.example.test", "www.shop.example.test"], serial=0x5102)
        r = await api.put("/certificates/shop", json={"certificate": second.chain_pem, "key": second.key_pem})
        assert r.status_code == 200
        await _until_serial(https, "shop.example.test", cafile, 0x5102)
        await _until_serial(https, "www.shop.example.test", cafile, 0x5102)

        assert (await api.delete("/certificates/shop")).status_code == 200
        await _until_serial(https, "shop.example.test", None, default)
        await rig.settled()
        assert await rig.reloads() == reloads  # no certificate change reloaded HAProxy
        kinds = [rec.kind for rec in rig.bundle.activity.records]
        assert {"certificate-add", "certificate-update", "certificate-remove"} <= set(kinds)
        assert not any("PRIVATE KEY" in str(rec.to_dict()) for rec in rig.bundle.activity.records)


async def test_policy_redirect_off_hsts_and_acme_exemption(tmp_path: Path, backends: list[Backend]) -> None:
    https = free_port()
    async with agent_rig(tmp_path, https_port=https, https_address="127.0.0.1") as rig:
        b = new_backend(backends, "a")
        await rig.reg.put_service(Service("red", "host", "red.example.test", tls="redirect", hsts=600))
        await rig.reg.put_service(Service("plain", "host", "plain.example.test", tls="off"))
        await rig.reg.put_instance(Instance("i1", "red", b.address, b.port))
        await rig.reg.put_instance(Instance("i2", "plain", b.address, b.port))
        r = await rig.until_status("red.example.test", 308, path="/a/b?c=1")
        assert r.headers["location"] == f"https://red.example.test:{https}/a/b?c=1"
        # the ACME challenge path is never redirected (here: no challenge, so it is routed to the service)
        await rig.until_status("red.example.test", 200, path="/.well-known/acme-challenge/x")
        await rig.until_status("plain.example.test", 200)
        async with httpx.AsyncClient(verify=False, timeout=5) as client:
            r = await client.get(f"https://127.0.0.1:{https}/", headers={"Host": "red.example.test"})
            assert r.status_code == 200 and r.headers["strict-transport-security"] == "max-age=600"
            assert (await client.get(f"https://127.0.0.1:{https}/",
                                     headers={"Host": "plain.example.test"})).status_code == 421
        # a policy change is a map entry: no reload
        reloads = await rig.reloads()
        await rig.reg.put_service(Service("red", "host", "red.example.test", tls="on"))
        await rig.until_status("red.example.test", 200)
        assert await rig.reloads() == reloads


async def test_restarts_of_haproxy_and_of_haplane_serve_the_same_certificates(
        tmp_path: Path, backends: list[Backend]) -> None:
    ca = TestCA()
    cafile = ca.write_root(tmp_path / "ca.pem")
    https = free_port()
    settings = {"https_port": https, "https_address": "127.0.0.1",
                "store": f"sqlite:///{tmp_path / 'state' / 'haplane.db'}", "resync_interval": 0.5}
    leaf = ca.issue(["keep.example.test"], serial=0x7001)
    async with agent_rig(tmp_path, **settings) as rig, _api(rig) as api:
        r = await api.put("/certificates/keep", json={"certificate": leaf.chain_pem, "key": leaf.key_pem})
        assert r.status_code == 201
        await _until_serial(https, "keep.example.test", cafile, 0x7001)
        proc = rig.bundle.control.process  # type: ignore[attr-defined]
        os.kill(proc.pid, signal.SIGKILL)  # HAProxy dies: the agent restarts it from the files on disk
        await asyncio.sleep(0.3)
        await _until_serial(https, "keep.example.test", cafile, 0x7001, timeout=15)
        restarted = await rig.reloads()
    assert restarted == 0  # a new master after the restart: its own count starts again
    # haplane and HAProxy stopped; a new haplane on the same state directory serves the same set at once
    async with agent_rig(tmp_path, **settings):
        assert await _serial(https, "keep.example.test", cafile) == 0x7001


async def test_thalassa_frontends_bind_with_tls_and_serve_runtime_certificates(
        tmp_path: Path, backends: list[Backend]) -> None:
    """A Thalassa frontend with tls: true terminates TLS with the agent's certificates: one PUT through the API
    afterwards is served there by SNI too (the crt-list is shared), with no reload; in tcp mode the decrypted
    bytes reach the server as they are."""
    ca = TestCA()
    cafile = ca.write_root(tmp_path / "ca.pem")
    https, secure, stream = free_port(), free_port(), free_port()
    async with agent_rig(tmp_path, https_port=https, https_address="127.0.0.1") as rig, _api(rig) as api:
        b = new_backend(backends, "a")
        await rig.reg.put_backend(BackendSpec.from_dict({"members": [{"host": b.address, "port": b.port}]},
                                                        name="web"))
        await rig.reg.put_frontend(FrontendSpec.from_dict({"bind": f"127.0.0.1:{secure}", "backend": "web",
                                                           "tls": True}, name="secure"))
        await rig.reg.put_frontend(FrontendSpec.from_dict({"bind": f"127.0.0.1:{stream}", "backend": "web",
                                                           "mode": "tcp", "tls": True}, name="stream"))
        await rig.settled()
        default = _default_serial(tmp_path / "state")
        assert await _serial(secure, "api.example.test", None) == default
        async with httpx.AsyncClient(verify=False, timeout=5) as client:
            for port in (secure, stream):
                r = await client.get(f"https://127.0.0.1:{port}/", headers={"Host": "api.example.test"})
                assert r.status_code == 200 and r.text == "backend=a", (port, r.text)
        served = await asyncio.to_thread(tls_served, secure, "api.example.test", alpn=("h2", "http/1.1"))
        assert served.alpn == "h2"
        plain = await asyncio.to_thread(tls_served, stream, "api.example.test", alpn=("h2", "http/1.1"))
        assert plain.alpn is None  # tcp mode offers no ALPN: the server behind speaks what it speaks
        reloads = await rig.reloads()

        leaf = ca.issue(["api.example.test"], serial=0x6101)
        r = await api.put("/certificates/api", json={"certificate": leaf.chain_pem, "key": leaf.key_pem})
        assert r.status_code == 201, r.text
        for port in (secure, stream, https):
            await _until_serial(port, "api.example.test", cafile, 0x6101)
        assert (await api.delete("/certificates/api")).status_code == 200
        await _until_serial(secure, "api.example.test", None, default)
        await rig.settled()
        assert await rig.reloads() == reloads  # certificates on every TLS frontend changed with no reload
