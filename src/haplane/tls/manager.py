"""Automatic certificates: orders and renews, from an ACME directory, a certificate for every host whose service
says ``tls: auto``. ADAPTER (store, network).

One node orders at a time: ``AcmeManager.run()`` campaigns in the store's election (``haplane.election``,
name ``acme``) and only the leader scans and orders; every node serves the result (a certificate record) and
answers the challenges (records under ``/haplane/acme/challenges/``, which every agent turns into entries of its
HAProxy's challenge map, so the CA may reach any node).

A host needs an order when no certificate in the registry covers it for longer than ``renew_before`` (30 days by
default): the certificate it has keeps serving until the new one is committed. A failed order is retried after
``retry_base`` doubled per failure (capped at ``retry_cap``); the state of the last order for each certificate
(result, failures, next attempt, the CA's words) is kept in the store, so status shows it and the next leader
keeps the back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from haplane.backoff import backoff_delay
from haplane.errors import AcmeError, HaplaneError, StoreError
from haplane.model.records import Service
from haplane.store.base import Store
from haplane.tls.certs import make_key, parse_bundle, private_key_pem
from haplane.tls.records import Certificate, Challenge, OrderState
from haplane.tls.store import CertificateStore

log = logging.getLogger("haplane.acme")
DAY = 86400.0

__all__ = ["AcmeManager", "AcmeOptions", "acme_name", "wanted_orders"]


@dataclass(frozen=True)
class AcmeOptions:
    directory_url: str
    email: str | None = None
    verify: bool | str = True  # or the path of a CA bundle (a private ACME server)
    renew_before: float = 30 * DAY
    retry_base: float = 60.0
    retry_cap: float = 6 * 3600.0
    interval: float = 60.0  # how often the leader looks, besides the wake-ups of service changes
    order_timeout: float = 90.0
    http_port: int | None = None  # the local HAProxy's plain HTTP port: the challenge is checked there first


def acme_name(host: str) -> str:
    """The certificate name haplane orders for ``host`` (a file name: at most 100 characters)."""
    name = f"acme-{host}"
    return name if len(name) <= 100 else f"acme-{hashlib.sha256(host.encode()).hexdigest()[:32]}"


def _covered(host: str, certs: list[Certificate], now: float, renew_before: float) -> bool:
    return any(c.info.covers(host) and c.info.not_before <= now and c.info.not_after - now > renew_before
               for c in certs)


def wanted_orders(services: list[Service], certs: list[Certificate], orders: dict[str, OrderState], now: float,
                  renew_before: float) -> list[tuple[str, tuple[str, ...]]]:
    """(certificate name, hosts) to order now: hosts of ``tls: auto`` services that no certificate covers for
    longer than ``renew_before``, whose back-off has passed. PURE."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for host in sorted({s.predicate for s in services if s.tls == "auto" and s.mode == "host" and s.predicate}):
        if _covered(host, certs, now, renew_before):
            continue
        name = acme_name(host)
        last = orders.get(name)
        if last is not None and last.result == "failed" and last.next_attempt > now:
            continue
        out.append((name, (host,)))
    return out


class AcmeManager:
    def __init__(self, store: Store, options: AcmeOptions, node: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.certs = CertificateStore(store)
        self.options = options
        self.node = node
        self.clock = clock
        self.results: Counter[str] = Counter()  # orders by result ("issued", "failed"), for /metrics
        self.client: object | None = None
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Campaign forever; order while leading."""
        from haplane.election import Election
        from haplane.store.keys import ACME_ELECTION

        await Election(self.store, ACME_ELECTION, self.node).run(self._lead)

    def wake(self) -> None:
        self._wake.set()

    async def _lead(self) -> None:
        log.info("ACME: %s orders certificates from %s", self.node, self.options.directory_url)
        watcher = asyncio.create_task(self._watch_services())
        try:
            while True:
                try:
                    await self.scan_once()
                except (StoreError, AcmeError) as exc:
                    log.warning("ACME: %s", exc)
                # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation that lands as the
                # wake does (this loop then went on, and stopping the leader hung)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.interval):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch_services(self) -> None:
        from haplane.store.keys import SERVICES

        while True:
            try:
                start = await self.store.revision() + 1
                async for _batch in self.store.watch(SERVICES, start):
                    self._wake.set()
            except HaplaneError:
                await asyncio.sleep(1.0)

    async def scan_once(self) -> list[str]:
        """Order what is wanted now, one at a time; the names ordered (issued or failed)."""
        from haplane.registry import RegistryStore

        now = self.clock()
        services = [s for s, _ in await RegistryStore(self.store).list_services()]
        certs = [c for c, _ in await self.certs.all()]
        orders = await self.certs.orders()
        done = []
        for name, hosts in wanted_orders(services, certs, orders, now, self.options.renew_before):
            await self.order(name, hosts, orders.get(name))
            done.append(name)
        return done

    async def _client(self) -> object:
        from haplane.tls.acme import AcmeClient
        from haplane.tls.certs import parse_key

        if self.client is None:
            pem = await self.certs.account_key()
            if pem is None:
                pem = await self.certs.create_account_key(private_key_pem(make_key()), self.options.directory_url)
            key = parse_key(pem, "acme account key")
            self.client = await asyncio.to_thread(AcmeClient, self.options.directory_url, key,
                                                  email=self.options.email, verify=self.options.verify)
        return self.client

    async def order(self, name: str, hosts: tuple[str, ...], last: OrderState | None = None) -> bool:
        """One order, start to finish; True when a certificate was stored."""
        from haplane.tls.acme import AcmeClient

        started = self.clock()
        tokens: list[str] = []
        log.info("ACME: ordering %s for %s", name, ", ".join(hosts))
        try:
            client = await self._client()
            assert isinstance(client, AcmeClient)
            key = make_key()
            pending = await asyncio.to_thread(client.begin, hosts, key)
            if pending.challenges:
                tokens = [c.token for c in pending.challenges]
                await self.certs.put_challenges(pending.challenges)
                await self._wait_served(pending.challenges)
                await asyncio.to_thread(client.answer, pending)
            chain = await asyncio.to_thread(client.finish, pending, self.options.order_timeout)
            bundle = parse_bundle(chain, private_key_pem(key), self.clock())
            await self.certs.put(name, bundle, "acme")
        except HaplaneError as exc:
            failures = (last.failures if last and last.result == "failed" else 0) + 1
            delay = backoff_delay(failures - 1, self.options.retry_base, self.options.retry_cap)
            self.results["failed"] += 1
            if isinstance(exc, AcmeError) and "account" in str(exc).lower():
                self.client = None  # the account may be gone: find or make it again next time
            log.warning("ACME: order for %s failed (%s); next attempt in %.0fs", ", ".join(hosts), exc, delay)
            with contextlib.suppress(HaplaneError):
                await self.certs.put_order(OrderState(name, hosts, "failed", started, failures, started + delay,
                                                      str(exc)[:500]))
            return False
        finally:
            if tokens:
                with contextlib.suppress(HaplaneError):
                    await self.certs.delete_challenges(tokens)
        self.results["issued"] += 1
        log.info("ACME: %s issued for %s (serial %s, valid until %s)", name, ", ".join(hosts), bundle.info.serial,
                 time.strftime("%Y-%m-%d", time.gmtime(bundle.info.not_after)))
        await self.certs.put_order(OrderState(name, hosts, "issued", started))
        return True

    async def _wait_served(self, challenges: list[Challenge], timeout: float = 10.0) -> None:
        """Until the local HAProxy answers every challenge (the agents apply the store's challenges through the
        Runtime API within milliseconds), or ``timeout``: the CA may reach another node, so go on either way."""
        if not self.options.http_port:
            await asyncio.sleep(0.2)
            return
        deadline = self.clock() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            for ch in challenges:
                url = f"http://127.0.0.1:{self.options.http_port}/.well-known/acme-challenge/{ch.token}"
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        r = await http.get(url, headers={"Host": ch.host})
                        if r.status_code == 200 and r.text == ch.key_authorization:
                            break
                    if self.clock() > deadline:
                        log.warning("ACME: the local HAProxy does not answer the challenge for %s yet; asking the "
                                    "CA to check all the same", ch.host)
                        return
                    await asyncio.sleep(0.05)
