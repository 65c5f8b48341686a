"""Quarantine: the services, frontends and backends held back because ``haproxy -c`` rejected their lines.

When a config fails the check, the owners of the rejected lines (``Rendered.owners``: each line's owner comes
out of render, nothing parses the text back) are held back and the rest is composed, rendered and checked
again, so one bad record never blocks every other change. An owner is released (tried again) as soon as its
record changes. A fault in nothing that can be held back (the globals, the main frontend, a template) fails the
whole config: the last good one stays in force.

Who calls what: the agent's loop calls ``release_changed`` before each full compose, reads ``excluded`` to
compose without the held owners, and calls ``until_valid`` when a check fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from haplane.errors import ConfigCheckFailed
from haplane.model.change import Change
from haplane.model.observed import CheckResult
from haplane.render import Rendered

Fingerprint = Callable[[str], str]  # owner → a fingerprint of its record (Mirror.fingerprint)
Record = Callable[[Change, str], object]  # (change, result) into the activity log
NEVER_HELD = frozenset({"", "frontend:http"})  # the globals and the main frontend: holding them back holds all
MAX_ROUNDS = 5


class Quarantine:
    """The held owners, each with HAProxy's message and the fingerprint of its record when it was held."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, str]] = {}  # owner → (message, fingerprint)

    @property
    def excluded(self) -> frozenset[str]:
        return frozenset(self._held)

    def messages(self) -> dict[str, str]:
        """owner → HAProxy's message (the agent's status shows these)."""
        return {o: m for o, (m, _) in self._held.items()}

    def release_changed(self, fingerprint: Fingerprint) -> list[Change]:
        """Release every held owner whose record changed since; the releases, as Changes."""
        out = []
        for owner, (_msg, fp) in list(self._held.items()):
            if fingerprint(owner) != fp:
                del self._held[owner]
                out.append(Change("release", owner, "its record changed: trying it again"))
        return out

    def hold(self, owners: Iterable[str], messages: tuple[str, ...], fingerprint: Fingerprint) -> list[Change]:
        out = []
        for owner in owners:
            self._held[owner] = ("; ".join(messages), fingerprint(owner))
            out.append(Change("quarantine", owner, "haproxy -c rejected its lines: held back, the rest is applied",
                              {"messages": list(messages)}))
        return out

    async def until_valid(self, rendered: Rendered, verdict: CheckResult, *, fingerprint: Fingerprint,
                          recompose: Callable[[], Rendered], check: Callable[[Rendered], Awaitable[CheckResult]],
                          record: Record) -> Rendered:
        """Hold back the owners of the lines (and proxies) ``verdict`` rejects, recompose without them and check
        again, until the rest passes; the config that passed. Raises ``ConfigCheckFailed`` when the fault is in
        nothing that can be held back. ``record`` writes each Change (quarantine, check-failed) with its result."""
        messages, lines = verdict.messages, verdict.lines
        for _ in range(MAX_ROUNDS):
            owners = rendered.owners(verdict.lines, verdict.proxies) - NEVER_HELD
            if not owners:
                record(Change("check-failed", "haproxy", "haproxy -c rejected the config; the last good config "
                              "stays in force", {"messages": list(messages)}), "failed")
                raise ConfigCheckFailed(messages, lines)
            for change in self.hold(owners, messages, fingerprint):
                record(change, "quarantined")
            rendered = recompose()
            verdict = await check(rendered)
            if verdict.ok:
                return rendered
            messages, lines = verdict.messages, verdict.lines
        raise ConfigCheckFailed(messages, lines)


class RuntimeHolds:
    """Runtime holds: the items (an instance, a certificate, a service's map entry) whose Runtime API change
    HAProxy refused -- or that could not even be said as a command (``set server ... addr`` takes an IP address,
    not a name). Each is held with HAProxy's answer and left out of the desired config, so it is not retried on
    every pass (a refused command retried in a loop stalled every other change); it is tried again when its
    record changes (the fingerprint, as for the quarantine). A dead socket holds nothing: it raises, and the
    agent heals HAProxy.

    Owners are ``instance:<service>/<id>``, ``certificate:<name>`` and ``service:<name>``; ``kind`` of an owner
    is what the metrics count holds by."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, str, str]] = {}  # owner → (HAProxy's answer, command, fingerprint)

    @property
    def excluded(self) -> frozenset[str]:
        return frozenset(self._held)

    def messages(self) -> dict[str, str]:
        """owner → why it is held (HAProxy's answer to the command, and the command)."""
        return {o: f"{msg} (command: {cmd})" if cmd else msg for o, (msg, cmd, _) in self._held.items()}

    def release_changed(self, fingerprint: Fingerprint) -> list[Change]:
        out = []
        for owner, (_msg, _cmd, fp) in list(self._held.items()):
            if fingerprint(owner) != fp:
                del self._held[owner]
                out.append(Change("release", owner, "its record changed: trying it again"))
        return out

    def hold(self, owner: str, answer: str, command: str, fingerprint: Fingerprint) -> Change | None:
        """Hold ``owner``; the Change to record (None when it is held already)."""
        if owner in self._held:
            return None
        answer = " ".join(answer.split()) or "refused"
        self._held[owner] = (answer, command, fingerprint(owner))
        return Change("hold", owner, f"HAProxy refused its runtime change: held (not retried) until its record "
                                     f"changes; the rest is applied: {answer}",
                      {"answer": answer, "command": command})


def owner_kind(owner: str) -> str:
    """``instance`` of ``instance:app/i1``: the bounded label a hold is counted by."""
    return owner.partition(":")[0] or "other"
