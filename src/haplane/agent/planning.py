"""A plan as the operator reads it (the UI's dry run, ``haplane plan``)."""

from __future__ import annotations

from typing import Any

from haplane.haproxy.runtime import command_of
from haplane.model.ops import RuntimeOp
from haplane.plan import Plan


def command_text(op: RuntimeOp) -> str:
    """The Runtime API command an operation is sent as, or why it would not be sent."""
    try:
        return command_of(op)
    except ValueError as exc:
        return f"(not sent: {exc})"


def plan_document(p: Plan, revision: int, applied_revision: int | None = None,
                  reload_reason: str | None = None) -> dict[str, Any]:
    """A dry-run ``Plan`` as plain data: the runtime commands it would send (each with its Change) and whether,
    and why, it would reload."""
    reason = reload_reason if reload_reason is not None else (p.reload.reason if p.reload is not None else None)
    return {
        "revision": revision,
        "applied_revision": applied_revision,
        "commands": [{"command": command_text(op), **op.change.to_dict()} for op in p.ops],
        "reload": reason is not None,
        "reload_reason": reason,
        "waiting": list(p.waiting),
    }
