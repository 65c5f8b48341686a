"""bench/bench_aws.py --quick runs and prints every figure next to its floor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def test_bench_aws_quick() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_aws.py"), "--quick"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    for figure in ("floor    raw boto3 GetItem", "dynamodb txn(Put) latency", "put-to-watch latency",
                   "aws poll, group of  10 instances"):
        assert figure in out.stdout, out.stdout
