"""``haproxy -c``: is a configuration valid, and which of its lines are wrong.

``check_config`` runs ``haproxy -c -f FILE`` and returns a ``CheckResult`` (ok, HAProxy's ALERT/WARNING lines,
the config line numbers they name); ``require_valid`` raises ``ConfigCheckFailed`` instead. A check of text
writes it to a temporary file (in ``directory`` when given, so relative paths resolve as they will for the
real file) and removes it afterwards. Map files the config loads must exist for the check to pass:
``maps`` (path as written in the config → content) are written beside the temporary config and their paths
substituted in the text (same line count, so line numbers stay right), so nothing in force changes.

Who calls it: the agent before every write of haproxy.cfg, and ``haplane check`` / ``haplane generate --check``.
A check costs about 10 ms for a small config (HAProxy parses, resolves nothing, binds nothing).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from haplane.errors import ConfigCheckFailed, ConfigurationError
from haplane.haproxy.parse import config_lines, parse_check_output, proxy_lines
from haplane.model.observed import CheckResult

__all__ = ["CheckResult", "check_config", "require_valid"]


async def check_config(config: str | os.PathLike[str], haproxy_bin: str = "haproxy", *,
                       is_path: bool | None = None, directory: str | os.PathLike[str] | None = None,
                       maps: Mapping[str, str] | None = None, timeout: float = 60.0) -> CheckResult:
    """Check ``config``: config text, or the path of a file (a ``Path``, or a ``str`` with ``is_path=True``).

    Raises ``ConfigurationError`` when ``haproxy_bin`` cannot be run; a config HAProxy refuses is not an
    exception here (``CheckResult.ok`` is False)."""
    path_given = is_path if is_path is not None else isinstance(config, os.PathLike)
    if path_given and not maps:
        path = os.fspath(config)
        text = _read_text(path)
        return await _run_check(haproxy_bin, path, text, timeout)
    text = _read_text(os.fspath(config)) if path_given else str(config)
    display = os.fspath(config) if path_given else "haproxy.cfg"
    tmpdir = tempfile.mkdtemp(prefix=".haplane-check-", dir=os.fspath(directory) if directory else None)
    try:
        renames: dict[str, str] = {}
        for n, (name, content) in enumerate(sorted((maps or {}).items())):
            side = os.path.join(tmpdir, f"map{n}-{os.path.basename(name)}")
            Path(side).write_text(content)
            text = _substitute_path(text, name, side)
            renames[side] = name
        path = os.path.join(tmpdir, "haproxy.cfg")
        Path(path).write_text(text)
        renames[path] = display
        result = await _run_check(haproxy_bin, path, text, timeout)
        return CheckResult(result.ok, tuple(_rename(m, renames) for m in result.messages), result.lines)
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


def _substitute_path(text: str, name: str, side: str) -> str:
    """Replace ``name`` where it stands as a whole path token (``map(NAME)``, ``-f NAME``, ``file=NAME``...)."""
    pattern = re.compile(r"(?<![^\s(,=])" + re.escape(name) + r"(?=[\s),]|$)", re.MULTILINE)
    return pattern.sub(lambda _m: side, text)


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
    return CheckResult(result.ok, result.messages, tuple(sorted(lines)))
