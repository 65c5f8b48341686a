"""Capped exponential back-off: the one formula every retry loop of haplane uses.

Who calls it: each loop that retries something flaky (a source losing its upstream or its sink, a store
transaction losing a race, the agent losing its store) asks ``backoff_delay`` how long to wait, with its own
count of attempts, base and cap. It only computes; the loop sleeps, so a loop can shorten the wait (a
deadline) or record it. Imports nothing of haplane's, so every layer may use it.
"""

from __future__ import annotations

_MAX_EXPONENT = 32  # 2**32 times any base here is past any cap; bounds the arithmetic, not the delay


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """``base * 2**attempt`` seconds, at most ``cap``: ``attempt`` 0 waits ``base``, 1 twice that, and so on.
    Each caller counts its attempts the way its loop reads best (some from 1, so the first wait is 2·base)."""
    return min(cap, base * (1 << min(max(attempt, 0), _MAX_EXPONENT)))
