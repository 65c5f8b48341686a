"""The descriptor budget of a config (haproxy/limits.py): what HAProxy 2.6 asks for, what it needs, the advice."""

from __future__ import annotations

from haplane.compose import ComposeOptions, compose
from haplane.haproxy.limits import RESERVED, auto_maxconn, budget
from haplane.haproxy.process import control_globals
from haplane.model.haproxy import Globals
from haplane.model.records import Instance, Registry, Service


def config(services: int, instances: int, maxconn: int = 100) -> object:
    svcs = tuple(Service(f"s{i}", "host", f"s{i}.test") for i in range(services))
    insts = tuple(Instance("i0", f"s{i}", "127.0.0.2", 80) for i in range(instances))
    return compose(Registry(svcs, insts, (), ()), ComposeOptions(min_slots=10, globals=Globals(maxconn=maxconn)))


def test_every_slot_is_asked_for_but_only_filled_ones_are_needed() -> None:
    b = budget(config(50, 20), limit=1000)  # type: ignore[arg-type]
    assert (b.slots, b.checked, b.maxconn) == (800, 20, 100)  # 10 slots: 16 (a power of two)
    assert b.asked == 200 + 800 + 1 + RESERVED and b.needed == 200 + 20 + 1 + RESERVED
    assert b.fits and b.asked > b.limit  # HAProxy alone would refuse to start; it fits


def test_over_the_limit_says_what_to_lower_and_what_to_raise() -> None:
    b = budget(config(50, 20, maxconn=600), limit=1000)  # type: ignore[arg-type]
    assert not b.fits
    assert "maxconn 600" in b.describe() and "20 health-checked instances" in b.describe()
    room = (1000 - 20 - 1 - RESERVED) // 2
    assert f"lower maxconn to {room} or less (HAPLANE_MAXCONN)" in b.advice()
    assert f"to at least {b.needed}" in b.advice()
    tight = budget(config(50, 20, maxconn=600), limit=100)  # type: ignore[arg-type]
    assert "lower maxconn" not in tight.advice()  # no maxconn would do: only the limit


def test_auto_maxconn_leaves_half_to_health_checks() -> None:
    assert auto_maxconn(None) == 4096 and auto_maxconn(1_048_576) == 4096
    assert auto_maxconn(20_000) == 4096
    assert auto_maxconn(1024) == (1024 - RESERVED) // 4
    assert auto_maxconn(100) == 16


def test_control_lines_size_a_managed_haproxy() -> None:
    lines = control_globals("/s", fd_limit=20000).global_lines
    assert lines[-3:] == ("noreuseport", "ulimit-n 20000", "no strict-limits")
    assert "ulimit-n" not in " ".join(control_globals("/s").global_lines)
