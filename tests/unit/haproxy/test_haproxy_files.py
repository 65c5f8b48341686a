"""Atomic files, last good config, and the control lines handed to the renderer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haplane.errors import HAProxyError
from haplane.haproxy.files import ConfigFiles, atomic_write, atomic_write_async
from haplane.haproxy.process import control_globals


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "haproxy.cfg"
    atomic_write(target, "one\n")
    atomic_write(target, b"two\n", mode=0o600)
    assert target.read_text() == "two\n" and (target.stat().st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path) == ["haproxy.cfg"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "haproxy.cfg"
    atomic_write(target, "old\n")

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, "new\n")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["haproxy.cfg"]


async def test_atomic_write_async_translates_oserror(tmp_path: Path) -> None:
    with pytest.raises(HAProxyError, match="cannot write"):
        await atomic_write_async(tmp_path / "missing-dir" / "x", "x")


async def test_current_last_good_restore(tmp_path: Path) -> None:
    files = ConfigFiles(tmp_path)
    assert await files.read_last_good() is None and not await files.restore_last_good()
    await files.write_current("cfg v1\n", {"hosts.map": "a.com app\n", str(tmp_path / "abs.map"): "x y\n"})
    await files.mark_good({"hosts.map": "a.com app\n", str(tmp_path / "abs.map"): "x y\n"})
    assert (tmp_path / "hosts.map").read_text() == "a.com app\n"
    # a new config is written, HAProxy refuses it: the last good comes back, maps included
    await files.write_current("cfg v2 broken\n", {"hosts.map": "b.com other\n"})
    assert await files.read_current() == "cfg v2 broken\n"
    assert await files.restore_last_good()
    assert await files.read_current() == "cfg v1\n"
    assert (tmp_path / "hosts.map").read_text() == "a.com app\n"
    last = await files.read_last_good()
    assert last == ("cfg v1\n", {"hosts.map": "a.com app\n", str(tmp_path / "abs.map"): "x y\n"})
    # mark_good without maps keeps the map set of the previous last good
    await files.write_current("cfg v3\n")
    await files.mark_good()
    maps = {"hosts.map": "a.com app\n", str(tmp_path / "abs.map"): "x y\n"}
    assert await files.read_last_good() == ("cfg v3\n", maps)


async def test_mark_good_needs_a_current_config(tmp_path: Path) -> None:
    with pytest.raises(HAProxyError):
        await ConfigFiles(tmp_path).mark_good()


async def test_server_state_file(tmp_path: Path) -> None:
    files = ConfigFiles(tmp_path)
    await files.write_server_state("1\n# be_id\n3 b 1 s1")
    assert files.state_file.read_text() == "1\n# be_id\n3 b 1 s1\n"


def test_control_globals() -> None:
    ctl = control_globals("/var/lib/haplane", hard_stop_after="10s", mworker_max_reloads=20)
    assert ctl.global_lines == (
        "stats socket /var/lib/haplane/admin.sock mode 600 level admin expose-fd listeners",
        "stats timeout 30s",
        "server-state-file /var/lib/haplane/server-state",
        "hard-stop-after 10s",
        "mworker-max-reloads 20",
        "noreuseport",
    )
    assert ctl.defaults_lines == ("load-server-state-from-file global",)
    assert control_globals(Path("/s/")).global_lines[0].startswith("stats socket /s/admin.sock ")
    for bad in ("/path with space", "/a'b", "/a#b"):
        with pytest.raises(ValueError):
            control_globals(bad)
    with pytest.raises(ValueError):
        control_globals("/s", hard_stop_after="30 s")
