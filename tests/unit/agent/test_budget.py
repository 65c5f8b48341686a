"""The reload budget on a clock the test sets: at most N reloads started in any minute."""

from __future__ import annotations

from haplane.agent.budget import ReloadBudget


def test_room_until_n_reloads_then_the_oldest_leaving_the_window() -> None:
    b = ReloadBudget(3)
    for t in (0.0, 10.0, 20.0):
        assert b.next_at(t) == t
        b.spend(t)
    assert b.next_at(30.0) == 60.0, "three in the last minute: the next when the first is a minute old"
    assert b.used(30.0) == 3
    assert b.next_at(60.0) == 60.0 and b.used(60.0) == 2
    b.spend(60.0)
    assert b.next_at(61.0) == 70.0


def test_zero_is_no_budget() -> None:
    b = ReloadBudget(0)
    for t in range(100):
        b.spend(float(t))
    assert b.next_at(100.0) == 100.0 and b.used(100.0) == 0
