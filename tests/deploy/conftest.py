"""Fixtures of the deployment tests (deploy/, packaging): the repository root, and the wheel and sdist built once a
session with ``python -m build`` (no isolation: the pinned ``build`` and ``setuptools`` from requirements.lock, so
nothing is downloaded).

The image test is slow (a debootstrap on a cold cache, several container starts on vfs storage): it runs under
``CI=true`` (``.ci/run``) or ``HAPLANE_TEST_SLOW=1`` and is skipped otherwise (``run_slow``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def run_slow() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("HAPLANE_TEST_SLOW") == "1"


slow = pytest.mark.skipif(not run_slow(), reason="slow: runs in CI (CI=true) or with HAPLANE_TEST_SLOW=1")


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path
    seconds: float
    log: str


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dists]:
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
                       capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    seconds = time.monotonic() - started
    log = r.stdout + r.stderr
    assert r.returncode == 0, f"python -m build failed:\n{log[-4000:]}"
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, f"expected one sdist and one wheel in {sorted(out.iterdir())}"
    yield Dists(sdists[0], wheels[0], seconds, log)
