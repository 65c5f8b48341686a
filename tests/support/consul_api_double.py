"""HashiCorp's Consul API double (npm ``@hashicorp/consul-api-double``), rendered for one path by
``consul_double/render.js``. ``scripts/setup`` installs it into ``.cache/consul-api-double``; without it (or without
node) the tests that need it are unavailable (skipped on a developer's machine, failed under CI)."""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.require import unavailable

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / ".cache" / "consul-api-double" / "node_modules"
SCRIPT = Path(__file__).resolve().parent / "consul_double" / "render.js"


@dataclass(frozen=True)
class DoubleAnswer:
    status: int
    headers: dict[str, Any]
    body: Any


def render(path: str, seed: int = 1, nodes: int = 6) -> DoubleAnswer:
    """The double's answer to ``GET path`` (a fresh copy each call: tests may change it)."""
    return copy.deepcopy(_render(path, seed, nodes))


@functools.lru_cache(maxsize=32)
def _render(path: str, seed: int, nodes: int) -> DoubleAnswer:
    node = shutil.which("node")
    if node is None:
        unavailable("node (Node.js) not found: the Consul API double needs it")
    if not (MODULES / "@hashicorp" / "consul-api-double").is_dir():
        unavailable(f"the Consul API double is not installed in {MODULES.parent} (run scripts/setup)")
    out = subprocess.run([node, str(SCRIPT), str(MODULES), path, str(seed)], capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "CONSUL_NODE_COUNT": str(nodes)}, check=False)
    if out.returncode != 0:
        raise AssertionError(f"rendering the double's {path} failed: {out.stderr[-2000:]}")
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    return DoubleAnswer(int(answer["status"]), answer["headers"], json.loads(answer["body"]))
