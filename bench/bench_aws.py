"""The DynamoDB store and the AutoScaling source against moto in server mode, each figure next to its floor.

moto is a local HTTP fake, so absolute figures say nothing about AWS (one DynamoDB round trip in a region is
typically 3-10 ms); what they show is how many round trips haplane spends per operation, against the floor of
one raw boto3 call to the same endpoint:
- floor: a raw ``GetItem`` and a raw one-item ``TransactWriteItems`` (p50).
- ``txn(Put)`` latency with one writer (expected: about 2 round trips: the keys read, then the transaction) and
  throughput with 1 and 10 writers (one process: writers take turns, so ~ the one-writer rate);
- put-to-watch latency: a txn to a watcher in the same process receiving it (expected: under ``poll`` + one
  Query round trip; ``poll`` is 0.2 s by default, 0.05 s here);
- one AutoScaling poll for a group of N instances (DescribeAutoScalingGroups + DescribeInstances, all pages),
  next to the floor of those two raw calls.

    python bench/bench_aws.py            # ~1 min
    python bench/bench_aws.py --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tests.support.moto import FAKE_AWS_ENV, moto_server

from haplane.sources.aws_autoscaling import AwsAutoScalingSource
from haplane.store import Put, open_store


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def raw_floor(url: str, n: int) -> tuple[float, float]:
    import boto3

    c = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
    table = f"floor{uuid.uuid4().hex[:8]}"
    c.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                         {"AttributeName": "sk", "AttributeType": "S"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    gets, txns = [], []
    for i in range(n):
        t = time.perf_counter()
        c.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"S": "b"}}, ConsistentRead=True)
        gets.append(time.perf_counter() - t)
        t = time.perf_counter()
        c.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": {"pk": {"S": "a"},
                                                                                   "sk": {"S": str(i)}}}}])
        txns.append(time.perf_counter() - t)
    return statistics.median(gets), statistics.median(txns)


async def store_figures(url: str, n: int, seconds: float) -> None:
    store = open_store(f"dynamodb://b{uuid.uuid4().hex[:8]}?region=us-east-1&endpoint={url}&poll=0.05")
    try:
        lat = []
        for i in range(n):
            t = time.perf_counter()
            await store.txn([], [Put(f"/k/{i}", "v")])
            lat.append(time.perf_counter() - t)
        print(f"dynamodb txn(Put) latency, 1 writer            p50 {ms(statistics.median(lat))}, "
              f"p99 {ms(pct(lat, 0.99))}  [n={n}]")
        for writers in (1, 10):
            done = 0
            stop = time.perf_counter() + seconds

            async def writer(w: int, stop: float = stop) -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    await store.txn([], [Put(f"/t/{w}/{done}", "v")])
                    done += 1
            started = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(writers)))
            rate = done / (time.perf_counter() - started)
            print(f"dynamodb txn(Put), {writers:>2} concurrent writer(s)     {rate:7.1f} txn/s")
        watch = store.watch("/w/", await store.revision() + 1)
        wlat = []
        for i in range(max(3, n // 2)):
            t = time.perf_counter()
            await store.txn([], [Put(f"/w/{i}", "v")])
            await anext(watch)
            wlat.append(time.perf_counter() - t)
        print(f"dynamodb put-to-watch latency (poll 50 ms)     p50 {ms(statistics.median(wlat))}, "
              f"p99 {ms(pct(wlat, 0.99))}  [n={len(wlat)}]")
    finally:
        await store.close()


async def asg_figures(url: str, sizes: list[int], rounds: int) -> None:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    asg = boto3.client("autoscaling", endpoint_url=url, region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.200.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    asg.create_launch_configuration(LaunchConfigurationName="bench", ImageId=image, InstanceType="t2.micro")
    for size in sizes:
        name = f"bench-{size}"
        asg.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName="bench", MinSize=0,
                                      MaxSize=size, DesiredCapacity=size, VPCZoneIdentifier=subnet["SubnetId"])
        source = AwsAutoScalingSource([name], "web", 80, endpoint_url=url, region="us-east-1")
        polls, floors = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            (view,) = await source.poll()
            polls.append(time.perf_counter() - t)
            assert len(view.instances) == size
            t = time.perf_counter()
            g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
            ec2.describe_instances(InstanceIds=[i["InstanceId"] for i in g["Instances"]])
            floors.append(time.perf_counter() - t)
        print(f"aws poll, group of {size:>3} instances            p50 {ms(statistics.median(polls))}"
              f"   (floor: the 2 raw calls {ms(statistics.median(floors))})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    os.environ.update(FAKE_AWS_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    n, seconds, rounds, sizes = (10, 0.5, 3, [10]) if args.quick else (200, 3.0, 20, [10, 100])
    with moto_server() as server:
        print(f"moto server mode at {server.url}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        get, txn = raw_floor(server.url, n)
        print(f"floor    raw boto3 GetItem (consistent)          p50 {ms(get)}")
        print(f"floor    raw boto3 TransactWriteItems, 1 item    p50 {ms(txn)}")
        asyncio.run(store_figures(server.url, n, seconds))
        asyncio.run(asg_figures(server.url, sizes, rounds))


if __name__ == "__main__":
    main()
