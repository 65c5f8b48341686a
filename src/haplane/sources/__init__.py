"""Discovery sources: watchers that turn something outside (a Docker host, AutoScaling groups, a Consul
catalog) into instances. See ``base.py`` for the contract; engines load lazily from ``SOURCES``."""

from __future__ import annotations

import importlib
from typing import Any

from haplane.errors import ConfigurationError

# name -> "module:factory"; loaded only when used, so boto3 or docker clients are optional
SOURCES: dict[str, str] = {
    "docker": "haplane.sources.docker:DockerSource",
    "aws": "haplane.sources.aws_autoscaling:AutoScalingSource",
    "consul": "haplane.sources.consul:ConsulSource",
}


def load_source(name: str) -> Any:
    target = SOURCES.get(name)
    if target is None:
        raise ConfigurationError(f"unknown source {name!r}; expected one of: {', '.join(SOURCES)}")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"the {name} source could not be loaded: {exc}") from exc
    return getattr(module, attr)
