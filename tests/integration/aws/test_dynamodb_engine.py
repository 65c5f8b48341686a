"""The DynamoDB engine beyond the shared contract (tests/contract runs that against moto too): two stores on
one table (two hosts) never lose an update nor reuse a revision; a txn larger than a DynamoDB transaction is
refused whole; a lease granted by one host is expired by the other's reaper; the table is created on first use."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from tests.integration.aws.conftest import Account

from haplane.errors import ConfigurationError, Conflict, TxnTooLarge
from haplane.store import Compare, Put, open_store
from haplane.store.dynamodb import DynamoDBStore

pytestmark = pytest.mark.integration


def url(account: Account, table: str, **opts: object) -> str:
    extra = "".join(f"&{k}={v}" for k, v in opts.items())
    return f"dynamodb://{table}?region=us-east-1&endpoint={account.url}&poll=0.05&lease_check=0.05{extra}"


async def test_two_hosts_on_one_table(account: Account) -> None:
    table = f"two-{uuid.uuid4().hex[:8]}"
    a, b = open_store(url(account, table)), open_store(url(account, table))
    try:
        await a.txn([], [Put("/n", "0")])

        async def bump(store: object, times: int) -> list[int]:
            assert isinstance(store, DynamoDBStore)
            revs = []
            for _ in range(times):
                while True:
                    kv = await store.get("/n")
                    assert kv is not None
                    try:
                        revs.append(await store.txn([Compare("/n", kv.mod_revision)],
                                                    [Put("/n", str(int(kv.value) + 1))]))
                        break
                    except Conflict:
                        continue
            return revs

        ra, rb = await asyncio.gather(bump(a, 15), bump(b, 15))
        kv = await b.get("/n")
        assert kv is not None and kv.value == "30", "no lost update across hosts"
        assert len(set(ra) | set(rb)) == 30, "no revision used twice"
        assert await a.revision() == await b.revision() == 31

        lease = await a.grant_lease(0.3)
        await a.txn([], [Put("/l", "x", lease)])
        await a.close()  # host a goes away: b's reaper expires a's lease
        deadline = asyncio.get_running_loop().time() + 10
        while await b.get("/l") is not None:
            assert asyncio.get_running_loop().time() < deadline, "lease not expired by the other host"
            await asyncio.sleep(0.05)
    finally:
        await a.close()
        await b.close()


async def test_a_txn_bigger_than_a_dynamodb_transaction_is_refused_whole(account: Account) -> None:
    store = open_store(url(account, f"big-{uuid.uuid4().hex[:8]}", max_items=25))
    try:
        before = await store.revision()
        with pytest.raises(TxnTooLarge) as err:
            await store.txn([], [Put(f"/k{i}", "v") for i in range(24)])
        assert err.value.field == "txn" and "25 items per transaction" in str(err.value)
        assert (err.value.count, err.value.limit) == (26, 25)
        assert await store.revision() == before and (await store.range("/"))[0] == []
        assert await store.txn([], [Put(f"/k{i}", "v") for i in range(23)]) == before + 1
    finally:
        await store.close()


def test_bad_urls_name_the_problem() -> None:
    with pytest.raises(ConfigurationError, match="unknown option"):
        open_store("dynamodb://t?colour=red")
    with pytest.raises(ConfigurationError, match="TABLE"):
        open_store("dynamodb://a/b")
    with pytest.raises(ConfigurationError, match="poll"):
        open_store("dynamodb://t?poll=x")
