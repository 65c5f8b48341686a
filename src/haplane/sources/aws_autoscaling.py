"""AWS AutoScaling groups as a source (HSDO's server): the in-service instances of each group, with their private
address and availability zone, as one source-owned set per group.

- Source ids: ``aws-asg-<group>``; each instance carries ``group`` = the ASG name and ``zone`` = its AZ, so an
  agent's focus (``focus_groups`` / ``focus_zones``) can split main and fallback backends (HSDO's dedicated-ASG
  mode).
- Only instances AutoScaling reports ``InService`` and ``Healthy`` and EC2 reports ``running`` with a private
  address are routable: Pending, Terminating, Standby, Detaching, Unhealthy and stopped ones are left out.
- A group without such instances is an empty set. EC2's DescribeInstances is never called with an empty id list
  (it would answer with every instance of the account: HSDO's bug).
- Every page of every answer is read (boto3 paginators); the set is sorted by private address, then id, so the
  order is stable (HSDO keeps its list sorted so consistent hashing stays stable).
- Polls every ``interval`` seconds (setting ``poll_interval``, HSDO's ``INTERVAL``) and pushes a group's set only
  when it changed (and at start). AWS errors and throttling (after botocore's own retries) back off
  exponentially, from ``interval`` up to ``max_backoff``, and never touch the sets: the last good view stays.
- boto3 is blocking: each call runs in a thread (``asyncio.to_thread``). boto3 is the ``aws`` extra; without it
  building the source raises ``MissingDependency``. Region and endpoint: the settings ``aws_region`` /
  ``aws_endpoint_url`` (or ``--region`` / ``--endpoint-url``), else boto3's own chain, which reads
  ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` (boto3 >= 1.28) itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from haplane.backoff import backoff_delay
from haplane.errors import ConfigurationError, HaplaneError, MissingDependency
from haplane.model import values as v
from haplane.model.records import Instance
from haplane.sources.base import Sink

__all__ = ["AwsAutoScalingSource", "GroupView", "group_views"]

log = logging.getLogger("haplane.sources.aws")

ROUTABLE_LIFECYCLE = "InService"
ROUTABLE_HEALTH = "Healthy"
DESCRIBE_INSTANCES_CHUNK = 200  # ids per DescribeInstances call (its filter takes at most 200 values)


@dataclass(frozen=True, slots=True)
class GroupView:
    group: str
    instances: tuple[Instance, ...]
    missing: bool = False  # AutoScaling does not know the group (deleted, or a typo)

    @property
    def source(self) -> str:
        return source_id(self.group)


def source_id(group: str) -> str:
    return f"aws-asg-{group}"


def _sort_key(inst: Instance) -> tuple[int, str]:
    try:
        return int(ipaddress.ip_address(inst.address)), inst.id
    except ValueError:
        return 1 << 128, inst.id


def in_service_ids(group: Mapping[str, Any]) -> list[str]:
    """The ids of a DescribeAutoScalingGroups group's instances that may receive traffic."""
    return sorted(i["InstanceId"] for i in group.get("Instances", [])
                  if i.get("LifecycleState") == ROUTABLE_LIFECYCLE and i.get("HealthStatus") == ROUTABLE_HEALTH)


def group_views(groups: Sequence[str], asg_answer: Iterable[Mapping[str, Any]],
                ec2_answer: Iterable[Mapping[str, Any]], service: str, port: int,
                weight: int = 10) -> list[GroupView]:
    """Pure: the sets for ``groups`` from AutoScaling's groups (``AutoScalingGroups`` items) and EC2's instances
    (``Reservations[].Instances[]`` items). Instances EC2 does not report running with a private address are
    left out."""
    by_name = {g["AutoScalingGroupName"]: g for g in asg_answer}
    ec2 = {i["InstanceId"]: i for i in ec2_answer}
    views = []
    for name in groups:
        g = by_name.get(name)
        if g is None:
            views.append(GroupView(name, (), missing=True))
            continue
        out = []
        for iid in in_service_ids(g):
            e = ec2.get(iid)
            if e is None or e.get("State", {}).get("Name") != "running" or not e.get("PrivateIpAddress"):
                continue
            zone = e.get("Placement", {}).get("AvailabilityZone") or _asg_zone(g, iid)
            out.append(Instance(id=iid, service=service, address=e["PrivateIpAddress"], port=port, weight=weight,
                                zone=zone, group=name))
        views.append(GroupView(name, tuple(sorted(out, key=_sort_key))))
    return views


def _asg_zone(group: Mapping[str, Any], iid: str) -> str | None:
    for i in group.get("Instances", []):
        if i["InstanceId"] == iid:
            zone = i.get("AvailabilityZone")
            return str(zone) if zone else None
    return None


class AwsAutoScalingSource:
    def __init__(self, groups: Sequence[str], service: str, port: int, *, interval: float = 10.0,
                 region: str | None = None, endpoint_url: str | None = None, weight: int = 10,
                 max_backoff: float = 300.0, retries: int = 3,
                 client_factory: Callable[[str], Any] | None = None) -> None:
        if not groups:
            raise ConfigurationError("aws source: no AutoScaling group given (--asg NAME[,NAME...] or setting "
                                     "aws_asg_names / SERVER_ASG_NAMES)")
        self.groups = tuple(dict.fromkeys(groups))
        for g in self.groups:
            v.name(g, "asg")  # it becomes a source id and the instances' group
        self.service = v.name(service, "service")
        self.port = v.port(port, "port")
        self.weight = v.weight(weight, "weight")
        if not interval > 0:
            raise ConfigurationError(f"aws source: interval {interval!r} must be a positive number of seconds")
        self.interval = interval
        self.max_backoff = max(max_backoff, interval)
        self.region = region
        self.endpoint_url = endpoint_url
        self.name = ",".join(source_id(g) for g in self.groups)
        self._client_factory = client_factory or self._boto3_client
        self._clients: dict[str, Any] = {}
        self.pushed: dict[str, tuple[Instance, ...]] = {}  # source id -> the last set the sink took
        self.retries = retries  # botocore's own attempts per call, before our back-off
        self.polls = 0
        self.errors = 0
        self.delays: list[float] = []  # the waits between polls, most recent last (bounded)
        self._boto3_available()

    def _boto3_available(self) -> None:
        try:
            import boto3  # noqa: F401
        except ModuleNotFoundError:
            raise MissingDependency("the aws source", "haplane[aws] (boto3)") from None

    def _boto3_client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        cfg = Config(retries={"mode": "standard", "max_attempts": max(1, self.retries)}, connect_timeout=5,
                     read_timeout=20)
        return boto3.session.Session().client(service, region_name=self.region, endpoint_url=self.endpoint_url,
                                              config=cfg)

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._client_factory(service)
        return self._clients[service]

    # --- one poll (blocking: runs in a thread) ------------------------------------------------------------------

    def _describe(self) -> list[GroupView]:
        asg = self._client("autoscaling")
        groups: list[Mapping[str, Any]] = []
        for page in asg.get_paginator("describe_auto_scaling_groups").paginate(
                AutoScalingGroupNames=list(self.groups)):
            groups.extend(page.get("AutoScalingGroups", []))
        ids = sorted({iid for g in groups if g.get("AutoScalingGroupName") in self.groups
                      for iid in in_service_ids(g)})
        instances: list[Mapping[str, Any]] = []
        if ids:  # never with an empty list: EC2 would answer with every instance of the account
            ec2 = self._client("ec2")
            for i in range(0, len(ids), DESCRIBE_INSTANCES_CHUNK):
                chunk = ids[i:i + DESCRIBE_INSTANCES_CHUNK]
                for page in ec2.get_paginator("describe_instances").paginate(
                        Filters=[{"Name": "instance-id", "Values": chunk}]):
                    for res in page.get("Reservations", []):
                        instances.extend(x for x in res.get("Instances", []) if x.get("InstanceId") in chunk)
        return group_views(self.groups, groups, instances, self.service, self.port, self.weight)

    async def poll(self) -> list[GroupView]:
        """One look at AWS (raises botocore's errors)."""
        views = await asyncio.to_thread(self._describe)
        self.polls += 1
        return views

    async def push(self, sink: Sink, views: Sequence[GroupView]) -> int:
        """Push every set that changed since the sink last took it; returns how many were pushed."""
        n = 0
        for view in views:
            if view.missing and view.source not in self.pushed:
                log.warning("AutoScaling group %s does not exist (yet): its set is empty", view.group)
            if self.pushed.get(view.source) == view.instances:
                continue
            await sink.replace(view.source, view.instances)
            old = self.pushed.get(view.source, ())
            self.pushed[view.source] = view.instances
            log.info("%s: %d in service (%s)", view.source, len(view.instances), _diff(old, view.instances))
            n += 1
        return n

    async def run(self, sink: Sink) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        failures = 0
        while True:
            try:
                views = await self.poll()
                await self.push(sink, views)
                failures = 0
                delay = self.interval
            except (BotoCoreError, ClientError) as exc:
                failures += 1
                self.errors += 1
                delay = backoff_delay(failures, self.interval, self.max_backoff)
                log.warning("AWS answered with an error (%s); keeping the last view, next try in %.1fs",
                            _describe_error(exc), delay)
            except HaplaneError as exc:  # the sink failed: push the whole view again next time
                failures += 1
                self.errors += 1
                self.pushed.clear()
                delay = backoff_delay(failures, self.interval, self.max_backoff)
                log.warning("could not push the AWS view (%s); retrying in %.1fs", exc, delay)
            self.delays = [*self.delays[-99:], delay]
            await asyncio.sleep(delay)


def _describe_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code', '?')}: {err.get('Message', '')}"
    return str(exc)


def _diff(old: Sequence[Instance], new: Sequence[Instance]) -> str:
    a = {i.id for i in old}
    b = {i.id for i in new}
    parts = []
    if b - a:
        parts.append("+" + ",".join(sorted(b - a)))
    if a - b:
        parts.append("-" + ",".join(sorted(a - b)))
    return " ".join(parts) or "changed"
