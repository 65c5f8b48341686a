"""What shapes an agent (``AgentOptions``) and how it is doing (``AgentStatus``): plain values the agent's rooms
share and its readers see (``AgentView.status()``, node reports, metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from haplane.compose import ComposeOptions
from haplane.plan import Policy


@dataclass(frozen=True)
class AgentOptions:
    compose: ComposeOptions = field(default_factory=ComposeOptions)
    policy: Policy = field(default_factory=Policy)
    reload_interval: float = 1.0  # at most one reload per this many seconds (bursts coalesce)
    reload_budget: int = 30  # at most this many reloads in any minute (0: no limit); runtime changes never wait
    coalesce: float = 0.002  # after a store event, wait this long for more before acting
    resync_interval: float = 30.0  # re-read the store and HAProxy from scratch this often

    def compose_options(self, excluded: frozenset[str] = frozenset()) -> ComposeOptions:
        """The compose options with ``excluded`` owners held back (quarantined)."""
        return replace(self.compose, excluded=excluded)


@dataclass
class AgentStatus:
    revision: int = 0  # store revision applied
    config_hash: str = ""
    store_ok: bool = True
    store_error: str | None = None  # why the store cannot be read, while it cannot
    haproxy_ok: bool = True
    last_error: str | None = None
    last_reload: float | None = None
    reloads: int = 0
    quarantined: dict[str, str] = field(default_factory=dict)  # owner → HAProxy's message
    held: dict[str, str] = field(default_factory=dict)  # owner → HAProxy's answer to its runtime change
    waiting: tuple[str, ...] = ()  # slots whose new instance waits for a drain to finish
    bad_records: dict[str, str] = field(default_factory=dict)  # store key → why it could not be read

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "config_hash": self.config_hash, "store_ok": self.store_ok,
                "store_error": self.store_error,
                "haproxy_ok": self.haproxy_ok, "last_error": self.last_error, "last_reload": self.last_reload,
                "reloads": self.reloads, "quarantined": dict(self.quarantined), "held": dict(self.held),
                "waiting": list(self.waiting), "bad_records": dict(self.bad_records)}
