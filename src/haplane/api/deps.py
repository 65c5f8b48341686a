"""What the API needs from the rest of haplane, passed in once (never read from module state)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from haplane.api.auth import LoginGuard
from haplane.model.observed import CheckResult
from haplane.registry import RegistryStore
from haplane.render import Rendered
from haplane.settings import Settings
from haplane.typing import AgentReader

Checker = Callable[[Rendered], Awaitable[CheckResult]]


@dataclass
class ApiDeps:
    """``registry`` is the store the API reads and writes; ``agent`` is an in-process agent's read-only view
    (``haplane up``), None for a stand-alone ``haplane serve``; ``checker`` runs ``haproxy -c`` on a rendered
    config with its map files (natives are accepted only when the whole config still passes it)."""

    registry: RegistryStore
    settings: Settings
    agent: AgentReader | None = None
    checker: Checker | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    guard: LoginGuard | None = None  # wrong tokens per client address (api/auth.py); made from the settings

    def __post_init__(self) -> None:
        if self.guard is None:
            self.guard = LoginGuard(free=self.settings.login_failures_allowed)

    async def check(self, rendered: Rendered) -> CheckResult:
        if self.checker is not None:
            return await self.checker(rendered)
        from haplane.haproxy.check import check_rendered

        return await check_rendered(rendered, haproxy_bin=self.settings.haproxy_bin)
