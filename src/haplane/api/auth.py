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
Logging out revokes the session in the store (``/haplane-revoked/{id}``, with a lease that ends when the session
would have): every ``haplane serve`` on that store refuses the cookie from then on.

Guessing is slowed (``LoginGuard``): a wrong token (at ``/auth/login``, ``/ui/login`` or as a bearer) is
logged at WARNING with the client's address and counted (``haplane_login_failures_total``); after
``login_failures_allowed`` (5) of them, the address must wait (429 with ``Retry-After``: 1 s, doubling with
every further failure, at most 5 minutes) before any token of it is looked at again. The table of addresses is
bounded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request

from haplane.errors import Forbidden, HaplaneError, TooManyAttempts, Unauthorized
from haplane.settings import ROLES, Settings
from haplane.store import keys
from haplane.store.base import Put, Store

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
    session: Session | None = None


@dataclass(frozen=True)
class Session:
    role: str
    expires: float
    csrf: str
    token_fp: str

    @property
    def id(self) -> str:
        """What names the session in the store (its revocation): a hash of its nonce, not the nonce."""
        return hashlib.sha256(("haplane-session-id|" + self.csrf).encode()).hexdigest()[:32]


@dataclass
class LoginGuard:
    """Wrong tokens per client address, and how long each must wait (see the module's note). ``size`` bounds
    the table: past it, the address whose last failure is oldest is forgotten."""

    free: int = 5  # wrong tokens an address may send before it must wait (setting login_failures_allowed)
    first_wait: float = 1.0  # seconds; doubles with every further wrong token
    max_wait: float = 300.0
    forget_after: float = 900.0  # an address with no wrong token this long starts afresh
    size: int = 10_000
    failures: int = 0  # wrong tokens seen (haplane_login_failures_total)
    refused: int = 0  # attempts answered 429 (haplane_login_throttled_total)
    _table: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)

    def wait(self, address: str, now: float | None = None) -> float:
        """Seconds ``address`` must still wait before a token of it is looked at (0: none)."""
        entry = self._table.get(address)
        if entry is None:
            return 0.0
        count, last = entry
        now = time.monotonic() if now is None else now
        if now - last > self.forget_after:
            del self._table[address]
            return 0.0
        if count < self.free:
            return 0.0
        wait: float = min(self.first_wait * 2.0 ** (count - self.free), self.max_wait)
        return max(0.0, last + wait - now)

    def check(self, address: str) -> None:
        """Raises ``TooManyAttempts`` while ``address`` must wait."""
        left = self.wait(address)
        if left > 0:
            self.refused += 1
            raise TooManyAttempts(left)

    def failed(self, address: str, where: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        count = self._table.pop(address, (0, now))[0] + 1
        self._table[address] = (count, now)
        while len(self._table) > self.size:
            self._table.popitem(last=False)
        self.failures += 1
        left = self.wait(address, now)
        log.warning("a wrong token from %s (%s): %d in a row%s", address, where, count,
                    f"; it must wait {left:.0f} s" if left > 0 else "")

    def __len__(self) -> int:
        return len(self._table)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def guard_of(request: Request) -> LoginGuard:
    """The app's guard (``ApiDeps.guard``)."""
    guard: LoginGuard | None = request.app.state.deps.guard
    assert guard is not None  # ApiDeps makes one
    return guard


async def revoke(store: Store, sess: Session, now: float | None = None) -> None:
    """End ``sess`` for every server on ``store``: a key that lives (a lease) as long as the session would."""
    left = sess.expires - (time.time() if now is None else now)
    if left <= 0:
        return
    lease = await store.grant_lease(left + 60)
    await store.txn((), (Put(keys.revoked_key(sess.id), json.dumps({"expires": sess.expires}), lease),))


async def is_revoked(store: Store, sess: Session) -> bool:
    try:
        return await store.get(keys.revoked_key(sess.id)) is not None
    except HaplaneError:
        return True  # the store cannot say: a session is not honoured blind (a bearer token still works)


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


def start_session(request: Request, settings: Settings, token: str) -> tuple[str, Session]:
    """``create_session`` behind the guard: ``TooManyAttempts`` while the caller's address must wait; a wrong
    token is counted against it. (A right one resets nothing: a holder of a read token could otherwise guess
    the admin token between two logins.)"""
    guard, address = guard_of(request), client_address(request)
    guard.check(address)
    try:
        return create_session(settings, token)
    except Unauthorized:
        guard.failed(address, f"{request.method} {request.url.path}")
        raise


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


async def authenticate(request: Request, settings: Settings) -> Principal:
    """The caller, or ``Unauthorized`` (``TooManyAttempts`` while its address must wait). Does not check the
    role."""
    if not settings.all_tokens():
        return Principal("admin", "open")
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer TOKEN'")
        guard, address = guard_of(request), client_address(request)
        guard.check(address)
        role = role_of_token(settings, token.strip())
        if role is None:
            guard.failed(address, f"bearer, {request.method} {request.url.path}")
            raise Unauthorized("unknown bearer token")
        return Principal(role, "bearer")
    sess = session_from_request(request, settings)
    if sess is None or await is_revoked(request.app.state.deps.registry.store, sess):
        raise Unauthorized("this needs a bearer token (Authorization: Bearer TOKEN) or a session "
                           "(POST /auth/login)")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), sess.csrf.encode()):
            raise Forbidden(f"a change made with a session cookie needs the {CSRF_HEADER} header "
                            "(the csrf value /auth/login returned)")
    return Principal(sess.role, "session", sess.csrf, sess)


def require(settings: Settings, role: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller, if its role is at least ``role``. A coroutine on purpose: FastAPI runs
    a plain function dependency in a worker thread, a hop per request that cost more than the check itself."""
    needed = _RANK[role]

    async def dependency(request: Request) -> Principal:
        who = await authenticate(request, settings)
        if _RANK[who.role] < needed:
            raise Forbidden(f"this needs the {role} role; the token given has {who.role}")
        request.state.principal = who
        return who

    return dependency
