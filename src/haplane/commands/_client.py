"""What ``haplane status``, ``plan`` and ``events`` share: a local state directory or a remote registry
(``--api URL --token T``), colour and progress only on a terminal."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TextIO

from haplane.errors import ConfigurationError, Forbidden, HaplaneError, NotFound, Unauthorized
from haplane.settings import Settings

COLORS = {"green": "32", "red": "31", "yellow": "33", "gray": "90", "bold": "1", "cyan": "36", "dim": "2"}
STATE_COLORS = {"up": "green", "ready": "green", "down": "red", "draining": "yellow", "drain": "yellow",
                "maint": "gray", "ok": "green", "failed": "red", "quarantined": "yellow", "held": "yellow",
                "pending": "cyan"}


def add_remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", metavar="URL", help="read a remote haplane (haplane up / serve) instead of the local "
                                                "state directory, e.g. http://127.0.0.1:9090")
    p.add_argument("--token", metavar="TOKEN", help="the API token (default: HAPLANE_API_TOKEN, then "
                                                    "HAPLANE_TOKEN)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


class Style:
    """ANSI colour when ``stream`` is a terminal (and ``NO_COLOR`` is not set), plain text otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.on = stream.isatty() and not os.environ.get("NO_COLOR")

    def __call__(self, text: str, color: str | None) -> str:
        if not self.on or color is None or color not in COLORS:
            return text
        return f"\033[{COLORS[color]}m{text}\033[0m"

    def state(self, text: str) -> str:
        return self(text, STATE_COLORS.get(text))


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """``message…`` on stderr while the block runs, only on a terminal; erased afterwards."""
    tty = sys.stderr.isatty()
    if tty:
        sys.stderr.write(f"\r\033[2m{message}…\033[0m")
        sys.stderr.flush()
    try:
        yield
    finally:
        if tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def table(rows: list[list[str]], style: Style | None = None, indent: str = "") -> str:
    """Rows of cells as aligned columns (widths ignore colour codes)."""
    if not rows:
        return ""
    import re

    plain = re.compile(r"\033\[[0-9;]*m")
    widths = [0] * max(len(r) for r in rows)
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(plain.sub("", cell)))
    out = []
    for r in rows:
        cells = [cell + " " * (widths[i] - len(plain.sub("", cell))) for i, cell in enumerate(r)]
        out.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(out)


def state_dir(settings: Settings) -> Path:
    """The state directory, which must exist (these commands read it; they never create one)."""
    d = settings.state_dir.expanduser().resolve()
    if not d.is_dir():
        raise ConfigurationError(f"state directory {d} does not exist: give --state-dir (where haplane agent or "
                                 "haplane up keeps its state), or --api URL for a remote haplane")
    return d


def local_settings(args: argparse.Namespace) -> tuple[Settings, Path]:
    """Settings for reading a local state directory as its agent sees it: the settings the agent recorded
    there (store, ports, slots, template, sockets) win over the environment and settings file; options given
    on this command line win over both."""
    from haplane import settings as settings_mod
    from haplane.agent.runner import saved_agent_settings
    from haplane.commands._common import load_settings

    settings = load_settings(args)
    directory = state_dir(settings)
    saved = saved_agent_settings(directory)
    if saved:
        explicit = {k: getattr(args, k) for k in ("store", "template") if getattr(args, k, None) is not None}
        # etcd's password is never recorded: it comes from this command's own settings
        settings = settings_mod.load({**saved, **explicit, "state_dir": str(directory),
                                      "etcd_password": settings.etcd_password}, env={})
    return settings, directory


class Remote:
    """A remote haplane's API with a bearer token; HTTP errors become haplane's own."""

    def __init__(self, url: str, token: str | None) -> None:
        import logging

        import httpx

        logging.getLogger("httpx").setLevel(logging.WARNING)  # no request log lines in a command's output
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, trust_env=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Remote:
        token = args.token or os.environ.get("HAPLANE_API_TOKEN") or os.environ.get("HAPLANE_TOKEN")
        return cls(args.api, token)

    async def close(self) -> None:
        await self.client.aclose()

    def _raise(self, status: int, body: Any, path: str) -> None:
        detail = body.get("detail") if isinstance(body, dict) else None
        detail = detail or f"HTTP {status} from {self.url}{path}"
        if status == 401:
            raise Unauthorized(f"{detail} (give --token)")
        if status == 403:
            raise Forbidden(detail)
        if status == 404:
            raise NotFound("path", f"{path} on {self.url} (is this a haplane with the UI installed?)")
        raise HaplaneError(detail)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            r = await self.client.get(path, params={k: v for k, v in (params or {}).items() if v is not None})
        except httpx.HTTPError as exc:
            raise ConfigurationError(f"cannot reach the API at {self.url}: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code >= 400:
            self._raise(r.status_code, body, path)
        return body

    async def events(self, path: str, params: dict[str, Any] | None = None) -> AsyncIterator[tuple[str, Any]]:
        """A Server-Sent Events stream as (event, parsed data) pairs, until the server ends it."""
        import json

        import httpx

        try:
            async with self.client.stream("GET", path, params={k: v for k, v in (params or {}).items()
                                                              if v is not None}, timeout=None) as r:
                if r.status_code >= 400:
                    await r.aread()
                    self._raise(r.status_code, r.json() if r.content else None, path)
                event, data = "message", []
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield event, json.loads("\n".join(data))
                        event, data = "message", []
        except httpx.HTTPError as exc:
            raise ConfigurationError(f"lost the stream from {self.url}: {exc}") from None
