"""moto in server mode (a real HTTP endpoint, started once per session) and an AWS "account" in it whose VPC and
subnets lie inside 127.0.0.0/8: every address moto gives an instance is loopback, so nothing a test routes to
can leave the machine. Each test gets its own subnet (127.0.N.0/24) so addresses never repeat across tests."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from support.moto import FAKE_AWS_ENV, MotoServer, moto_server

_subnets = itertools.count(1)


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_AWS_ENV.items():
            mp.setenv(name, value)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        with moto_server() as server:
            yield server


@dataclass
class Account:
    """boto3 clients on moto, a loopback VPC, and helpers to make AutoScaling groups in it."""

    url: str
    ec2: Any
    asg: Any
    subnet: str
    zone: str
    cidr: str
    next_subnet: Callable[[], int]
    made: list[str] = field(default_factory=list)

    def group(self, name: str, desired: int, subnet: str | None = None) -> str:
        if "lc" not in self.made:
            image = self.ec2.describe_images()["Images"][0]["ImageId"]
            self.asg.create_launch_configuration(LaunchConfigurationName=f"lc-{self.subnet}", ImageId=image,
                                                 InstanceType="t2.micro")
            self.made.append("lc")
        self.asg.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName=f"lc-{self.subnet}",
                                           MinSize=0, MaxSize=50, DesiredCapacity=desired,
                                           VPCZoneIdentifier=subnet or self.subnet)
        return name

    def scale(self, name: str, desired: int) -> None:
        self.asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired)

    def members(self, name: str) -> list[dict[str, Any]]:
        g = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        return list(g["Instances"])

    def addresses(self, name: str) -> dict[str, str]:
        """instance id -> private address, of the group's InService instances."""
        ids = [i["InstanceId"] for i in self.members(name) if i["LifecycleState"] == "InService"]
        if not ids:
            return {}
        out = {}
        for res in self.ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            for inst in res["Instances"]:
                out[inst["InstanceId"]] = inst["PrivateIpAddress"]
        return out

    def subnet_in(self, zone: str) -> str:
        n = self.next_subnet()
        return str(self.ec2.create_subnet(VpcId=self._vpc(), CidrBlock=f"127.0.{n}.0/24",
                                          AvailabilityZone=zone)["Subnet"]["SubnetId"])

    def _vpc(self) -> str:
        return str(self.ec2.describe_subnets(SubnetIds=[self.subnet])["Subnets"][0]["VpcId"])


@pytest.fixture
def account(moto: MotoServer) -> Account:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1")
    asg = boto3.client("autoscaling", endpoint_url=moto.url, region_name="us-east-1")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["127.0.0.0/16"]}])["Vpcs"]
    vpc = vpcs[0]["VpcId"] if vpcs else ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    n = next(_subnets)
    cidr = f"127.0.{n}.0/24"
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    assert os.environ.get("AWS_ACCESS_KEY_ID") == "testing"
    return Account(moto.url, ec2, asg, subnet, "us-east-1a", cidr, lambda: next(_subnets))
