"""haplane check: run haproxy -c on a config file and print HAProxy's own messages."""

from __future__ import annotations

import argparse
import asyncio
import sys

HELP = "check a haproxy.cfg with haproxy -c and print HAProxy's messages"
DESCRIPTION = """\
Run `haproxy -c -f FILE` and print what HAProxy says. Exit 0 when HAProxy accepts the file, 1 when not.

  haplane generate examples/seed-001.json > /tmp/haproxy.cfg && haplane check /tmp/haproxy.cfg
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the haproxy.cfg to check")
    p.add_argument("--haproxy-bin", default="haproxy", help="the haproxy binary (default: haproxy on PATH)")


def run(args: argparse.Namespace) -> int:
    from haplane.haproxy.check import check_config

    result = asyncio.run(check_config(args.file, haproxy_bin=args.haproxy_bin, is_path=True))
    for line in result.messages:
        print(line)
    print("valid" if result.ok else "INVALID", file=sys.stderr)
    return 0 if result.ok else 1
