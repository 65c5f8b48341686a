"""Apply: run what a plan asks of HAProxy, and say what happened as Changes.

Two things a plan can ask for: runtime operations (``apply_ops``: sent over one connection, one ``Outcome``
per operation, carrying the operation's Change, whether HAProxy took it, the command text and HAProxy's answer),
and a reload to a config that passed ``haproxy -c`` (``apply_reload``: an ``Outcome`` for the reload, with the
diff against the running config, its causes and where the time went). Neither records anything or touches
the agent's memory: the loop does, with what these return.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from haplane.errors import HAProxyError
from haplane.model.change import Change, ReloadCause, reason_of
from haplane.model.ops import RuntimeOp
from haplane.render import Rendered
from haplane.typing import HAProxyControl

Result = Literal["ok", "failed", "quarantined"]
DIFF_LIMIT = 20_000  # characters of config diff kept in a reload's record


@dataclass(frozen=True, slots=True)
class Outcome:
    """One Change and how it went; ``extra`` goes into its activity record's detail."""

    change: Change
    result: Result = "ok"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == "ok"


async def apply_ops(control: HAProxyControl, ops: Sequence[RuntimeOp]) -> list[Outcome]:
    """Send ``ops``; one Outcome each, in order (``extra``: the command sent, the operation's verb, and HAProxy's
    answer when it refused)."""
    if not ops:
        return []
    out = []
    for res in await control.execute(ops):
        if res.ok:
            out.append(Outcome(res.op.change, "ok", {"command": res.command, "op": res.op.verb}))
        else:
            out.append(Outcome(res.op.change, "failed", {"command": res.command, "op": res.op.verb,
                                                        "answer": res.answer}))
    return out


def config_diff(running: str | None, new: str) -> str:
    """A unified diff of the running config and the new one (one line of context)."""
    return "".join(difflib.unified_diff((running or "").splitlines(True), new.splitlines(True), "running", "new",
                                        n=1))


async def apply_reload(control: HAProxyControl, rendered: Rendered, causes: tuple[ReloadCause, ...],
                       running: str | None, timings: Mapping[str, float], clock: Callable[[], float]
                       ) -> tuple[int | None, Outcome]:
    """Reload HAProxy to ``rendered`` (already checked). HAProxy's reload count (None when the reload failed:
    the last good config stays in force) and the Outcome to record. ``timings`` (ms) are the steps before; the
    reload's own is added (measured with ``clock``)."""
    diff = config_diff(running, rendered.text)[:DIFF_LIMIT]
    reason = reason_of(causes)
    structured = [c.to_dict() for c in causes]
    t0 = clock()
    try:
        count = await control.reload(rendered)
    except HAProxyError as exc:
        return None, Outcome(Change("reload-failed", "haproxy", f"{reason}: reload failed, the last good config "
                                    "stays in force", {"error": str(exc), "diff": diff, "causes": structured}),
                             "failed")
    timings = {**timings, "reload": round((clock() - t0) * 1000, 1)}
    return count, Outcome(Change("reload", "haproxy", reason, {"diff": diff, "check": "valid", "reloads": count,
                                                               "timings_ms": timings, "causes": structured}))
