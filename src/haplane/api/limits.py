"""What the API reads of a request, and how: bounded before anything is parsed.

- ``BodyLimit`` (ASGI middleware): a body larger than ``max_body_bytes`` (``max_bulk_body_bytes`` on the bulk
  writes) is refused with 413 naming the limit and the setting: at once when ``Content-Length`` says so, and
  while it streams in when it is chunked (or lies), so no more than the limit is ever held.
- ``parse_json``: the one JSON reader of request bodies: UTF-8 only, no duplicate keys, no ``NaN`` or
  infinities, numbers of sane size, nesting at most ``MAX_DEPTH`` deep. Each refusal is a 400 naming the rule.

Headers are bounded by the HTTP server (``haplane.api.server``: ``max_header_bytes``, 431).
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haplane.errors import MISSING, BodyTooLarge, PayloadError, ValidationError, shown
from haplane.settings import Settings

MAX_DEPTH = 64  # arrays and objects inside each other; haplane's deepest document (an export) needs 8

# the writes that carry many items at once: they may send up to max_bulk_body_bytes
BULK_WRITES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("PUT", re.compile(r"/sources/[^/]+/instances")),
    ("POST", re.compile(r"/heartbeats")),
    ("POST", re.compile(r"/import")),
    ("POST", re.compile(r"/generate")),
)


def body_limit(settings: Settings, method: str, path: str) -> tuple[int, str]:
    """The most bytes a request's body may have, and the setting that says so."""
    for m, pattern in BULK_WRITES:
        if method == m and pattern.fullmatch(path):
            return settings.max_bulk_body_bytes, "max_bulk_body_bytes"
    return settings.max_body_bytes, "max_body_bytes"


class BodyLimit:
    """Refuses a body past its limit before the application reads it (see the module's note)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = body_limit(self.settings, scope["method"], scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                size = int(value) if value.isdigit() and len(value) < 20 else None
                if size is None:
                    await _refuse(send, 400, PayloadError("Content-Length", shown(value.decode("latin-1")),
                                                          "must be a number of bytes"))
                    return
                if size > limit:
                    await _refuse(send, 413, BodyTooLarge("body", size, limit, setting))
                    return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # raised inside the route reading the body: the error handlers answer 413
                    raise BodyTooLarge("body", None, limit, setting)
            return message

        await self.app(scope, bounded, send)


async def _refuse(send: Send, status: int, exc: ValidationError) -> None:
    body = json.dumps(exc.to_dict()).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or ``PayloadError`` naming the rule it broke (see the module's note)."""
    if not raw.strip():
        raise PayloadError("body", MISSING, "is empty; this request needs a JSON document")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("body", MISSING, f"is not UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})"
                           ) from None
    try:
        data = json.loads(text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float)
    except RecursionError:
        raise PayloadError("body", MISSING, f"is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise PayloadError("body", MISSING, f"is not valid JSON: {exc}") from None
    except ValueError:  # an integer of more digits than Python converts
        raise PayloadError("body", MISSING, f"holds an integer of more than {sys.get_int_max_str_digits()} "
                                            "digits") from None
    _check_depth(data, strings=_SURROGATE_ESCAPE.search(raw) is not None)
    return data


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise PayloadError(key, MISSING, "appears twice in one JSON object; send each key once")
            seen.add(key)
    return d


def _constant(name: str) -> Any:
    raise PayloadError("body", MISSING, f"holds {name}, which is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PayloadError("body", MISSING, f"holds the number {shown(text)}, too large for a float")
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_depth(data: Any, strings: bool) -> None:
    """Nesting at most ``MAX_DEPTH``: walked without recursion, containers only; with ``strings`` (the body
    escapes a UTF-16 surrogate), every string too: half a surrogate pair is no character."""
    if strings:
        _check_strings((data,))
    level: list[Any] = [data] if isinstance(data, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise PayloadError("body", MISSING, f"is nested deeper than {MAX_DEPTH} levels")
        nxt: list[Any] = []
        for item in level:
            values = item.values() if isinstance(item, dict) else item
            if strings:
                _check_strings(item.keys() if isinstance(item, dict) else ())
                _check_strings(values)
            nxt.extend(v for v in values if isinstance(v, dict | list))
        level = nxt


def _check_strings(items: Any) -> None:
    for s in items:
        if isinstance(s, str):
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise PayloadError("body", MISSING, f"holds {shown(s)}, half a UTF-16 surrogate pair (no "
                                                    "character)") from None
