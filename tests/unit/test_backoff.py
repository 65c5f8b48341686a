"""The one back-off formula gives every retry loop the waits its hand-written formula gave (same base, cap and
attempt count), so moving them onto it changed no delay."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

import pytest

from haplane.backoff import backoff_delay


def test_doubles_from_base_up_to_cap() -> None:
    assert [backoff_delay(a, 0.2, 5.0) for a in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff_delay(10_000, 0.2, 5.0) == 5.0  # no overflow for a long outage
    assert backoff_delay(-1, 0.2, 5.0) == 0.2


@pytest.mark.parametrize(("name", "old", "base", "cap"), [
    ("docker watcher", lambda a, cap: min(cap, 0.1 * 2 ** min(a, 10)), 0.1, 10.0),
    ("consul watcher", lambda a, cap: min(cap, 0.2 * 2 ** min(a, 16)), 0.2, 30.0),
    ("consul follower (attempt = failures - 1)", lambda a, cap: min(cap, 0.2 * 2 ** min(a, 16)), 0.2, 30.0),
    ("aws poller", lambda a, cap: min(cap, 10.0 * 2 ** min(a, 16)), 10.0, 300.0),
    ("dynamodb txn/sweep", lambda a, cap: min(cap, 0.005 * 2 ** min(a, 7)), 0.005, 0.5),
    ("acme order retry (attempt = failures - 1)", lambda a, cap: min(cap, 300.0 * 2 ** a), 300.0, 86400.0),
    ("agent: store load and watch (delay = min(delay * 2, 5.0) from 0.2)",
     lambda a, cap: reduce(lambda d, _: min(d * 2, cap), range(a), 0.2), 0.2, 5.0),
])
def test_same_waits_as_the_formulas_it_replaced(name: str, old: Callable[[int, float], float], base: float,
                                                cap: float) -> None:
    for attempt in range(60):
        assert backoff_delay(attempt, base, cap) == old(attempt, cap), (name, attempt)
