"""The rule for missing prerequisites: skip with a clear reason on a developer's machine, fail under CI.

CI (``CI=true``) installs everything through ``scripts/setup``, so a missing binary there is a broken set-up,
never a reason to run fewer real tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from support.procs import find_binary

__all__ = ["in_ci", "require_binary", "unavailable"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> NoReturn:
    """``pytest.skip(reason)``, or ``pytest.fail`` when ``CI=true``."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: prerequisites are installed by scripts/setup, never skipped]",
                    pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, *candidates: str, env: str | None = None, package: str = "") -> str:
    """The path of ``name`` (``$env``, PATH, then ``candidates``), or ``unavailable(...)``."""
    found = find_binary(name, *candidates, env=env)
    if found is None:
        hint = f" (Debian package {package}; scripts/setup installs it)" if package else ""
        unavailable(f"{name} not found{hint}")
    return found
