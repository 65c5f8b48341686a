"""Which hosts the ACME manager orders for, and when (pure)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from haplane.model.records import Service
from haplane.registry import RegistryStore
from haplane.store.memory import MemoryStore
from haplane.testing_tls import TestCA
from haplane.tls.certs import parse_bundle
from haplane.tls.manager import DAY, AcmeManager, AcmeOptions, acme_name, wanted_orders
from haplane.tls.records import OrderState, records_of

NOW = time.time()
CA = TestCA()


def _cert(host: str, days: float) -> object:
    leaf = CA.issue([host], days=days)
    return records_of("c-" + host, parse_bundle(leaf.chain_pem, leaf.key_pem, NOW), "api")[0]


def test_orders_auto_hosts_not_covered_long_enough() -> None:
    services = [Service.from_dict({"predicate": "a.test", "tls": "auto"}, name="a"),
                Service.from_dict({"predicate": "b.test", "tls": "auto"}, name="b"),
                Service.from_dict({"predicate": "c.test", "tls": "auto"}, name="c"),
                Service.from_dict({"predicate": "d.test", "tls": "redirect"}, name="d")]
    certs = [_cert("a.test", 90), _cert("b.test", 20)]  # a: fine; b: inside the 30-day window; c: none
    got = wanted_orders(services, certs, {}, NOW, 30 * DAY)  # type: ignore[arg-type]
    assert got == [(acme_name("b.test"), ("b.test",)), (acme_name("c.test"), ("c.test",))]


def test_a_failed_order_waits_for_its_back_off() -> None:
    services = [Service.from_dict({"predicate": "c.test", "tls": "auto"}, name="c")]
    failed = {acme_name("c.test"): OrderState(acme_name("c.test"), ("c.test",), "failed", NOW, 2, NOW + 60, "x")}
    assert wanted_orders(services, [], failed, NOW, 30 * DAY) == []
    assert wanted_orders(services, [], failed, NOW + 61, 30 * DAY) == [(acme_name("c.test"), ("c.test",))]


def test_long_host_names_still_make_file_names() -> None:
    host = ".".join(["x" * 60] * 4)
    assert len(acme_name(host)) <= 100 and acme_name(host).startswith("acme-")


class _Recorder(AcmeManager):
    """An AcmeManager whose order stores a test CA's certificate instead of asking a CA, and says who ordered."""

    def __init__(self, store: MemoryStore, node: str, ordered: list[tuple[str, str]]) -> None:
        super().__init__(store, AcmeOptions("https://acme.invalid/directory", interval=0.2), node)
        self.ordered = ordered

    async def order(self, name: str, hosts: tuple[str, ...], last: OrderState | None = None) -> bool:
        self.ordered.append((self.node, hosts[0]))
        leaf = CA.issue(list(hosts), days=90)
        await self.certs.put(name, parse_bundle(leaf.chain_pem, leaf.key_pem, time.time()), "acme")
        return True


async def test_one_node_orders_at_a_time_and_another_takes_over() -> None:
    """Two nodes on one store: only the election's leader orders; when it stops, the other orders."""
    store = MemoryStore()
    reg = RegistryStore(store)
    ordered: list[tuple[str, str]] = []
    managers = {n: _Recorder(store, n, ordered) for n in ("n1", "n2")}
    tasks = {n: asyncio.create_task(m.run()) for n, m in managers.items()}

    async def until_ordered(host: str, timeout: float = 15.0) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        while not any(h == host for _, h in ordered):
            assert asyncio.get_running_loop().time() < deadline, f"{host} never ordered: {ordered}"
            await asyncio.sleep(0.02)
        return next(n for n, h in ordered if h == host)

    try:
        await reg.put_service(Service.from_dict({"predicate": "a.test", "tls": "auto"}, name="a"))
        leader = await until_ordered("a.test")
        await reg.put_service(Service.from_dict({"predicate": "b.test", "tls": "auto"}, name="b"))
        assert await until_ordered("b.test") == leader
        for m in managers.values():
            m.wake()  # both scan again: nothing is ordered twice, and never by the follower
        await asyncio.sleep(0.5)
        assert sorted(ordered) == sorted([(leader, "a.test"), (leader, "b.test")])

        tasks[leader].cancel()  # the leader stops without resigning: its lease runs out (5 s)
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[leader]
        await reg.put_service(Service.from_dict({"predicate": "c.test", "tls": "auto"}, name="c"))
        other = await until_ordered("c.test")
        assert other != leader and [h for _, h in ordered].count("c.test") == 1
    finally:
        for t in tasks.values():
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_the_leader_stops_when_cancelled_as_a_wake_arrives() -> None:
    """A cancellation that lands as the leader's wait for a wake ends is not lost (Python 3.11's asyncio.wait_for
    lost it: the loop went on, and the election's handover and the agent's stop waited forever)."""
    m = _Recorder(MemoryStore(), "n1", [])
    for _ in range(20):
        task = asyncio.create_task(m._lead())
        await asyncio.sleep(0.1)  # scanned (nothing wanted): waiting for a wake or the interval
        m.wake()
        await asyncio.sleep(0)  # the wait ends in this turn of the loop...
        task.cancel()  # ...and the stop arrives with it
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the leader's loop went on after it was cancelled"
