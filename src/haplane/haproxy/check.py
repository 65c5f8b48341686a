"""``haproxy -c``: is a configuration valid, and which of its lines are wrong.

``check_config`` runs ``haproxy -c -f FILE`` and returns a ``CheckResult`` (ok, HAProxy's ALERT/WARNING lines,
the config line numbers they name, the proxies named without a line); ``require_valid`` raises
``ConfigCheckFailed`` instead. A check of text writes it to a temporary file (in ``directory`` when given, so
relative paths resolve as they will for the real file) and removes it afterwards.

``check_rendered`` checks a ``render.Rendered`` config with its map files: HAProxy loads a map when it parses
the config, so the new maps must exist for the check, but nothing in force may change. They are written to
the temporary directory and the config is rendered with its maps there (``Rendered.with_map_paths``: the
paths are values handed to render, never substituted in the text); the lines are the same.

Who calls it: the agent before every write of haproxy.cfg (``check_rendered(resolve=True)``: it runs where
HAProxy runs, so a server name HAProxy could not resolve fails the check there), the API before it stores
natives (``check_rendered``), and ``haplane check`` / ``haplane generate --check`` (``check_config``).
A check costs about 10 ms for a small config (HAProxy parses, binds nothing). ``check_rendered`` resolves
nothing unless asked: the config it checks has ``init-addr none`` on every server (rendered so, see
``Rendered.with_map_paths``), so an API write never makes the API's host send a DNS query.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from haplane.errors import ConfigCheckFailed, ConfigurationError
from haplane.haproxy.parse import config_lines, named_proxies, parse_check_output, proxy_lines
from haplane.model.observed import CheckResult
from haplane.render import Rendered

__all__ = ["CheckResult", "check_config", "check_rendered", "require_valid"]


async def check_config(config: str | os.PathLike[str], haproxy_bin: str = "haproxy", *,
                       is_path: bool | None = None, directory: str | os.PathLike[str] | None = None,
                       timeout: float = 60.0) -> CheckResult:
    """Check ``config``: config text, or the path of a file (a ``Path``, or a ``str`` with ``is_path=True``).

    Raises ``ConfigurationError`` when ``haproxy_bin`` cannot be run; a config HAProxy refuses is not an
    exception here (``CheckResult.ok`` is False)."""
    path_given = is_path if is_path is not None else isinstance(config, os.PathLike)
    if path_given:
        path = os.fspath(config)
        return await _run_check(haproxy_bin, path, _read_text(path), timeout)
    return await _check_text(lambda _tmpdir: str(config), haproxy_bin, directory, {}, timeout)


async def check_rendered(rendered: Rendered, haproxy_bin: str = "haproxy", *,
                         directory: str | os.PathLike[str] | None = None, timeout: float = 60.0,
                         resolve: bool = False) -> CheckResult:
    """Check a rendered config with its map files (see the module docstring); messages name the map files
    by the paths the config gives them. ``resolve``: let HAProxy resolve the servers' host names as it will
    when it runs (only where it runs: the agent); otherwise none is resolved."""
    maps = rendered.maps
    sides = {name: f"map{n}-{os.path.basename(name)}" for n, name in enumerate(sorted(maps))}

    def text(tmpdir: str) -> str:
        for name, side in sides.items():
            Path(tmpdir, side).write_text(maps[name])
        return rendered.with_map_paths({name: os.path.join(tmpdir, side) for name, side in sides.items()},
                                       resolve=resolve)

    return await _check_text(text, haproxy_bin, directory, sides, timeout)


async def _check_text(make: Callable[[str], str], haproxy_bin: str, directory: str | os.PathLike[str] | None,
                      sides: Mapping[str, str], timeout: float) -> CheckResult:
    """Check the text ``make(tmpdir)`` as haproxy.cfg in a temporary directory; the temporary paths of the
    config and of the map files (``sides``: name in the config → file name in tmpdir) are named back in the
    messages as the config and the caller know them."""
    tmpdir = tempfile.mkdtemp(prefix=".haplane-check-", dir=os.fspath(directory) if directory else None)
    try:
        text = make(tmpdir)
        path = os.path.join(tmpdir, "haproxy.cfg")
        Path(path).write_text(text)
        renames = {os.path.join(tmpdir, side): name for name, side in sides.items()}
        renames[path] = "haproxy.cfg"
        result = await _run_check(haproxy_bin, path, text, timeout)
        return CheckResult(result.ok, tuple(_rename(m, renames) for m in result.messages), result.lines,
                           result.proxies)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


async def require_valid(config: str | os.PathLike[str], haproxy_bin: str = "haproxy", **kwargs: object
                        ) -> CheckResult:
    """``check_config``, raising ``ConfigCheckFailed`` (with HAProxy's messages and the lines) when refused."""
    result = await check_config(config, haproxy_bin, **kwargs)  # type: ignore[arg-type]
    if not result.ok:
        raise ConfigCheckFailed(result.messages, result.lines)
    return result


def _rename(message: str, renames: Mapping[str, str]) -> str:
    for tmp, name in renames.items():
        message = message.replace(tmp, name)
    return message


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""  # HAProxy will say it cannot open the file


async def _run_check(haproxy_bin: str, path: str, text: str, timeout: float) -> CheckResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            haproxy_bin, "-c", "-f", path, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        raise ConfigurationError(f"cannot run {haproxy_bin!r} to check the config: {exc.strerror or exc}") from exc
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return CheckResult(False, (f"[ALERT] haproxy -c did not finish within {timeout:g}s",), ())
    result = parse_check_output(out.decode("utf-8", "replace"), proc.returncode or 0)
    lines = set(config_lines(result.messages, path)) | set(proxy_lines(result.messages, text))
    return CheckResult(result.ok, result.messages, tuple(sorted(lines)), named_proxies(result.messages))
