"""Fixtures for the real-HAProxy tests: the binary (or a clean skip), a short state directory, free ports,
and ``start_haproxy`` which starts a supervised HAProxy and stops it at the end of the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hx_support import StartHAProxy, haproxy_bin, short_tmpdir

from haplane.haproxy.process import HAProxyProcess


@pytest.fixture(scope="session")
def haproxy() -> str:
    found = haproxy_bin()
    if found is None:
        pytest.skip("no haproxy binary (set HAPLANE_HAPROXY_BIN or install haproxy)")
    return found


@pytest.fixture
def state_dir() -> Iterator[Path]:
    with short_tmpdir() as d:
        yield Path(d)


@pytest.fixture
async def start_haproxy(haproxy: str, state_dir: Path) -> AsyncIterator[StartHAProxy]:
    started: list[HAProxyProcess] = []

    async def start(config: str, maps: dict[str, str] | None = None, **kwargs: object) -> HAProxyProcess:
        hp = HAProxyProcess(state_dir, haproxy, **kwargs)  # type: ignore[arg-type]
        started.append(hp)
        await hp.start(config, maps)
        return hp

    yield start
    for hp in started:
        await hp.stop(graceful=False, timeout=3)
