"""Discovery sources: watchers that turn something outside (a Docker host, AutoScaling groups, a Consul
catalog) into instances, pushed as source sets through a ``Sink``. The contract is ``base.py``; the sources'
command lines (``haplane watch NAME``) are ``commands/watch.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from haplane.errors import ConfigurationError
from haplane.importer import import_from_string

if TYPE_CHECKING:
    from haplane.sources.base import Source

# name -> "module:class"; loaded only when used (through haplane.importer), so boto3 loads only for aws
SOURCES: dict[str, str] = {
    "docker": "haplane.sources.docker:DockerSource",
    "aws": "haplane.sources.aws_autoscaling:AwsAutoScalingSource",
    "consul": "haplane.sources.consul:ConsulSource",
}


def load_source(name: str) -> Callable[..., Source]:
    """The source class named ``name`` (a key of ``SOURCES``); each takes its own options."""
    target = SOURCES.get(name)
    if target is None:
        raise ConfigurationError(f"unknown source {name!r}; expected one of: {', '.join(SOURCES)}")
    cls: Callable[..., Source] = import_from_string(target, f"the {name} source")
    return cls
