"""Who may do what: bearer tokens with roles, and signed session cookies for the web UI.

Roles are ordered ``read < write < admin``: reads need ``read``, changes need ``write``, raw config lines
(natives) need ``admin``. Tokens come from settings (``HAPLANE_TOKEN`` is one admin token; ``tokens`` maps
more tokens to roles). With no token configured at all, everything is open — ``haplane serve`` allows that
only on a loopback address, and says so in its log.

Sessions (the UI asks for a token once): ``POST /auth/login`` checks the token and sets ``haplane_session``,
a stateless cookie signed with HMAC-SHA256 carrying the role, an expiry, a fingerprint of the token and a
CSRF nonce. Any ``haplane serve`` with the same tokens (or ``session_secret``) accepts it, and removing a
token from the settings ends its sessions. A request authenticated by the cookie that changes something must
echo the nonce in ``X-CSRF-Token`` (the cookie is also ``SameSite=Strict``): a page on another site can
make the browser send the cookie, but cannot read the nonce. Bearer requests need no CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from haplane.errors import Forbidden, Unauthorized
from haplane.settings import ROLES, Settings

log = logging.getLogger("haplane.api.auth")

COOKIE = "haplane_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RANK = {role: i for i, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    role: str
    via: str  # "bearer" | "session" | "open"
    csrf: str | None = None


@dataclass(frozen=True)
class Session:
    role: str
    expires: float
    csrf: str
    token_fp: str


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _key(settings: Settings) -> bytes:
    if settings.session_secret:
        return hashlib.sha256(("haplane-session-secret|" + settings.session_secret).encode()).digest()
    material = "|".join(f"{t}:{r}" for t, r in sorted(settings.all_tokens().items()))
    return hashlib.sha256(("haplane-session|" + material).encode()).digest()


def _sign(settings: Settings, payload: bytes) -> str:
    return hmac.new(_key(settings), payload, hashlib.sha256).hexdigest()


def role_of_token(settings: Settings, token: str) -> str | None:
    for known, role in settings.all_tokens().items():
        if hmac.compare_digest(known.encode(), token.encode()):
            return role
    return None


def create_session(settings: Settings, token: str, now: float | None = None) -> tuple[str, Session]:
    """A signed cookie value for ``token``; raises ``Unauthorized`` for an unknown token."""
    role = role_of_token(settings, token)
    if role is None:
        raise Unauthorized("unknown token")
    sess = Session(role, (now or time.time()) + settings.session_ttl, secrets.token_urlsafe(18),
                   _fingerprint(token))
    payload = base64.urlsafe_b64encode(json.dumps(
        {"r": sess.role, "e": sess.expires, "c": sess.csrf, "t": sess.token_fp}, separators=(",", ":")
    ).encode()).decode()
    return f"{payload}.{_sign(settings, payload.encode())}", sess


def read_session(settings: Settings, cookie: str, now: float | None = None) -> Session | None:
    """The session a cookie carries, or None if it is forged, expired, or its token was removed."""
    payload, _, sig = cookie.rpartition(".")
    if not payload or not hmac.compare_digest(sig, _sign(settings, payload.encode())):
        return None
    try:
        d = json.loads(base64.urlsafe_b64decode(payload.encode()))
        sess = Session(str(d["r"]), float(d["e"]), str(d["c"]), str(d["t"]))
    except (ValueError, KeyError, TypeError):
        return None
    if sess.expires < (now or time.time()) or sess.role not in _RANK:
        return None
    tokens = settings.all_tokens()
    if not any(_fingerprint(t) == sess.token_fp and r == sess.role for t, r in tokens.items()):
        return None
    return sess


def session_from_request(request: Request, settings: Settings) -> Session | None:
    cookie = request.cookies.get(COOKIE)
    return read_session(settings, cookie) if cookie else None


def authenticate(request: Request, settings: Settings) -> Principal:
    """The caller, or ``Unauthorized``. Does not check the role."""
    if not settings.all_tokens():
        return Principal("admin", "open")
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer TOKEN'")
        role = role_of_token(settings, token.strip())
        if role is None:
            raise Unauthorized("unknown bearer token")
        return Principal(role, "bearer")
    sess = session_from_request(request, settings)
    if sess is None:
        raise Unauthorized("this needs a bearer token (Authorization: Bearer TOKEN) or a session "
                           "(POST /auth/login)")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), sess.csrf.encode()):
            raise Forbidden(f"a change made with a session cookie needs the {CSRF_HEADER} header "
                            "(the csrf value /auth/login returned)")
    return Principal(sess.role, "session", sess.csrf)


def require(settings: Settings, role: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller, if its role is at least ``role``. A coroutine on purpose: FastAPI runs
    a plain function dependency in a worker thread, a hop per request that cost more than the check itself."""
    needed = _RANK[role]

    async def dependency(request: Request) -> Principal:
        who = authenticate(request, settings)
        if _RANK[who.role] < needed:
            raise Forbidden(f"this needs the {role} role; the token given has {who.role}")
        request.state.principal = who
        return who

    return dependency
