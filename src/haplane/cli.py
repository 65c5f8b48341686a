"""The composition root: parse the command line, read settings, hand over to a subcommand.

No logic lives here that tests would need; each subcommand is a module in ``haplane.commands``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from haplane import __version__, logsetup
from haplane.errors import HaplaneError
from haplane.importer import import_module

# name -> module in haplane.commands (each has HELP, configure(parser), run(args)); the order is --help's.
# Every entry must load: a missing module is an error, never a command silently left out.
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
    "logs": "haplane.commands.logs",
    "export": "haplane.commands.export",
    "import": "haplane.commands.import_",
}

EPILOG = """\
Start here:  haplane up          (HAProxy + API + UI + agent on this machine, state in ./.state)
Lambda-Registry compatibility:  haplane generate examples/seed-001.json
Settings come from --options, HAPLANE_* environment variables, and --config FILE (YAML), in that order.
"""


def _log_options(p: argparse.ArgumentParser, level_default: object, format_default: object) -> None:
    p.add_argument("--log-level", default=level_default, choices=["debug", "info", "warning", "error"],
                   help="log verbosity (default: info)")
    p.add_argument("--log-format", choices=logsetup.FORMATS, default=format_default,
                   help="haplane's own log lines on stderr: text, or json (one object a line, for log shippers); "
                        "default: HAPLANE_LOG_FORMAT, else text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haplane",
        description="haplane keeps HAProxy in sync with the services that are really running: "
                    "Runtime API first, validated seamless reloads only for structural changes.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"haplane {__version__}")
    _log_options(parser, "info", None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = import_module(module_name, f"the command {name!r}")
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _log_options(p, argparse.SUPPRESS, argparse.SUPPRESS)  # also after the command: haplane up --log-format json
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except HaplaneError as exc:  # a command that cannot be loaded: a broken install, said in one line
        print(f"haplane: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    log_format = args.log_format or os.environ.get("HAPLANE_LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in logsetup.FORMATS:
        print(f"haplane: setting log_format (HAPLANE_LOG_FORMAT): {log_format!r}: must be one of "
              f"{', '.join(logsetup.FORMATS)}", file=sys.stderr)
        return 2
    logsetup.configure(args.log_level, log_format)
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
