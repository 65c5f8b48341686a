"""What bench_heal.py and bench_new_service.py share around their rig: the command line's common part (``--quick``,
``kill -USR2`` for a stack dump, HAPLANE_BENCH_LOG for haplane's own log level) and the run over sizes, each in a
fresh temporary directory."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The parser with ``--quick``; ``kill -USR2`` prints where every thread is, and haplane's logs show at
    HAPLANE_BENCH_LOG (default CRITICAL: the benches' kills make HAProxy's alerts expected)."""
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    logging.basicConfig(level=os.environ.get("HAPLANE_BENCH_LOG", "CRITICAL"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    return ap


async def over_sizes(haproxy: str, sizes: Sequence[int], prefix: str,
                     at_size: Callable[[Path, int, int], Awaitable[None]]) -> int:
    """``at_size(tmp, size, n)`` for each size in turn (``n`` its index), each in a fresh directory removed after;
    2 (said) when ``haproxy`` is not installed."""
    if not shutil.which(haproxy):
        print("haproxy is not installed", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"descriptors: soft {soft}, hard {hard}")
    for n, size in enumerate(sizes):
        tmp = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            await at_size(tmp, size, n)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
