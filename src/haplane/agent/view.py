"""What the API and UI may see of an agent running in the same process (read-only, plus its activity)."""

from __future__ import annotations

from typing import Any

from haplane.agent.activity import Activity
from haplane.agent.reconcile import Agent


class AgentView:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    @property
    def activity(self) -> Activity:
        return self.agent.activity

    def status(self) -> dict[str, Any]:
        return self.agent.status.to_dict()

    def applied_config(self) -> str | None:
        return self.agent.applied_text
