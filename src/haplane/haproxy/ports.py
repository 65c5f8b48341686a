"""Is a proxy port already held? Asked before haplane starts an HAProxy (not when it adopts or restarts its own).

HAProxy 2.6 sets SO_REUSEPORT on its listeners unless told ``noreuseport``: two HAProxys (two haplanes, or an
operator's HAProxy and haplane's) would then share a port and split its traffic between two configs. haplane's
HAProxy runs with ``noreuseport`` (``process.control_globals``), so nothing can join it on its ports, and a
haplane about to start one checks first that nobody holds them: a plain bind of each listening address, with
SO_REUSEADDR (a port in TIME_WAIT is free) and without SO_REUSEPORT (a listener of any kind is a conflict). The
seamless reload is unaffected: the new worker gets the listening sockets from the old one over the master's
socket pair (``expose-fd listeners``), it never binds them again.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable

from haplane.errors import HAProxyError
from haplane.model.haproxy import Bind, Config

__all__ = ["PortHeld", "held_ports", "listening_binds", "refuse_held_ports"]


class PortHeld(HAProxyError):
    """A port HAProxy must listen on is held by another process."""


def listening_binds(config: Config) -> list[Bind]:
    """Every TCP address the config listens on: the frontends' binds, their HTTPS binds, the stats listener."""
    binds: list[Bind] = []
    for fe in config.frontends:
        binds.extend(fe.binds)
        if fe.tls is not None:
            binds.extend(fe.tls.binds)
    if config.globals.stats_bind is not None:
        binds.append(config.globals.stats_bind)
    return list(dict.fromkeys(binds))


def held_ports(binds: Iterable[Bind]) -> list[Bind]:
    """The binds another process holds now (EADDRINUSE). Other failures (an address this host does not have, a
    privileged port) are left for HAProxy to report in its own words."""
    held: list[Bind] = []
    for b in binds:
        if b.port == 0:
            continue
        address = "0.0.0.0" if b.address == "*" else b.address
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        except ValueError:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, b.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    held.append(b)
    return held


def refuse_held_ports(config: Config) -> None:
    """``PortHeld`` naming the first held port, in one line that says what to do."""
    held = held_ports(listening_binds(config))
    if held:
        names = ", ".join(b.render() for b in held)
        raise PortHeld(f"port {names} is already in use by another process (another haplane or HAProxy?): "
                       "HAProxy would not start, or would share it; stop that process or choose another port "
                       "(--http-port, HAPLANE_HTTP_PORT)")
