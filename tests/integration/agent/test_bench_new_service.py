"""bench/bench_new_service.py --quick runs and prints every figure next to its aim and its floor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def test_bench_new_service_quick() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_new_service.py"), "--quick"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for figure in ("new service -> first request answered", "reload path", "HAProxy reloads: ",
                   "store write -> first answer", "floor: bare set server", "agent: RSS", "CPU time",
                   "SIGKILL of master/worker/both", "bare Runtime API, same HAProxy", "aim"):
        assert figure in out.stdout, out.stdout
    # without a pools setting the bench says so; with one it measures both paths
    assert ("pools: not available" in out.stdout) != ("pools on (" in out.stdout), out.stdout
