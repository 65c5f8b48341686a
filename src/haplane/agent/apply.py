"""Apply: run what a plan asks of HAProxy, and say what happened as Changes.

Two things a plan can ask for: runtime operations (``apply_ops``: sent over one connection, one ``Outcome``
per operation, carrying the operation's Change, whether HAProxy took it, the command text and HAProxy's answer),
and a reload to a config that passed ``haproxy -c`` (``apply_reload``: an ``Outcome`` for the reload, with the
diff against the running config, its causes and where the time went). Neither records anything or touches
the agent's memory: the loop does, with what these return.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from haplane.errors import HAProxyError
from haplane.model.change import Change, ReloadCause, reason_of
from haplane.model.haproxy import Config
from haplane.model.observed import Observed, OpResult
from haplane.model.ops import CertPut, RuntimeOp, SetAddress, SetState, SetWeight
from haplane.render import Rendered
from haplane.typing import HAProxyControl

Result = Literal["ok", "failed", "quarantined", "held"]
DIFF_LIMIT = 20_000  # characters of config diff kept in a reload's record


@dataclass(frozen=True, slots=True)
class Outcome:
    """One Change and how it went; ``extra`` goes into its activity record's detail."""

    change: Change
    result: Result = "ok"
    extra: Mapping[str, Any] = field(default_factory=dict)
    op: RuntimeOp | None = None  # the runtime operation, for one

    @property
    def ok(self) -> bool:
        return self.result == "ok"


async def apply_ops(control: HAProxyControl, ops: Sequence[RuntimeOp]) -> list[Outcome]:
    """Send ``ops``; one Outcome each, in order (``extra``: the command sent, the operation's verb, and HAProxy's
    answer when it refused)."""
    if not ops:
        return []
    return [_outcome(res) for res in await control.execute(ops)]


async def apply_ops_and_read(control: HAProxyControl, ops: Sequence[RuntimeOp], backends: Iterable[str]
                             ) -> tuple[list[Outcome], Observed]:
    """``apply_ops``, with the slots of ``backends`` read right after the operations, in the same round trip
    (``HAProxyControl.execute_and_read``): the Outcomes, and what HAProxy then has in those backends."""
    results, after = await control.execute_and_read(ops, backends)
    return [_outcome(res) for res in results], after


def _outcome(res: OpResult) -> Outcome:
    if res.ok:
        return Outcome(res.op.change, "ok", {"command": res.command, "op": res.op.verb}, res.op)
    return Outcome(res.op.change, "failed", {"command": res.command, "op": res.op.verb, "answer": res.answer},
                   res.op)


def held_owner(op: RuntimeOp, desired: Config | None, service_of: Callable[[str], str | None]) -> str | None:
    """The registry item a refused operation is about, to hold (``RuntimeHolds``): the instance in the server
    slot (``instance:<service>/<id>``), the certificate; None when it is about no one record (a slot being
    freed, a map entry): the agent then re-reads HAProxy and plans again. ``service_of`` names the service of a
    Thalassa backend (``backend:<name>`` owner) whose slots hold that service's instances."""
    match op:
        case SetAddress() | SetWeight() | SetState():
            be = desired.backend(op.backend) if desired is not None else None
            srv = next((s for s in be.servers if s.name == op.server), None) if be is not None else None
            if be is None or srv is None or srv.instance is None:
                return None
            kind, _, name = be.owner.partition(":")
            service = name if kind == "service" else service_of(name) if kind == "backend" else None
            return f"instance:{service}/{srv.instance}" if service else None
        case CertPut():  # (a CertDel is of a certificate the registry no longer has: nothing to hold)
            return f"certificate:{op.name}"
    return None


def config_diff(running: str | None, new: str, limit: int = DIFF_LIMIT) -> str:
    """A unified diff of the running config and the new one (one line of context), at most about ``limit``
    characters, in time linear in the configs: they are compared section by section (``global``, ``frontend
    X``, ``backend Y``...), and difflib runs only inside the sections that differ. (difflib over the whole text
    took 80 s at 3,000 services -- thousands of identical slot lines make its matching quadratic -- and held
    the agent's loop meanwhile.)"""
    old_sections = _sections(running or "")
    new_sections = _sections(new)
    out = ["--- running\n", "+++ new\n"]
    size = 0

    def add(lines: list[str]) -> bool:
        nonlocal size
        for line in lines:
            out.append(line)
            size += len(line)
            if size > limit:
                out.append("\n... (diff cut)\n")
                return False
        return True

    for header, lines in new_sections.items():
        before = old_sections.get(header)
        if before == lines:
            continue
        if before is None:
            chunk = [f"@@ {header.strip() or 'header'} added @@\n"] + ["+" + ln for ln in lines]
        else:
            chunk = list(difflib.unified_diff(before, lines, n=1))[2:]  # without its ---/+++ lines
        if not add(chunk):
            return "".join(out)
    for header, lines in old_sections.items():
        if header not in new_sections and not add([f"@@ {header.strip() or 'header'} removed @@\n"]
                                                  + ["-" + ln for ln in lines]):
            return "".join(out)
    return "".join(out) if len(out) > 2 else ""


def _sections(text: str) -> dict[str, list[str]]:
    """The config's lines by section: a section starts at each line that is not indented (its header)."""
    sections: dict[str, list[str]] = {}
    current: list[str] = sections.setdefault("", [])
    for line in text.splitlines(True):
        if line[:1] not in (" ", "\t", "\n", "#", "") and line.strip():
            current = sections.setdefault(line.rstrip("\n"), [])
        current.append(line)
    return sections


async def apply_reload(control: HAProxyControl, rendered: Rendered, causes: tuple[ReloadCause, ...],
                       running: str | None, timings: Mapping[str, float], clock: Callable[[], float]
                       ) -> tuple[int | None, Outcome]:
    """Reload HAProxy to ``rendered`` (already checked). HAProxy's reload count (None when the reload failed:
    the last good config stays in force) and the Outcome to record. ``timings`` (ms) are the steps before; the
    reload's own is added (measured with ``clock``)."""
    diff = config_diff(running, rendered.text)
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
