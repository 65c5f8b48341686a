"""The config the registry's records render to, as an agent with the same settings would compose it
(without the agent's control lines: admin socket, master CLI, server-state file)."""

from __future__ import annotations

from dataclasses import replace

from haplane.compose import compose
from haplane.model.records import BackendSpec, FrontendSpec, Registry
from haplane.render import render, render_maps
from haplane.settings import Settings


def render_registry(registry: Registry, settings: Settings) -> tuple[str, dict[str, str]]:
    from haplane.agent.runner import agent_options

    options = agent_options(settings, settings.state_dir.expanduser().resolve()).compose
    config = compose(registry, options)
    return render(config), render_maps(config)


def with_record(registry: Registry, kind: str, record: FrontendSpec | BackendSpec) -> Registry:
    """``registry`` with one frontend or backend added or replaced (to check it before it is stored)."""
    if isinstance(record, FrontendSpec):
        return replace(registry, frontends=(*(f for f in registry.frontends if f.name != record.name), record))
    return replace(registry, backends=(*(b for b in registry.backends if b.name != record.name), record))
