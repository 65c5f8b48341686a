"""haplane logs: read the access log an agent writes (``haplane.accesslog``), filtered, optionally following it."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from haplane.accesslog import AccessRecord, parse_output_line
from haplane.commands._common import add_settings_options
from haplane.errors import ConfigurationError

HELP = "read the access log: every request HAProxy handled, with its service and instance"
DESCRIPTION = """\
Print the last requests of the access log that `haplane agent` or `haplane up` writes (with --access-log
full or sampled), filtered by service, instance or status; --follow keeps printing new ones (across
rotations). Reads STATE_DIR/access.log, or the file the agent was told (HAPLANE_ACCESS_LOG_FILE).

  haplane logs --state-dir /var/lib/haplane --follow
  haplane logs --service web --status 5xx -n 100
  haplane logs --status 404 --json | jq .path
"""


def configure(p: argparse.ArgumentParser) -> None:
    add_settings_options(p, store=False)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new requests (Ctrl-C stops)")
    p.add_argument("--service", metavar="NAME", help="only this service's (or Thalassa backend's) requests")
    p.add_argument("--instance", metavar="ID", help="only requests this instance answered")
    p.add_argument("--status", metavar="CODE", help="a status (404) or a class (5xx, 4xx, ...)")
    p.add_argument("-n", "--lines", type=int, default=50, metavar="N",
                   help="how many past requests to print first (default: 50; 0: none)")
    p.add_argument("--json", action="store_true", help="print JSON lines, whatever format the file is in")
    p.add_argument("--file", metavar="PATH", help="read this file instead of the agent's access log")


def status_filter(text: str | None) -> Callable[[AccessRecord], bool]:
    if not text:
        return lambda rec: True
    t = text.strip().lower()
    if re.fullmatch(r"[1-5]xx", t):
        return lambda rec: rec.status is not None and rec.status // 100 == int(t[0])
    if re.fullmatch(r"\d{3}", t):
        return lambda rec: rec.status == int(t)
    raise ConfigurationError(f"--status {text!r}: must be a status code (404) or a class (5xx)")


def matcher(args: argparse.Namespace) -> Callable[[AccessRecord], bool]:
    by_status = status_filter(args.status)

    def match(rec: AccessRecord) -> bool:
        return (args.service is None or rec.service == args.service) and \
               (args.instance is None or rec.instance == args.instance) and by_status(rec)

    return match


def log_path(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    from haplane.agent.runner import saved_agent_settings
    from haplane.settings import load

    settings = load({"state_dir": args.state_dir}, config_file=args.config)
    state_dir = settings.state_dir.expanduser().resolve()
    saved = saved_agent_settings(state_dir)  # what the agent was told, when it recorded it
    to = str(saved.get("access_log_file", settings.access_log_file) or "")
    mode = str(saved.get("access_log", settings.access_log))
    if to == "-":
        raise ConfigurationError("the agent writes its access log to its stdout (access_log_file = -): read it "
                                 "there, or give --file")
    path = Path(to) if to else state_dir / "access.log"
    if not path.exists():
        why = "the agent's access log is off (--access-log full or sampled turns it on)" if mode == "off" \
            else "no request has been logged yet"
        raise ConfigurationError(f"no access log at {path}: {why}")
    return path


def _show(line: str, rec: AccessRecord, as_json: bool) -> str:
    if as_json:
        return line if line.startswith("{") else json.dumps(rec.to_dict(), separators=(",", ":"))
    if not line.startswith("{"):
        return line
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.time)) + f".{int(rec.time * 1000) % 1000:03d}"
    request = " ".join(x for x in (rec.method, rec.path, rec.http_version) if x)
    timing = f"{rec.request_ms}/{rec.queue_ms}/{rec.connect_ms}/{rec.response_ms}/{rec.total_ms}ms"
    return (f"{when} {rec.client} {rec.frontend} {rec.service or '-'}/{rec.instance or '-'} "
            f"{rec.status if rec.status is not None else '-'} {rec.bytes}B {timing} {rec.termination}"
            + (f' "{request}"' if request else ""))


def _lines_from(fh: TextIO) -> Iterator[str]:
    for line in fh:
        if line.endswith("\n"):
            yield line.rstrip("\n")


def run(args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise ConfigurationError("--lines must be 0 or more")
    match = matcher(args)
    path = log_path(args)
    out = sys.stdout
    try:
        fh = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
    try:
        last: deque[str] = deque(maxlen=args.lines or 1)
        for line in _lines_from(fh):
            rec = parse_output_line(line)
            if rec is not None and match(rec):
                last.append(_show(line, rec, args.json))
        if args.lines:
            for shown in last:
                out.write(shown + "\n")
        out.flush()
        if args.follow:
            _follow(path, fh, match, args.json, out)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # | head
        return 0
    finally:
        fh.close()
    return 0


def _follow(path: Path, fh: TextIO, match: Callable[[AccessRecord], bool], as_json: bool, out: TextIO) -> None:
    """Print lines as they are appended; when the file is rotated (a new inode at ``path``, or it shrank),
    finish the old one and go on with the new one."""
    inode = path.stat().st_ino
    partial = ""

    def drain() -> bool:
        nonlocal partial
        chunk = fh.read()
        if not chunk:
            return False
        lines = (partial + chunk).split("\n")
        partial = lines.pop()
        for line in lines:
            rec = parse_output_line(line)
            if rec is not None and match(rec):
                out.write(_show(line, rec, as_json) + "\n")
        out.flush()
        return True

    while True:
        if drain():
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            time.sleep(0.2)
            continue
        if st.st_ino != inode or st.st_size < fh.tell():
            drain()  # what was appended to the old file before it was renamed
            fh.close()
            fh = path.open(encoding="utf-8", errors="replace")
            inode, partial = st.st_ino, ""
            continue
        time.sleep(0.2)
