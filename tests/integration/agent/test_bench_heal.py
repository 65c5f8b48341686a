"""bench/bench_heal.py --quick runs and prints every figure next to its floor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def test_bench_heal_quick() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_heal.py"), "--quick"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for figure in ("SIGKILL of the master", "SIGKILL of the worker alone", "SIGKILL of both",
                   "floor: stop + start by hand", "start-up (first apply until ready)", "store write -> first answer",
                   "floor: bare set server", "a new service through a reload", "agent RSS", "HAProxy worker RSS"):
        assert figure in out.stdout, out.stdout
