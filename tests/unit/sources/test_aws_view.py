"""The AutoScaling source's pure part: which instances of AWS's answers are routable, in what order; its
settings; and the agent's focus (HSDO's dedicated-ASG mode) splitting main and fallback backends."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from haplane.commands.watch import aws_from_args, configure_aws
from haplane.compose import FALLBACK_SUFFIX, ComposeOptions, service_backends
from haplane.errors import ConfigurationError, ValidationError
from haplane.model.records import Instance, Service
from haplane.settings import load
from haplane.sources.aws_autoscaling import AwsAutoScalingSource, group_views


def asg(name: str, *members: tuple[str, str, str]) -> dict[str, Any]:
    return {"AutoScalingGroupName": name, "Instances": [
        {"InstanceId": iid, "LifecycleState": life, "HealthStatus": health, "AvailabilityZone": "eu-west-1c"}
        for iid, life, health in members]}


def ec2(iid: str, ip: str | None, state: str = "running", zone: str | None = "eu-west-1a") -> dict[str, Any]:
    d: dict[str, Any] = {"InstanceId": iid, "State": {"Name": state}}
    if ip:
        d["PrivateIpAddress"] = ip
    if zone:
        d["Placement"] = {"AvailabilityZone": zone}
    return d


def test_only_running_in_service_healthy_instances_are_routable() -> None:
    groups = [asg("web", ("i-ok", "InService", "Healthy"), ("i-pend", "Pending", "Healthy"),
                  ("i-term", "Terminating", "Healthy"), ("i-stby", "Standby", "Healthy"),
                  ("i-sick", "InService", "Unhealthy"), ("i-stop", "InService", "Healthy"),
                  ("i-noip", "InService", "Healthy"), ("i-gone", "InService", "Healthy"))]
    instances = [ec2(i, f"127.0.0.{n}") for n, i in enumerate(["i-ok", "i-pend", "i-term", "i-stby", "i-sick"], 1)]
    instances += [ec2("i-stop", "127.0.0.9", state="stopping"), ec2("i-noip", None)]
    (view,) = group_views(["web"], groups, instances, "svc", 8080)
    assert [(i.id, i.address, i.port, i.zone, i.group, i.service) for i in view.instances] == [
        ("i-ok", "127.0.0.1", 8080, "eu-west-1a", "web", "svc")]
    assert view.source == "aws-asg-web" and not view.missing


def test_sets_per_group_sorted_by_address_empty_and_missing_groups() -> None:
    groups = [asg("a", *[(f"i-{n}", "InService", "Healthy") for n in (1, 2, 3)]), asg("empty")]
    instances = [ec2("i-1", "127.0.0.10"), ec2("i-2", "127.0.0.9"), ec2("i-3", "127.0.0.100", zone=None),
                 ec2("i-other", "127.0.0.5")]  # an instance of the account outside the groups
    a, empty, missing = group_views(["a", "empty", "nope"], groups, instances, "svc", 80)
    assert [i.address for i in a.instances] == ["127.0.0.9", "127.0.0.10", "127.0.0.100"], "numeric order"
    assert a.instances[2].zone == "eu-west-1c", "AZ from AutoScaling when EC2 has no placement"
    assert empty.instances == () and not empty.missing
    assert missing.instances == () and missing.missing


def test_source_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="no AutoScaling group"):
        AwsAutoScalingSource([], "web", 80)
    with pytest.raises(ValidationError) as err:
        AwsAutoScalingSource(["bad name"], "web", 80)
    assert err.value.field == "asg"
    with pytest.raises(ValidationError) as err:
        AwsAutoScalingSource(["a"], "web", 70000)
    assert err.value.field == "port"
    with pytest.raises(ConfigurationError, match="interval"):
        AwsAutoScalingSource(["a"], "web", 80, interval=0)


def test_watch_options_fall_back_to_hsdo_settings() -> None:
    p = argparse.ArgumentParser()
    configure_aws(p)
    settings = load(env={"SERVER_ASG_NAMES": "g1, g2", "INTERVAL": "3", "HAPLANE_AWS_REGION": "eu-west-3"})
    src = aws_from_args(p.parse_args(["--service", "web", "--port", "8080"]), settings)
    assert (src.groups, src.interval, src.region, src.name) == (("g1", "g2"), 3.0, "eu-west-3",
                                                                "aws-asg-g1,aws-asg-g2")
    src = aws_from_args(p.parse_args(["--asg", "x", "--service", "web", "--port", "80", "--interval", "0.5"]),
                           settings)
    assert (src.groups, src.interval) == (("x",), 0.5)


def test_dynamodb_table_setting_selects_the_dynamodb_store() -> None:
    settings = load(env={"DYNAMODB_TABLE_NAME": "hsdo", "HAPLANE_AWS_REGION": "eu-west-1"})
    assert settings.store_url() == "dynamodb://hsdo?region=eu-west-1"


def _inst(iid: str, group: str, zone: str) -> Instance:
    return Instance(iid, "web", f"127.0.0.{len(iid)}", 80, zone=zone, group=group)


@pytest.mark.parametrize("all_in_fallback", [False, True])
def test_focus_splits_main_and_fallback_backends(all_in_fallback: bool) -> None:
    members = [_inst("a1", "asg-a", "z1"), _inst("a22", "asg-a", "z1"), _inst("b333", "asg-b", "z2"),
               _inst("c4444", "asg-c", "z3")]
    members = [Instance(**{**i.to_dict(), "slot": n}) for n, i in enumerate(members, 1)]  # type: ignore[arg-type]
    opts = ComposeOptions(focus_groups=frozenset({"asg-a"}), focus_zones=frozenset({"z3"}),
                          all_in_fallback=all_in_fallback)
    main, fallback = service_backends(Service("web"), members, opts)
    assert (main.name, fallback.name) == ("web", "web" + FALLBACK_SUFFIX)

    def live(b: Any) -> dict[str, str | None]:
        return {s.name: s.instance for s in b.servers if s.instance}

    assert set(live(main).values()) == {"a1", "a22", "c4444"}
    want = {"a1", "a22", "b333", "c4444"} if all_in_fallback else {"b333"}
    assert set(live(fallback).values()) == want
    assert live(main)["s1"] == "a1" and live(fallback).get("s3") == "b333", "same slot in both backends"
    assert len(main.servers) == len(fallback.servers), "same size: the fallback never forces its own reloads"
    unfocused = service_backends(Service("web"), members, ComposeOptions())
    assert [b.name for b in unfocused] == ["web"]
