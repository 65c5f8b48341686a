"""How many file descriptors HAProxy asks for, how many it needs, and what this machine allows.

HAProxy 2.6 sizes its descriptor limit at start (measured; docs/haproxy-notes.md):

    maxsock = 2 * maxconn + 1 per server with ``check`` + listeners and sockets (~40 here)

and raises its RLIMIT_NOFILE to that. Every slot haplane renders carries ``check`` (a filled slot is health
checked at once), so 10,000 services of 10 slots ask for ~108,000 descriptors; with the default
``strict-limits`` HAProxy refuses to start above the hard limit (``Cannot raise FD limit to 48240, limit is
20000`` at 5,000 services here). But a slot costs a descriptor only while its check runs, and a free slot
(``disabled``) runs none: what HAProxy really needs is

    2 * maxconn + 1 per filled, checked slot (at most one check in flight each) + listeners and sockets

So a managed HAProxy runs with ``ulimit-n <hard limit>`` and ``no strict-limits`` (``process.
control_globals``): it starts whatever the slot count, and haplane checks the real need against the hard limit
itself, before starting HAProxy (refused in one line that says what to change) and at each reload (a
warning). ``maxconn`` defaults to what leaves half the descriptors to health checks, at most 4,096.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from haplane.model.haproxy import Config

__all__ = ["RESERVED", "Budget", "auto_maxconn", "budget", "hard_limit"]

RESERVED = 64  # listeners, the CLI sockets, the log socket, the poller: what HAProxy counts beside the rest
DEFAULT_MAXCONN = 4096


def hard_limit() -> int | None:
    """This process's hard RLIMIT_NOFILE (HAProxy, started by haplane, inherits it); None if unlimited."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else int(hard)


def auto_maxconn(limit: int | None) -> int:
    """The default ``maxconn``: 4,096, or less where the hard limit is low: half of the descriptors left after
    the reserve go to connections (two each), the other half to health checks."""
    if limit is None:
        return DEFAULT_MAXCONN
    return max(16, min(DEFAULT_MAXCONN, (limit - RESERVED) // 4))


@dataclass(frozen=True, slots=True)
class Budget:
    """The descriptors of one config against the hard limit."""

    limit: int
    maxconn: int
    slots: int  # servers with ``check``: HAProxy reserves one each
    checked: int  # of which filled: the checks that really run
    listeners: int

    @property
    def asked(self) -> int:
        """What HAProxy 2.6 computes (and, with strict-limits, insists on)."""
        return 2 * self.maxconn + self.slots + self.listeners + RESERVED

    @property
    def needed(self) -> int:
        """What it can really use at once."""
        return 2 * self.maxconn + self.checked + self.listeners + RESERVED

    @property
    def fits(self) -> bool:
        return self.needed <= self.limit

    def describe(self) -> str:
        return (f"maxconn {self.maxconn} (2 descriptors each) + {self.checked} health-checked instances + "
                f"{self.listeners + RESERVED} for listeners and sockets = {self.needed} descriptors; the hard limit "
                f"is {self.limit}")

    def advice(self) -> str:
        """What to change, in one sentence."""
        room = (self.limit - self.checked - self.listeners - RESERVED) // 2
        lower = f"lower maxconn to {room} or less (HAPLANE_MAXCONN), or " if room >= 16 else ""
        return (f"{lower}raise the hard limit on open files (ulimit -Hn; LimitNOFILE= in a systemd unit; "
                f"docker run --ulimit nofile=N:N) to at least {self.needed}")


def budget(config: Config, limit: int, listeners: int = 1) -> Budget:
    """The budget of ``config`` under a hard limit of ``limit`` descriptors."""
    slots = checked = 0
    for be in config.backends:
        for s in be.servers:
            if s.check:
                slots += 1
                if s.instance is not None and s.state != "maint":
                    checked += 1
    return Budget(limit, config.globals.maxconn, slots, checked, listeners)
