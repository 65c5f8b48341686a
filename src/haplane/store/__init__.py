"""Stores: where the registry's records live. ``open_store(url)`` picks an engine by the URL's scheme.

Engines load lazily from the table below (through ``haplane.importer``), so etcd's or AWS's client libraries
are imported only when that engine is used; a missing one is a ``MissingDependency`` naming the package.
The key layout every engine holds is ``keys.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from haplane.errors import ConfigurationError
from haplane.importer import import_from_string
from haplane.store._events import redact_url
from haplane.store.base import KV, Compare, Delete, Event, Op, Put, Store, prefix_end

__all__ = ["KV", "Compare", "Delete", "Event", "Op", "Put", "Store", "default_store_url", "open_store",
           "prefix_end", "redact_url"]

# scheme -> "module:factory"; the factory takes the URL (and, for etcd, the etcd_* settings as keyword
# arguments) and returns a Store (not yet connected).
ENGINES: dict[str, str] = {
    "memory": "haplane.store.memory:open_memory",
    "sqlite": "haplane.store.sqlite:open_sqlite",
    "etcd": "haplane.store.etcd:open_etcd",
    "dynamodb": "haplane.store.dynamodb:open_dynamodb",
}


def default_store_url(state_dir: Path) -> str:
    return f"sqlite:///{(state_dir / 'haplane.db').resolve()}"


def open_store(url: str, settings: Mapping[str, str | None] | None = None) -> Store:
    """Open the store named by ``url`` (``memory://``, ``sqlite:///PATH``, ``etcd://h:p[,h:p]/prefix``...).

    ``settings``: engine settings named ``<scheme>_<option>`` (``Settings.store_settings()``, e.g.
    ``etcd_cacert``); those of the URL's engine are passed to its factory, the others ignored."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigurationError(f"store URL {redact_url(url)!r} has no scheme; expected one of: "
                                 + ", ".join(f"{s}://" for s in ENGINES))
    target = ENGINES.get(scheme)
    if target is None:
        raise ConfigurationError(f"unknown store scheme {scheme!r} in {redact_url(url)!r}; expected one of: "
                                 + ", ".join(f"{s}://" for s in ENGINES))
    options = {name[len(scheme) + 1:]: value for name, value in (settings or {}).items()
               if name.startswith(scheme + "_") and value not in (None, "")}
    factory = import_from_string(target, f"the {scheme} store engine")
    store: Store = factory(url, **options) if options else factory(url)
    return store
