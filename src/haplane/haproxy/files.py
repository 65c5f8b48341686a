"""The files HAProxy reads, written so that a crash at any moment leaves either the old or the new file.

``atomic_write``: write a temporary file in the same directory, fsync it, rename it over the target,
fsync the directory. ``ConfigFiles(state_dir)`` keeps, in the state directory:

    haproxy.cfg                 the config in force (or about to be: written just before a reload)
    haproxy.cfg.last-good       the last config HAProxy accepted and ran
    haproxy.cfg.last-good.maps  JSON list of the map files that went with it
    <map>                       each map file, at the path the config loads it from
    <map>.last-good             its content as of the last good config
    server-state                ``show servers state`` saved before a reload (see reload.py)

The flow (``reload.reload_with_last_good``, for the managed and the attached HAProxy alike):
``write_current(config, maps)`` → reload → on success ``mark_good()``, on failure ``restore_last_good()``.
Map files changed live through the Runtime API should be rewritten with ``write_maps`` too, so that a
reload or a restart loads what the running HAProxy holds.

Blocking file work runs in a thread (``asyncio.to_thread``); OSError becomes ``HAProxyError``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from haplane.errors import HAProxyError

__all__ = ["CONFIG_NAME", "LAST_GOOD_SUFFIX", "STATE_NAME", "ConfigFiles", "atomic_write", "atomic_write_async"]

CONFIG_NAME = "haproxy.cfg"
LAST_GOOD_SUFFIX = ".last-good"
STATE_NAME = "server-state"


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably (same-directory temp file, fsync, rename,
    fsync of the directory). Raises OSError."""
    target = Path(path)
    directory = target.parent
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def atomic_write_async(path: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o644) -> None:
    """``atomic_write`` in a thread, OSError translated to ``HAProxyError``."""
    try:
        await asyncio.to_thread(atomic_write, path, data, mode=mode)
    except OSError as exc:
        raise HAProxyError(f"cannot write {os.fspath(path)}: {exc.strerror or exc}") from exc


class ConfigFiles:
    """haproxy.cfg, its last good copy, and the map files, in ``state_dir``."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.config_path = self.state_dir / CONFIG_NAME
        self.last_good_path = self.state_dir / (CONFIG_NAME + LAST_GOOD_SUFFIX)
        self.last_good_maps_path = self.state_dir / (CONFIG_NAME + LAST_GOOD_SUFFIX + ".maps")
        self.state_file = self.state_dir / STATE_NAME

    def map_path(self, name: str) -> Path:
        """Where a map named ``name`` lives: ``name`` itself when absolute, else inside ``state_dir``."""
        p = Path(name)
        return p if p.is_absolute() else self.state_dir / p

    # -- writes ----------------------------------------------------------------------------------------

    async def write_current(self, config: str, maps: Mapping[str, str] | None = None) -> None:
        """Make ``config`` (already checked) and its ``maps`` the files HAProxy will load next. Maps are
        written first, so the config never names a map that is not there yet."""
        await self.write_maps(maps or {})
        await atomic_write_async(self.config_path, config)

    async def write_maps(self, maps: Mapping[str, str]) -> None:
        for name, content in maps.items():
            await atomic_write_async(self.map_path(name), content)

    async def mark_good(self, maps: Mapping[str, str] | None = None) -> None:
        """The current config (and ``maps``, by name: default, those that went with the last good) is
        running: keep copies as the last good."""
        config = await self._read(self.config_path)
        if config is None:
            raise HAProxyError(f"{self.config_path} does not exist: nothing to mark good")
        names = list(maps) if maps is not None else await self._last_good_map_names()
        for name in names:
            content = maps[name] if maps is not None else await self._read(self.map_path(name))
            if content is not None:
                await atomic_write_async(str(self.map_path(name)) + LAST_GOOD_SUFFIX, content)
        await atomic_write_async(self.last_good_maps_path, json.dumps(names))
        await atomic_write_async(self.last_good_path, config)

    async def restore_last_good(self) -> bool:
        """Put the last good config and maps back as the current files; False if there is none."""
        last = await self.read_last_good()
        if last is None:
            return False
        config, maps = last
        await self.write_current(config, maps)
        return True

    async def write_server_state(self, text: str) -> None:
        await atomic_write_async(self.state_file, text if text.endswith("\n") else text + "\n")

    # -- reads -----------------------------------------------------------------------------------------

    async def read_current(self) -> str | None:
        return await self._read(self.config_path)

    async def read_last_good(self) -> tuple[str, dict[str, str]] | None:
        """The last good config and its maps (name → content), or None."""
        config = await self._read(self.last_good_path)
        if config is None:
            return None
        maps: dict[str, str] = {}
        for name in await self._last_good_map_names():
            content = await self._read(Path(str(self.map_path(name)) + LAST_GOOD_SUFFIX))
            if content is not None:
                maps[name] = content
        return config, maps

    async def _last_good_map_names(self) -> list[str]:
        text = await self._read(self.last_good_maps_path)
        if not text:
            return []
        try:
            names = json.loads(text)
        except ValueError:
            return []
        return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []

    async def _read(self, path: Path) -> str | None:
        def read() -> str | None:
            try:
                return path.read_text()
            except FileNotFoundError:
                return None

        try:
            return await asyncio.to_thread(read)
        except OSError as exc:
            raise HAProxyError(f"cannot read {path}: {exc.strerror or exc}") from exc
