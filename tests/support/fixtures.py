"""The older systems' own inputs (tests/fixtures, see its README for where each comes from)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_path(*parts: str) -> Path:
    return FIXTURES.joinpath(*parts)


def load_json(*parts: str) -> Any:
    return json.loads(fixture_path(*parts).read_text(encoding="utf-8"))


def read_env_file(*parts: str) -> dict[str, str]:
    """KEY=VALUE lines (comments and blank lines skipped), as a shell's `set -a; . FILE` would export them."""
    out: dict[str, str] = {}
    for line in fixture_path(*parts).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out
