"""The reload budget: at most N reloads in any minute, so a storm of structural changes (a deploy tool rewriting
every service, a flapping source) cannot keep HAProxy reloading. Runtime changes never pass through here: only
the reload waits, and the structural change it carries is applied as soon as the budget allows."""

from __future__ import annotations

from collections import deque

__all__ = ["ReloadBudget"]


class ReloadBudget:
    """At most ``per_minute`` reloads started in any ``window`` seconds (60); ``per_minute`` 0 sets no limit.
    Driven by the caller's clock (``now``), so it is tested without waiting."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._starts: deque[float] = deque()  # when the reloads in the window started, oldest first

    def next_at(self, now: float) -> float:
        """The earliest time a reload may start: ``now`` while the budget has room, else when the oldest reload
        in the window leaves it."""
        if self.per_minute <= 0:
            return now
        while self._starts and self._starts[0] <= now - self.window:
            self._starts.popleft()
        if len(self._starts) < self.per_minute:
            return now
        return self._starts[0] + self.window

    def spend(self, now: float) -> None:
        """A reload started at ``now``."""
        if self.per_minute > 0:
            self._starts.append(now)

    def used(self, now: float) -> int:
        """Reloads started in the window ending at ``now``."""
        self.next_at(now)
        return len(self._starts)
