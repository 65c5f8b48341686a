"""haplane events: the activity stream — every change the agent made, with its reason and effect."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from haplane.commands._client import Remote, Style, add_remote_options, local_settings
from haplane.commands._common import add_settings_options

HELP = "print the activity log (every change: time, kind, subject, reason, result, effect); --follow for live"
DESCRIPTION = """\
Every change the agent made or decided, oldest first: runtime commands it sent, reloads (with the config
diff and haproxy -c's verdict; --diff prints the diff), quarantines, restarts.

Reads STATE_DIR/events.jsonl (written by haplane agent / up), or a remote haplane with --api URL.

  haplane events --state-dir /var/lib/haplane --follow
  haplane events --api http://127.0.0.1:9090 --token $TOKEN --service web --result failed
"""

EVENTS_FILE = "events.jsonl"


def configure(p: argparse.ArgumentParser) -> None:
    add_settings_options(p)
    add_remote_options(p)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new changes as they happen")
    p.add_argument("-n", "--limit", type=int, default=50, metavar="N", help="the last N changes (default: 50)")
    p.add_argument("--since", type=int, default=0, metavar="SEQ",
                   help="only changes after this sequence number (the seq field of --json)")
    p.add_argument("--service", help="only changes of this service, backend or frontend")
    p.add_argument("--kind", help="only this kind (server-add, server-drain, reload, quarantine, ...)")
    p.add_argument("--result", choices=["ok", "failed", "quarantined", "held", "pending"], help="only this result")
    p.add_argument("--diff", action="store_true", help="print reloads' config diffs")


def service_of(rec: dict[str, Any]) -> str:
    subj = str(rec.get("subject", ""))
    for prefix in ("service:", "backend:", "frontend:"):
        if subj.startswith(prefix):
            return subj[len(prefix):]
    return subj.split("/", 1)[0]


def wanted(rec: dict[str, Any], args: argparse.Namespace) -> bool:
    return (int(rec.get("seq", 0)) > args.since
            and (args.service is None or service_of(rec) == args.service)
            and (args.kind is None or rec.get("kind") == args.kind)
            and (args.result is None or rec.get("result") == args.result))


def format_record(rec: dict[str, Any], style: Style, diff: bool = False) -> str:
    t = float(rec.get("time", 0))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"
    detail = rec.get("detail") or {}
    line = (f"{style(stamp, 'dim')}  {rec.get('kind', '?'):<13}  {rec.get('subject', '')}  {rec.get('reason', '')}"
            f"  [{style.state(str(rec.get('result', '')))}]")
    extra: list[str] = []
    if detail.get("command"):
        extra.append("    → " + style(str(detail["command"]), "cyan"))
    if detail.get("answer"):
        extra.append("    HAProxy: " + style(str(detail["answer"]).strip(), "red"))
    if rec.get("kind") in ("reload", "reload-failed"):
        d = str(detail.get("diff") or "")
        changed = sum(1 for ln in d.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---"))
        verdict = f"haproxy -c: {detail['check']}" if detail.get("check") else ""
        summary = ", ".join(x for x in (f"{changed} config lines changed" if d else "", verdict,
                                        f"error: {detail['error']}" if detail.get("error") else "") if x)
        if summary:
            extra.append("    " + summary)
        if diff and d:
            for ln in d.splitlines():
                color = "green" if ln.startswith("+") else "red" if ln.startswith("-") else (
                    "cyan" if ln.startswith("@@") else None)
                extra.append("      " + style(ln, color))
    for msg in detail.get("messages") or []:
        extra.append("    " + style(str(msg), "yellow"))
    return "\n".join([line, *extra])


def read_file(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        with path.open(encoding="utf-8") as fh:
            for raw in fh:
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out


async def follow_file(path: Path, since: int, interval: float = 0.2) -> AsyncIterator[dict[str, Any]]:
    """Records appended to ``path`` with a seq above ``since``, like ``tail -F``: the open file is read to its end
    before a rotated-in new file is opened, so nothing written before the agent rotated it is lost."""
    fh: Any = None
    buf = ""
    last = since
    try:
        while True:
            if fh is None:
                try:
                    fh = path.open(encoding="utf-8")
                except FileNotFoundError:
                    await asyncio.sleep(interval)
                    continue
            chunk = fh.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split("\n")
                for raw in lines:
                    try:
                        rec = json.loads(raw)
                    except ValueError:
                        continue
                    if int(rec.get("seq", 0)) > last:
                        last = int(rec.get("seq", 0))
                        yield rec
                continue
            try:
                replaced = path.stat().st_ino != os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                replaced = False  # between the rename and the new file: keep reading the old one
            if replaced:
                fh.close()
                fh, buf = None, ""
                continue
            await asyncio.sleep(interval)
    finally:
        if fh is not None:
            fh.close()


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0


def _emit(recs: Iterable[dict[str, Any]], args: argparse.Namespace, style: Style) -> None:
    for rec in recs:
        if not wanted(rec, args):
            continue
        print(json.dumps(rec, default=str) if args.json else format_record(rec, style, args.diff), flush=True)


async def _run(args: argparse.Namespace) -> int:
    style = Style(sys.stdout)
    limit = max(0, args.limit)
    if args.api:
        remote = Remote.from_args(args)
        try:
            params = {"service": args.service, "kind": args.kind, "result": args.result, "since": args.since}
            body = await remote.get("/ui/api/activity", {**params, "limit": max(limit, 1)})
            recs = body.get("records", [])
            _emit(recs[-limit:] if limit else [], args, style)
            if args.follow:
                since = recs[-1]["seq"] if recs else args.since
                if not recs and not args.since:  # nothing matched: start after what exists now
                    latest = (await remote.get("/ui/api/activity", {"limit": 1})).get("records", [])
                    since = latest[-1]["seq"] if latest else 0
                async for event, data in remote.events("/ui/api/stream/activity", {**params, "since": since}):
                    if event == "activity":
                        _emit([data], args, style)
        finally:
            await remote.close()
        return 0
    _settings, directory = local_settings(args)
    path = directory / EVENTS_FILE
    if not path.exists() and not args.follow:
        print(f"no activity yet ({path} does not exist)", file=sys.stderr)
        return 0
    recs = read_file(path)
    shown = [r for r in recs if wanted(r, args)][-limit:] if limit else []
    _emit(shown, args, style)
    if args.follow:
        since = max(args.since, int(recs[-1].get("seq", 0)) if recs else 0)
        if os.isatty(sys.stderr.fileno()):
            print(style(f"following {path} (Ctrl-C stops)", "dim"), file=sys.stderr)
        async for rec in follow_file(path, since):
            _emit([rec], args, style)
    return 0
