"""Fixtures for real processes, shared by every tier (helpers live in ``support/procs.py``, pytest-free).

Binaries (session): ``haproxy_bin``, ``etcd_bin``, ``dockerd_bin``, ``chromium_bin`` -> path. A missing one skips
the test with the reason, or fails it when ``CI=true`` (``support.require.unavailable``).

Addresses and servers:
- ``loopback`` -> ``Callable[[], str]``: each call, the next distinct 127.0.0.x (100-254, round-robin).
- ``http_backends`` -> ``MakeHttpBackend``: ``http_backends(name="backend", addr=None, port=0) -> HttpBackend``
  (started; ``addr`` None takes the next loopback address); all stopped after the test.
- ``unique`` -> ``str``: 8 fresh hex characters, for key prefixes and container names on shared daemons.

etcd (``support.procs.EtcdCluster``; endpoints ``http://127.0.0.1:PORT``):
- ``etcd_cluster`` (session): 3 members, shared; never kill its members, and keep keys under a ``unique``
  prefix.
- ``etcd_single`` (session): 1 member, shared likewise.
- ``etcd_secure`` (session) -> ``SecureEtcd``: 1 member as production runs it: client port TLS-only with
  ``--client-cert-auth`` (certificates made by ``support.pki``), etcd's RBAC on with user ``haplane``
  (``password``), auth tokens that expire after 2 s; ``url(prefix)`` is a store URL that gets in.
- ``make_etcd_cluster`` -> ``MakeEtcdCluster``: ``make_etcd_cluster(n=3) -> EtcdCluster``, healthy, yours to
  kill and restart; closed after the test.

ACME (``support.acme``): ``make_pebble`` -> ``make_pebble(http_port) -> Pebble``: Debian's pebble on loopback,
its HTTP-01 checks sent to ``127.0.0.1:http_port`` for every name (a ``LoopbackDNS`` it is pointed at), trusted
through ``pebble.ca_file``; stopped after the test.

Docker (``support.procs.Dockerd``, networking off: run containers with ``--network host`` on 127.0.0.x):
- ``dockerd_session`` (session): the daemon.
- ``dockerd`` (function): the same daemon, running, with no containers left from earlier tests; after the
  test every container is removed, and the daemon is started again if the test left it stopped. Use
  ``dockerd.restart()`` (or ``restart(kill=True)``) mid-test.
- ``busybox_image`` (session) -> ``str``: ``haplane-test/busybox:1`` in that daemon.

Everything started is stopped at teardown, at the end of the session, on SIGTERM, and at interpreter exit.
Tests under ``tests/integration`` and ``tests/e2e`` get the ``integration`` / ``e2e`` marker automatically.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from support import procs
from support.acme import LoopbackDNS, Pebble
from support.pki import make_pki
from support.procs import (
    Dockerd,
    EtcdCluster,
    EtcdTLS,
    HttpBackend,
    MakeEtcdCluster,
    MakeHttpBackend,
    ProcessError,
    SecureEtcd,
    build_busybox_image,
    find_static_busybox,
)
from support.require import require_binary, unavailable

_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            parts = item.path.relative_to(_TESTS).parts
        except ValueError:
            continue
        if parts[:1] == ("integration",):
            item.add_marker(pytest.mark.integration)
        elif parts[:1] == ("e2e",):
            item.add_marker(pytest.mark.e2e)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    procs.cleanup_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def pytest_configure(config: pytest.Config) -> None:
    # A runner that is terminated (CI's time limit, a killed terminal) still stops every daemon we started.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_unconfigure(config: pytest.Config) -> None:
    procs.cleanup_all()


def _started_procs() -> list[procs.Proc]:
    """Every process ``Proc`` started and not stopped yet (the module is imported both as ``support.procs`` and
    as ``tests.support.procs``: each has its own list)."""
    out: list[procs.Proc] = []
    for name in ("support.procs", "tests.support.procs"):
        module = sys.modules.get(name)
        if module is not None:
            with module._LOCK:
                out.extend(module._PROCS)
    return out


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A process a test's body started and left running (its assertion failed before its own stop) is stopped
    when the test ends: a `haplane up` left behind holds its ports (HTTPS 8443 by default) and fails every later
    test that starts one. Fixtures' processes start in the setup phase and are left alone."""
    before = {id(p) for p in _started_procs()}
    try:
        return (yield)
    finally:
        for p in _started_procs():
            if id(p) not in before and p.alive():
                p.stop(timeout=10)


# --------------------------------------------------------------------------------------------------------------
# binaries


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    return require_binary("haproxy", "/usr/sbin/haproxy", env="HAPLANE_HAPROXY_BIN", package="haproxy")


@pytest.fixture(scope="session")
def etcd_bin() -> str:
    return require_binary("etcd", "/usr/bin/etcd", env="HAPLANE_ETCD_BIN", package="etcd-server")


@pytest.fixture(scope="session")
def dockerd_bin() -> str:
    return require_binary("dockerd", "/usr/sbin/dockerd", env="HAPLANE_DOCKERD_BIN", package="docker.io")


@pytest.fixture(scope="session")
def pebble_bin() -> str:
    return require_binary("pebble", "/usr/bin/pebble", env="HAPLANE_PEBBLE_BIN", package="pebble")


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    return require_binary("chromium", "/usr/bin/chromium", env="HAPLANE_CHROMIUM_BIN", package="chromium")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    return require_binary("promtool", "/usr/bin/promtool", env="HAPLANE_PROMTOOL_BIN", package="prometheus")


# --------------------------------------------------------------------------------------------------------------
# addresses, HTTP backends


@pytest.fixture(scope="session")
def loopback() -> Callable[[], str]:
    return procs.next_loopback


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def http_backends(loopback: Callable[[], str]) -> Iterator[MakeHttpBackend]:
    started: list[HttpBackend] = []

    def make(name: str = "backend", addr: str | None = None, port: int = 0) -> HttpBackend:
        b = procs.http_backend(addr or loopback(), port, name)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


# --------------------------------------------------------------------------------------------------------------
# etcd


def _start_etcd(etcd_bin: str, n: int) -> EtcdCluster:
    cluster = EtcdCluster(n, etcd_bin=etcd_bin)
    try:
        return cluster.start()
    except BaseException:
        cluster.close()
        raise


@pytest.fixture(scope="session")
def etcd_cluster(etcd_bin: str) -> Iterator[EtcdCluster]:
    cluster = _start_etcd(etcd_bin, 3)
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def etcd_single(etcd_bin: str) -> Iterator[EtcdCluster]:
    cluster = _start_etcd(etcd_bin, 1)
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def etcd_secure(etcd_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEtcd]:
    pki = make_pki(tmp_path_factory.mktemp("etcd-pki"))
    cluster = EtcdCluster(1, etcd_bin=etcd_bin, tls=EtcdTLS.from_pki(pki), auth_token_ttl=2)
    try:
        cluster.start()
        secure = SecureEtcd(cluster, pki)
        cluster.enable_auth(secure.user, secure.password)
        yield secure
    finally:
        cluster.close()


@pytest.fixture
def make_etcd_cluster(etcd_bin: str) -> Iterator[MakeEtcdCluster]:
    made: list[EtcdCluster] = []

    def make(n: int = 3) -> EtcdCluster:
        cluster = _start_etcd(etcd_bin, n)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()


# --------------------------------------------------------------------------------------------------------------
# ACME: pebble + a loopback DNS server


@pytest.fixture
def make_pebble(pebble_bin: str) -> Iterator[Callable[[int], Pebble]]:
    started: list[tuple[Pebble, LoopbackDNS]] = []
    dirs: list[Path] = []

    def make(http_port: int) -> Pebble:
        dns = LoopbackDNS().start()
        d = procs.short_tmpdir("pb")
        dirs.append(d)
        pebble = Pebble(pebble_bin, d, http_port, dns)
        started.append((pebble, dns))
        return pebble.start()

    yield make
    for pebble, dns in started:
        pebble.stop()
        dns.stop()
    for d in dirs:
        procs.release_dir(d)


# --------------------------------------------------------------------------------------------------------------
# dockerd


@pytest.fixture(scope="session")
def dockerd_session(dockerd_bin: str) -> Iterator[Dockerd]:
    if os.geteuid() != 0:
        unavailable("dockerd needs root")
    daemon = Dockerd(dockerd_bin=dockerd_bin)
    try:
        daemon.start()
    except ProcessError:
        daemon.close()
        raise
    yield daemon
    daemon.close()


@pytest.fixture
def dockerd(dockerd_session: Dockerd) -> Iterator[Dockerd]:
    if not dockerd_session.running:
        dockerd_session.start()
    dockerd_session.remove_all_containers()
    yield dockerd_session
    if not dockerd_session.running:
        dockerd_session.start()
    dockerd_session.remove_all_containers()


@pytest.fixture(scope="session")
def busybox_image(dockerd_session: Dockerd) -> str:
    if find_static_busybox() is None:
        unavailable("no statically linked busybox (Debian package busybox-static; scripts/setup installs it)")
    if not dockerd_session.running:
        dockerd_session.start()
    return build_busybox_image(dockerd_session)
