"""The config the registry's records render to, as an agent with the same settings would compose it
(without the agent's control lines: admin socket, master CLI, server-state file)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath

from haplane.compose import compose
from haplane.model.records import BackendSpec, FrontendSpec, Registry
from haplane.render import Rendered, render_config
from haplane.settings import Settings


def render_registry(registry: Registry, settings: Settings, *, map_dir: str | None = None,
                    inline_maps: bool = False) -> Rendered:
    """The config with its map files (``Rendered.maps``: {path: content}). Map paths are the agent's (under
    ``state_dir``), or under ``map_dir``; ``inline_maps`` routes hosts and paths by ACLs instead of map files, so
    the text stands alone."""
    from haplane.agent.runner import agent_options

    options = agent_options(settings, settings.state_dir.expanduser().resolve()).compose
    if inline_maps:
        options = replace(options, host_map=None, path_map=None)
    elif map_dir is not None:
        def moved(path: str | None) -> str | None:
            return None if path is None else str(PurePosixPath(map_dir) / PurePosixPath(path).name)
        options = replace(options, host_map=moved(options.host_map), path_map=moved(options.path_map))
    return render_config(compose(registry, options))


def with_record(registry: Registry, kind: str, record: FrontendSpec | BackendSpec) -> Registry:
    """``registry`` with one frontend or backend added or replaced (to check it before it is stored)."""
    if isinstance(record, FrontendSpec):
        return replace(registry, frontends=(*(f for f in registry.frontends if f.name != record.name), record))
    return replace(registry, backends=(*(b for b in registry.backends if b.name != record.name), record))
