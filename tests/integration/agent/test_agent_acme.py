"""ACME end to end through the whole path: a service with ``tls: auto`` gets a certificate from a real ACME server
(Debian's pebble on loopback, names resolved to 127.0.0.1 by a loopback DNS server), ordered by the elected node's
ACME manager, its HTTP-01 challenge answered by HAProxy itself from a runtime map the agent fills from the store,
and served by SNI; an expiring certificate is renewed. HAProxy's reload counter does not move."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from haplane.model.records import Instance, Service
from haplane.testing_tls import TestCA
from haplane.tls.certs import parse_bundle
from haplane.tls.manager import AcmeManager, AcmeOptions, acme_name
from haplane.tls.store import CertificateStore
from support.acme import Pebble
from support.tlsclient import tls_served

from .conftest import Backend, agent_rig, free_port, new_backend

pytestmark = pytest.mark.integration


async def _until(pred: Callable[[], object], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = pred()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.05)


async def test_tls_auto_is_issued_served_and_renewed_without_reload(
        tmp_path: Path, backends: list[Backend], make_pebble: Callable[[int], Pebble]) -> None:
    http, https = free_port(), free_port()
    pebble = await asyncio.to_thread(make_pebble, http)
    async with agent_rig(tmp_path, http_port=http, https_port=https, https_address="127.0.0.1") as rig:
        store = rig.bundle.store
        certs = CertificateStore(store)
        b = new_backend(backends, "a")
        await rig.reg.put_service(Service("shop", "host", "shop.example.test", tls="auto"))
        await rig.reg.put_instance(Instance("i1", "shop", b.address, b.port))
        await rig.until_status("shop.example.test", 200)  # tls: auto, no certificate yet: no redirect
        await rig.settled()
        reloads = await rig.reloads()

        options = AcmeOptions(pebble.directory_url, verify=pebble.ca_file, interval=0.2, retry_base=0.5,
                              http_port=http, order_timeout=30)
        manager = AcmeManager(store, options, "node-1")
        task = asyncio.create_task(manager.run())
        try:
            name = acme_name("shop.example.test")
            await _until(lambda: manager.results["issued"] >= 1, 60, "the first certificate issued")
            root = tmp_path / "pebble-root.pem"
            root.write_text(pebble.root_pem())
            cert, _ = await certs.get(name)
            assert cert.source == "acme" and cert.info.hosts == ("shop.example.test",)

            async def served() -> int:
                with contextlib.suppress(OSError):
                    return (await asyncio.to_thread(tls_served, https, "shop.example.test", cafile=str(root))).serial
                return 0

            await _until(lambda: served_is(served, int(cert.info.serial, 16)), 10, "the issued certificate served")
            # a certificate covers the host now: plain HTTP redirects to HTTPS
            await rig.until_status("shop.example.test", 308)
            assert (await certs.challenges()) == []  # the challenges were withdrawn

            # renewal: an expiring certificate (inside the 30-day window) for the host is replaced
            ca = TestCA()
            old = ca.issue(["shop.example.test"], days=40, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=20))
            await certs.put(name, parse_bundle(old.chain_pem, old.key_pem, time.time()), "acme")
            await _until(lambda: manager.results["issued"] >= 2, 60, "the renewal issued")
            renewed, _ = await certs.get(name)
            assert renewed.info.issuer != "/CN=haplane test CA" and renewed.info.not_after > time.time() + 40 * 86400
            await _until(lambda: served_is(served, int(renewed.info.serial, 16)), 10, "the renewal served")
            orders = await certs.orders()
            assert orders[name].result == "issued" and orders[name].failures == 0
            await rig.settled()
            assert await rig.reloads() == reloads  # issuing, serving, renewing: no reload
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def served_is(served: Callable[[], object], serial: int) -> bool:
    got = served()
    if asyncio.iscoroutine(got):
        got = await got
    return bool(got == serial)


async def test_a_failed_order_backs_off_and_says_why(tmp_path: Path, make_pebble: Callable[[int], Pebble]) -> None:
    """Pebble validates against a port nothing answers on: the order fails with the CA's words, the back-off
    is kept in the store, and the next attempt waits for it."""
    pebble = await asyncio.to_thread(make_pebble, free_port())
    async with agent_rig(tmp_path, https_port=free_port(), https_address="127.0.0.1") as rig:
        await rig.reg.put_service(Service("nowhere", "host", "nowhere.example.test", tls="auto"))
        options = AcmeOptions(pebble.directory_url, verify=pebble.ca_file, interval=0.1, retry_base=30,
                              order_timeout=20)
        manager = AcmeManager(rig.bundle.store, options, "node-1")
        done = await manager.scan_once()
        assert done == [acme_name("nowhere.example.test")] and manager.results["failed"] == 1
        state = (await CertificateStore(rig.bundle.store).orders())[acme_name("nowhere.example.test")]
        assert state.result == "failed" and state.failures == 1 and state.next_attempt >= state.at + 30
        assert state.error and "nowhere.example.test" in state.error
        assert await manager.scan_once() == []  # backing off
