"""Render cost vs `haproxy -c` cost, for N services with 10 instances each (issue 2's figure).

For each size: compose (records → model) and render (model → text) time, best of a few runs, next to
`haproxy -c` on the same config, the floor that any config change must pay anyway. Also prints µs per
service so linear growth is visible. The addresses are 192.168.x as in the seeds: the config is only
checked, never served.

    .venv/bin/python bench/bench_render.py            # 100, 1,000, 10,000 services
    .venv/bin/python bench/bench_render.py --quick    # 100 and 1,000 services, one run each
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time

from haplane.compose import Container, TableService, compose_table
from haplane.model.records import Service
from haplane.render import render


def table(n_services: int, per: int = 10) -> list[TableService]:
    out = []
    for s in range(n_services):
        svc = Service(f"svc{s}", "host" if s % 2 else "path",
                      f"svc{s}.example.com" if s % 2 else f"/svc{s}", 80, "SID" if s % 3 == 0 else None)
        containers = tuple(Container(f"c{s}x{i}", f"192.168.{(s * per + i) // 250 % 250}.{(s * per + i) % 250 + 1}",
                                     8000 + i) for i in range(per))
        out.append(TableService(svc, containers))
    return out


def best(fn, runs: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = [100, 1000] if args.quick else [100, 1000, 10000]
    runs = 1 if args.quick else 3
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    print(f"{'services':>8} {'servers':>8} {'compose ms':>11} {'render ms':>10} {'haproxy -c ms':>14} "
          f"{'haplane/-c':>10} {'µs/service':>10} {'cfg KiB':>8}")
    for n in sizes:
        services = table(n)
        t_compose, cfg_model = best(lambda: compose_table(services), runs)  # noqa: B023
        t_render, text = best(lambda: render(cfg_model), runs)  # type: ignore[arg-type]  # noqa: B023
        assert isinstance(text, str)
        with tempfile.NamedTemporaryFile("w", suffix=".cfg") as fh:
            fh.write(text)
            fh.flush()

            def check() -> int:
                return subprocess.run([haproxy, "-c", "-q", "-f", fh.name], capture_output=True).returncode

            t_check, rc = best(check, runs)
            if rc != 0:
                print(f"haproxy -c rejected the {n}-service config", file=sys.stderr)
                return 1
        ours = t_compose + t_render
        print(f"{n:>8} {n * 10:>8} {t_compose * 1000:>11.1f} {t_render * 1000:>10.1f} {t_check * 1000:>14.1f} "
              f"{ours / t_check:>10.2f} {ours / n * 1e6:>10.1f} {len(text) / 1024:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
