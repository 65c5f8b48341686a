"""The ACME client (RFC 8555, HTTP-01) on certbot's ``acme`` library. ADAPTER: blocking network calls; the caller
runs each step in a thread (``asyncio.to_thread``).

An order has three steps, so the caller can publish the challenges in between (through the store, so every
HAProxy node answers them from its challenge map)::

    client = AcmeClient(directory_url, account_key)          # registers (or finds) the account
    pending = client.begin(["web.example.com"], cert_key)     # new order; the HTTP-01 challenges to publish
    ... publish pending.challenges, wait until HAProxy serves them ...
    client.answer(pending)                                    # tell the CA to validate
    fullchain_pem = client.finish(pending, timeout=90)        # poll, finalize, download

Every failure of the library, the network or the CA comes out as ``haplane.errors.AcmeError`` with the CA's
own words (its problem document's detail), never a traceback.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import josepy as jose
import requests
from acme import challenges, client, messages
from acme import errors as acme_errors
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import ES256, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from haplane import __version__
from haplane.errors import AcmeError, ConfigurationError
from haplane.tls.certs import PrivateKey, make_csr
from haplane.tls.records import Challenge

__all__ = ["AcmeClient", "PendingOrder"]


@dataclass
class PendingOrder:
    hosts: tuple[str, ...]
    order: messages.OrderResource
    challenges: list[Challenge]
    bodies: list[messages.ChallengeBody]


def _jwk(key: PrivateKey) -> tuple[JWK, JWASignature]:
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key), RS256
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return JWKEC(key=key), ES256
    raise ConfigurationError("an ACME account key must be RSA or ECDSA P-256")


def _words(exc: BaseException) -> str:
    """The CA's own words for a failure."""
    if isinstance(exc, messages.Error):
        return f"{exc.typ.rsplit(':', 1)[-1] if exc.typ else 'error'}: {exc.detail or exc.title or ''}".strip()
    if isinstance(exc, acme_errors.ValidationError):
        problems = []
        for authzr in exc.failed_authzrs:
            for ch in authzr.body.challenges:
                if ch.error is not None:
                    problems.append(f"{authzr.body.identifier.value}: {_words(ch.error)}")
        return "validation failed: " + ("; ".join(problems) or "no detail")
    if isinstance(exc, requests.RequestException):
        return f"cannot reach the ACME directory: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _translate(exc: BaseException) -> AcmeError:
    return AcmeError(_words(exc))


class AcmeClient:
    """One ACME account on one directory. ``verify``: True (the system's CAs), or the path of a CA bundle (a
    private ACME server, pebble in tests)."""

    def __init__(self, directory_url: str, account_key: PrivateKey, *, email: str | None = None,
                 verify: bool | str = True, timeout: float = 30.0) -> None:
        self.directory_url = directory_url
        self.jwk, alg = _jwk(account_key)
        # requests takes a path for ``verify``; the library passes it through untouched
        self.net = client.ClientNetwork(self.jwk, alg=alg, verify_ssl=cast(bool, verify),
                                        user_agent=f"haplane/{__version__}", timeout=int(timeout))
        try:
            directory = client.ClientV2.get_directory(directory_url, self.net)
            self.client = client.ClientV2(directory, self.net)
            registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
            try:
                self.account = self.client.new_account(registration)
            except acme_errors.ConflictError as exc:  # the key has an account already: use it
                self.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
                self.net.account = self.account
        except (messages.Error, acme_errors.Error, requests.RequestException, jose.errors.Error) as exc:
            raise _translate(exc) from None

    @property
    def account_uri(self) -> str:
        return str(self.account.uri)

    def begin(self, hosts: Sequence[str], cert_key: PrivateKey, challenge_ttl: float = 600.0) -> PendingOrder:
        """A new order for ``hosts``; the HTTP-01 challenges still to answer (none when every authorization is
        valid already)."""
        try:
            order = self.client.new_order(make_csr(cert_key, hosts))
            found: list[Challenge] = []
            bodies: list[messages.ChallengeBody] = []
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue
                body = next((c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
                if body is None:
                    raise AcmeError(f"{authzr.body.identifier.value}: the CA offers no http-01 challenge")
                _response, validation = body.response_and_validation(self.jwk)
                token = body.chall.encode("token")
                found.append(Challenge(token, validation, authzr.body.identifier.value,
                                       time.time() + challenge_ttl))
                bodies.append(body)
            return PendingOrder(tuple(hosts), order, found, bodies)
        except AcmeError:
            raise
        except (messages.Error, acme_errors.Error, requests.RequestException, jose.errors.Error) as exc:
            raise _translate(exc) from None

    def answer(self, pending: PendingOrder) -> None:
        """Tell the CA the challenges are ready to be checked."""
        try:
            for body in pending.bodies:
                self.client.answer_challenge(body, body.response(self.jwk))
        except (messages.Error, acme_errors.Error, requests.RequestException, jose.errors.Error) as exc:
            raise _translate(exc) from None

    def finish(self, pending: PendingOrder, timeout: float = 90.0) -> str:
        """Wait for the validations, finalize the order, and return the issued chain (PEM, leaf first)."""
        deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
        try:
            done = self.client.poll_and_finalize(pending.order, deadline)
        except (messages.Error, acme_errors.Error, requests.RequestException, jose.errors.Error) as exc:
            raise _translate(exc) from None
        chain: Any = done.fullchain_pem
        if not isinstance(chain, str) or "BEGIN CERTIFICATE" not in chain:
            raise AcmeError("the CA finalized the order but returned no certificate chain")
        return chain
