"""bench/bench_tls.py --quick runs and prints every figure next to its floor, with zero reloads on the haplane path."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def test_bench_tls_quick() -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("no haproxy binary")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_tls.py"), "--quick"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for figure in ("haplane: PUT -> first handshake presenting it", "reloads during the rotations: 0",
                   "set + commit -> first handshake presenting it", "write + reload -> first handshake",
                   "SNI spread over all of them", "floor: 1 certificate loaded"):
        assert figure in out.stdout, out.stdout
