"""The one place where haplane's exceptions become HTTP answers.

Every error body is ``{"error": <kind>, "field": <dotted path or null>, "detail": <sentence>}``; a refused batch
adds ``"errors": [{"field", "detail"}, ...]`` (every bad item), a 413 adds ``"limit"`` and ``"setting"``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from haplane.errors import (
    BadRequest,
    BodyTooLarge,
    Compacted,
    ConfigCheckFailed,
    Conflict,
    Forbidden,
    HaplaneError,
    HAProxyUnavailable,
    Invalid,
    NotFound,
    PayloadError,
    PreconditionFailed,
    StoreUnavailable,
    TooLarge,
    TooManyAttempts,
    Unauthorized,
    ValidationError,
    shorten,
)

log = logging.getLogger("haplane.api")

# most specific first: the first class an exception is an instance of decides its status
STATUS: tuple[tuple[type[HaplaneError], int], ...] = (
    (TooLarge, 413),
    (Invalid, 422),
    (PayloadError, 400),
    (BadRequest, 400),
    (ValidationError, 422),
    (Unauthorized, 401),
    (TooManyAttempts, 429),
    (Forbidden, 403),
    (NotFound, 404),
    (PreconditionFailed, 412),
    (Conflict, 409),
    (ConfigCheckFailed, 422),
    (StoreUnavailable, 503),
    (Compacted, 503),
    (HAProxyUnavailable, 503),
)


def status_of(exc: HaplaneError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


DETAIL_MAX = 4000  # characters of a detail; values inside it are already shortened (haplane.errors.shown)


def error_response(status: int, error: str, field: str | None, detail: str,
                   headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> JSONResponse:
    """The one error shape: {"error", "field", "detail"}, plus what an error adds (an import's every bad row).
    Field names and details are bounded here: nothing the caller sent comes back longer than it has to."""
    extra = dict(extra or {})
    if isinstance(extra.get("errors"), list):
        extra["errors"] = [{**e, "field": shorten(e["field"]) if isinstance(e.get("field"), str) else e.get("field"),
                            "detail": shorten(str(e.get("detail")), DETAIL_MAX)} for e in extra["errors"]]
    return JSONResponse({"error": error, "field": shorten(field) if field is not None else None,
                         "detail": shorten(detail, DETAIL_MAX), **extra}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(HaplaneError)
    async def haplane_error(request: Request, exc: HaplaneError) -> JSONResponse:
        status = status_of(exc)
        body: dict[str, Any] = exc.to_dict()
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, TooManyAttempts):
            headers = {"Retry-After": str(math.ceil(exc.retry_after))}
        if isinstance(exc, BodyTooLarge):  # the rest of the body is not read: the connection cannot go on
            headers = {"Connection": "close"}
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        extra = {k: v for k, v in body.items() if k not in ("error", "field", "detail")}
        return error_response(status, body["error"], body.get("field"), body["detail"], headers, extra)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = ".".join(loc) or None
        if first.get("type") == "json_invalid":
            return error_response(400, "PayloadError", "body", f"body is not valid JSON: {first.get('msg')}")
        return error_response(422, "ValidationError", field, f"{field or 'request'}: {first.get('msg')}")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        """A bug (no input may get here: bad input is a 4xx): answered in the error shape, logged with its
        traceback by the server."""
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(500, "InternalError", None, f"an internal error ({type(exc).__name__}); the "
                                                          "server's log has the details")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, kind, None, str(exc.detail))
