"""Small helpers shared by the route modules: bodies, revisions (ETag / If-Match), logging who changed what."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request, Response

from haplane.api.limits import parse_json
from haplane.errors import PayloadError, ValidationError

log = logging.getLogger("haplane.api")


async def json_body(request: Request) -> Any:
    """The body as JSON (``haplane.api.limits.parse_json``: bounded, strict, every refusal a 400)."""
    return parse_json(await request.body())


def object_body(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PayloadError("body", data, "must be a JSON object")
    return data


def if_match(request: Request) -> int | None:
    """The revision in ``If-Match`` ("12", 12 or W/"12"), or None when absent or ``*``."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ValidationError("If-Match", raw, 'must be a revision as sent in ETag (for example "12")')
    return int(value)


def set_etag(response: Response, revision: int) -> None:
    response.headers["ETag"] = f'"{revision}"'


def reject_fields(d: dict[str, Any], names: tuple[str, ...], why: str) -> None:
    for name in names:
        if name in d:
            raise ValidationError(name, d[name], why)


def same_name(d: dict[str, Any], key: str, expected: str) -> None:
    if key in d and d[key] != expected:
        raise ValidationError(key, d[key], f"differs from the name in the URL ({expected!r})")


def changed(request: Request, what: str) -> None:
    who = getattr(request.state, "principal", None)
    log.info("%s (by %s %s)", what, who.role if who else "?", who.via if who else "")


def body_doc(schema: dict[str, Any], example: dict[str, Any] | None = None) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body the route reads itself (so the model's validators, not
    pydantic's, word the errors)."""
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": True, "content": {"application/json": content}}}
