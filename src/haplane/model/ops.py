"""The plan's operations: what the planner asks of a running HAProxy, as typed values. PURE: no I/O.

One class per Runtime API change haplane makes. Each carries the ``Change`` it makes (what the log, the
activity view and the metrics show), and a ``verb`` (the command without its arguments, a label of bounded
cardinality for metrics). Nothing here knows the Runtime API's syntax: only the runtime adapter
(``haplane.haproxy.runtime.command_of``) turns an operation into command text, through its validated
builders, and the fake (``haplane.testing.FakeHAProxy``) applies the same values to its model.

    plan ──RuntimeOp──▶ HAProxyControl.execute ──command_of──▶ admin socket
                                  └──────────────▶ FakeHAProxy (tests)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from haplane.model.change import Change

__all__ = ["CertDel", "CertPut", "MapAdd", "MapDel", "MapSet", "RuntimeOp", "ServerAdminState", "SetAddress",
           "SetState", "SetWeight"]

ServerAdminState = Literal["ready", "drain", "maint"]


@dataclass(frozen=True, slots=True)
class SetAddress:
    """Point ``backend/server`` at ``address:port`` (``set server ... addr ... port ...``)."""

    backend: str
    server: str
    address: str
    port: int
    change: Change
    verb: ClassVar[str] = "set server addr"

    @property
    def target(self) -> str:
        return f"{self.backend}/{self.server}"


@dataclass(frozen=True, slots=True)
class SetWeight:
    """Give ``backend/server`` the weight ``weight`` (0..256) (``set server ... weight ...``)."""

    backend: str
    server: str
    weight: int
    change: Change
    verb: ClassVar[str] = "set server weight"

    @property
    def target(self) -> str:
        return f"{self.backend}/{self.server}"


@dataclass(frozen=True, slots=True)
class SetState:
    """Put ``backend/server`` in admin state ready, drain (no new sessions) or maint (no traffic, no checks)
    (``set server ... state ...``)."""

    backend: str
    server: str
    state: ServerAdminState
    change: Change
    verb: ClassVar[str] = "set server state"

    @property
    def target(self) -> str:
        return f"{self.backend}/{self.server}"


@dataclass(frozen=True, slots=True)
class MapAdd:
    """Add ``key → value`` to the map HAProxy loaded from ``path`` (``add map``)."""

    path: str
    key: str
    value: str
    change: Change
    verb: ClassVar[str] = "add map"

    @property
    def target(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True)
class MapSet:
    """Change the value of ``key`` in the map loaded from ``path`` (``set map``)."""

    path: str
    key: str
    value: str
    change: Change
    verb: ClassVar[str] = "set map"

    @property
    def target(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True)
class MapDel:
    """Remove ``key`` from the map loaded from ``path`` (``del map``)."""

    path: str
    key: str
    change: Change
    verb: ClassVar[str] = "del map"

    @property
    def target(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True)
class CertPut:
    """Serve ``pem`` (chain then key) at ``path`` through the crt-list ``crt_list``: a new certificate (``new ssl
    cert``, ``set ssl cert`` with the payload, ``commit ssl cert``, ``add ssl crt-list``) or a replacement
    (``set`` + ``commit``). A sequence, not one command: the adapter aborts it on any refusal
    (``haplane.tls.runtime.install_cert``)."""

    name: str
    path: str
    crt_list: str
    pem: str
    change: Change
    verb: ClassVar[str] = "set ssl cert"

    @property
    def target(self) -> str:
        return self.path

    def __repr__(self) -> str:  # the payload holds a private key: never in a repr
        return f"CertPut({self.name!r}, {self.path!r})"


@dataclass(frozen=True, slots=True)
class CertDel:
    """Stop serving the certificate at ``path``: ``del ssl crt-list`` then ``del ssl cert``; its hosts fall back
    to the default certificate."""

    name: str
    path: str
    crt_list: str
    change: Change
    verb: ClassVar[str] = "del ssl cert"

    @property
    def target(self) -> str:
        return self.path


RuntimeOp = SetAddress | SetWeight | SetState | MapAdd | MapSet | MapDel | CertPut | CertDel
"""Every operation the planner emits (a closed union: ``match`` on it is exhaustive under mypy)."""
