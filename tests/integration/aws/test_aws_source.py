"""The AutoScaling source against moto in server mode (real HTTP, boto3 pointed at it), pushing into a real
registry: in-service instances only, one set per group, empty groups empty, AWS_ENDPOINT_URL honoured."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Callable
from typing import Any

import pytest
from tests.integration.aws.conftest import Account

from haplane.model.records import Instance
from haplane.registry import RegistryStore
from haplane.sources.aws_autoscaling import AwsAutoScalingSource
from haplane.sources.base import StoreSink
from haplane.store.memory import MemoryStore

pytestmark = pytest.mark.integration
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


async def owned(reg: RegistryStore, source: str) -> list[Instance]:
    return sorted((i for i, _ in await reg.list_instances() if i.source == source), key=lambda i: i.id)


async def until(check: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_in_service_instances_one_set_per_group(account: Account) -> None:
    a = account.group("web-a", 3)
    b = account.group("web-b", 2, subnet=account.subnet_in("us-east-1b"))
    reg = RegistryStore(MemoryStore())
    source = AwsAutoScalingSource([a, b], "web", 8080, interval=0.1, endpoint_url=account.url, region="us-east-1")
    await source.push(StoreSink(reg), await source.poll())
    got_a, got_b = await owned(reg, "aws-asg-web-a"), await owned(reg, "aws-asg-web-b")
    assert {i.id: i.address for i in got_a} == account.addresses(a)
    assert {i.id: i.address for i in got_b} == account.addresses(b)
    assert {(i.zone, i.group, i.port, i.service) for i in got_a} == {("us-east-1a", "web-a", 8080, "web")}
    assert {(i.zone, i.group) for i in got_b} == {("us-east-1b", "web-b")}
    assert all(ipaddress.ip_address(i.address) in LOOPBACK for i in got_a + got_b), "moto gave loopback addresses"

    # Standby and Unhealthy leave the set; the others stay
    ids = sorted(account.addresses(a))
    account.asg.enter_standby(AutoScalingGroupName=a, InstanceIds=[ids[0]], ShouldDecrementDesiredCapacity=True)
    account.asg.set_instance_health(InstanceId=ids[1], HealthStatus="Unhealthy")
    views = await source.poll()
    assert [i.id for i in views[0].instances] == [ids[2]]
    assert await source.push(StoreSink(reg), views) == 1, "only the group that changed is pushed"
    assert [i.id for i in await owned(reg, "aws-asg-web-a")] == [ids[2]]
    assert len(await owned(reg, "aws-asg-web-b")) == 2


async def test_an_empty_group_is_empty_not_the_whole_account(account: Account) -> None:
    account.group("busy", 4)  # instances elsewhere in the account
    empty = account.group("empty", 0)
    source = AwsAutoScalingSource([empty], "web", 80, interval=0.1, endpoint_url=account.url, region="us-east-1")
    views = await source.poll()
    assert views[0].instances == () and not views[0].missing
    reg = RegistryStore(MemoryStore())
    await source.push(StoreSink(reg), views)
    assert await reg.list_instances() == []
    missing = AwsAutoScalingSource(["no-such-group"], "web", 80, endpoint_url=account.url, region="us-east-1")
    (view,) = await missing.poll()
    assert view.missing and view.instances == ()


async def test_scaling_is_followed_in_stable_order(account: Account) -> None:
    g = account.group("scaled", 3)
    reg = RegistryStore(MemoryStore())
    source = AwsAutoScalingSource([g], "web", 8080, interval=0.1, endpoint_url=account.url, region="us-east-1")
    task = asyncio.create_task(source.run(StoreSink(reg)))
    try:
        for n in (3, 10, 2):
            account.scale(g, n)
            want = account.addresses(g)
            assert len(want) == n

            async def matches(want: dict[str, str] = want) -> bool:
                return {i.id: i.address for i in await owned(reg, "aws-asg-scaled")} == want
            await until(matches)
            order = [i.address for i in source.pushed["aws-asg-scaled"]]
            assert order == sorted(order, key=ipaddress.ip_address), "sorted by address"
    finally:
        task.cancel()


async def test_aws_endpoint_url_from_the_environment(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 >= 1.28 reads AWS_ENDPOINT_URL itself: a source without an endpoint setting reaches moto."""
    g = account.group("from-env", 2)
    monkeypatch.setenv("AWS_ENDPOINT_URL", account.url)
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    source = AwsAutoScalingSource([g], "web", 80, region="us-east-1")
    (view,) = await source.poll()
    assert {i.id for i in view.instances} == set(account.addresses(g))
