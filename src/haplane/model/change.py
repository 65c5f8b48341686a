"""Change: the one vocabulary of the log, the activity view and the metrics; ReloadCause: why HAProxy reloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ChangeKind = Literal[
    "server-add", "server-remove", "server-update", "weight-ramp", "server-drain", "server-state",
    "map-update", "reload", "reload-failed", "reload-held", "check-failed", "quarantine", "hold", "release",
    "restart",
    "service-add", "service-update", "service-remove", "instance-add", "instance-update", "instance-remove",
    "source-sync", "certificate-add", "certificate-update", "certificate-remove",
]


@dataclass(frozen=True, slots=True)
class Change:
    """One thing haplane did or decided, and why.

    ``subject`` names what changed (``backend/server``, ``service:app1``, ``haproxy``); ``reason`` says why in
    words an operator can act on; ``detail`` carries structured extras (commands sent, a config diff,
    HAProxy's messages)."""

    kind: ChangeKind
    subject: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "reason": self.reason, "detail": self.detail}


CauseKind = Literal[
    "start", "restart", "backend-added", "backend-removed", "backend-changed", "backend-slots", "frontend-added",
    "frontend-removed", "frontend-changed", "globals", "structure", "pool-refill",
]


@dataclass(frozen=True, slots=True)
class ReloadCause:
    """One reason for a (re)load of HAProxy's config, as data: ``kind`` is a label of bounded cardinality
    (what metrics count reloads by), ``subject`` what it is about (``backend web``, ``frontend http``,
    ``haproxy``), ``words`` the phrase the log and the activity view show (``backend web slots 8 → 16``).

    A reload's reason, in words, is its causes' words joined by ``; ``; readers that need to tell causes apart
    read these fields (``Change.detail["causes"]``), never the words."""

    kind: CauseKind
    subject: str
    words: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "words": self.words}


def reason_of(causes: tuple[ReloadCause, ...]) -> str:
    """The words of ``causes`` as one reason (``backend a added; frontend http changed``)."""
    return "; ".join(c.words for c in causes) or "structure changed"
