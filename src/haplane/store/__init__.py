"""Stores: where the registry's records live. ``open_store(url)`` picks an engine by the URL's scheme.

Engines load lazily from the table below, so etcd's or AWS's client libraries are imported only when that
engine is used; a missing one is a ``MissingDependency`` naming the package.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from haplane.errors import ConfigurationError
from haplane.store.base import KV, Compare, Delete, Event, Op, Put, Store, prefix_end

__all__ = ["KV", "Compare", "Delete", "Event", "Op", "Put", "Store", "default_store_url", "open_store",
           "prefix_end"]

# scheme -> "module:factory"; the factory takes the URL and returns a Store (not yet connected).
ENGINES: dict[str, str] = {
    "memory": "haplane.store.memory:open_memory",
    "sqlite": "haplane.store.sqlite:open_sqlite",
    "etcd": "haplane.store.etcd:open_etcd",
    "dynamodb": "haplane.store.dynamodb:open_dynamodb",
}


def default_store_url(state_dir: Path) -> str:
    return f"sqlite:///{(state_dir / 'haplane.db').resolve()}"


def open_store(url: str) -> Store:
    """Open the store named by ``url`` (``memory://``, ``sqlite:///PATH``, ``etcd://h:p[,h:p]/prefix``...)."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigurationError(f"store URL {url!r} has no scheme; expected one of: "
                                 + ", ".join(f"{s}://" for s in ENGINES))
    target = ENGINES.get(scheme)
    if target is None:
        raise ConfigurationError(f"unknown store scheme {scheme!r} in {url!r}; expected one of: "
                                 + ", ".join(f"{s}://" for s in ENGINES))
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"the {scheme} store engine could not be loaded: {exc}") from exc
    factory = getattr(module, attr)
    store: Store = factory(url)
    return store
