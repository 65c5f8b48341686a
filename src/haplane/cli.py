"""The composition root: parse the command line, read settings, hand over to a subcommand.

No logic lives here that tests would need; each subcommand is a module in ``haplane.commands``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from haplane import __version__
from haplane.errors import HaplaneError

# name -> module in haplane.commands; the order is the order in --help
COMMANDS: dict[str, str] = {
    "up": "haplane.commands.up",
    "generate": "haplane.commands.generate",
    "check": "haplane.commands.check",
    "serve": "haplane.commands.serve",
    "agent": "haplane.commands.agent",
    "watch": "haplane.commands.watch",
    "status": "haplane.commands.status",
    "plan": "haplane.commands.plan",
    "events": "haplane.commands.events",
    "export": "haplane.commands.export",
    "import": "haplane.commands.import_",
}

EPILOG = """\
Start here:  haplane up          (HAProxy + API + UI + agent on this machine, state in ./.state)
Lambda-Registry compatibility:  haplane generate examples/seed-001.json
Settings come from --options, HAPLANE_* environment variables, and --config FILE (YAML), in that order.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haplane",
        description="haplane keeps HAProxy in sync with the services that are really running: "
                    "Runtime API first, validated seamless reloads only for structural changes.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"haplane {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="log verbosity (default: info)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a subcommand not built yet
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        code: int = args._run(args)
        return code
    except HaplaneError as exc:
        print(f"haplane {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
