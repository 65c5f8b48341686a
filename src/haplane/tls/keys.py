"""Where certificates and ACME state live in the store (under the registry's prefix, so every agent watching it
sees them). When ``haplane.store.keys`` holds the whole layout, these move there."""

from __future__ import annotations

PREFIX = "/haplane/"
CERTIFICATES = PREFIX + "certificates/"  # {name}: Certificate (public: chain, hosts, issuer, validity, source)
CERTIFICATE_KEYS = PREFIX + "certificate-keys/"  # {name}: CertificateKey (the private key, apart)
ACME_CHALLENGES = PREFIX + "acme/challenges/"  # {token}: Challenge (answered by every node's HAProxy)
ACME_ORDERS = PREFIX + "acme/orders/"  # {name}: OrderState (last result, back-off)
ACME_ACCOUNT = PREFIX + "acme/account"  # the ACME account key and URL, shared by whichever node orders
ACME_ELECTION = "acme"  # the haplane.election.Election name: its key is outside the watched prefix


def certificate_key(name: str) -> str:
    return CERTIFICATES + name


def private_key_key(name: str) -> str:
    return CERTIFICATE_KEYS + name


def challenge_key(token: str) -> str:
    return ACME_CHALLENGES + token


def order_key(name: str) -> str:
    return ACME_ORDERS + name
