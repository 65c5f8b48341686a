"""Change: the one vocabulary of the log, the activity view and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ChangeKind = Literal[
    "server-add", "server-remove", "server-update", "weight-ramp", "server-drain", "server-state",
    "map-update", "reload", "reload-failed", "check-failed", "quarantine", "release", "restart",
    "service-add", "service-update", "service-remove", "instance-add", "instance-remove", "source-sync",
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
