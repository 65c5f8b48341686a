"""The one resolver of import strings, for every table that names implementations: the CLI's commands
(``cli.COMMANDS``), the API's routers (``api.ROUTERS``), the store engines (``store.ENGINES``) and the discovery
sources (``sources.SOURCES``). A table holds strings, so an engine's heavy client loads only when it is used.

A name that cannot be loaded is never skipped: a module the table names that does not exist is a
``MissingImplementation`` naming the entry and the module (or attribute); a module that needs a Python package
that is not installed is a ``MissingDependency`` naming the package. Either is one line for the operator.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from haplane.errors import MissingDependency, MissingImplementation


def import_module(name: str, what: str) -> ModuleType:
    """The module ``name``, for ``what`` (words for the operator: "the etcd store engine")."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        if missing == name or missing.split(".")[0] == name.split(".")[0]:
            raise MissingImplementation(what, name, f"the module {missing}") from None
        raise MissingDependency(what, missing.split(".")[0]) from None


def import_from_string(target: str, what: str) -> Any:
    """``module:attribute`` (or a bare ``module``) as the object it names."""
    module_name, sep, attr = target.partition(":")
    module = import_module(module_name, what)
    if not sep:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise MissingImplementation(what, target, f"{attr} in {module_name}") from None
