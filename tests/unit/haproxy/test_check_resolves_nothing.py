"""``haproxy -c`` at API time resolves no host name (issue #17: an API write made the API's host send DNS
queries). What is checked has ``init-addr none`` on every server, rendered so; the agent, which runs where
HAProxy runs, still checks with resolution."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from haplane.compose import compose
from haplane.haproxy.check import check_rendered
from haplane.model.cfgtokens import split_line
from haplane.model.records import BackendSpec, FrontendSpec, Registry
from haplane.render import render_config

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy binary not installed")


def _rendered() -> object:
    fe = FrontendSpec.from_dict({"bind": "127.0.0.1:18080", "backend": "b"}, name="f")
    be = BackendSpec.from_dict({"type": "static", "members": [{"host": "nonexistent.invalid", "port": 80},
                                                              {"host": "127.0.0.2", "port": 80}]}, name="b")
    return render_config(compose(Registry((), (), (fe,), (be,))))


def test_a_server_on_a_name_that_cannot_resolve_is_checked_without_resolving(tmp_path: Path) -> None:
    rendered = _rendered()
    started = time.monotonic()
    result = asyncio.run(check_rendered(rendered, HAPROXY, directory=tmp_path))  # type: ignore[arg-type]
    assert result.ok, result.messages
    assert time.monotonic() - started < 10
    # what is stored and run is untouched: only what is checked says init-addr none
    assert "init-addr" not in rendered.text  # type: ignore[attr-defined]
    checked = rendered.with_map_paths({}, resolve=False)  # type: ignore[attr-defined]
    servers = [split_line(line).words for line in checked.splitlines() if split_line(line).words[:1] == ("server",)]
    assert servers and all(w[-2:] == ("init-addr", "none") for w in servers), servers
    assert len(checked.splitlines()) == len(rendered.text.splitlines())  # same lines: messages name them


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_haproxy_sends_no_dns_query_while_checking(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(_rendered().with_map_paths({}, resolve=False))  # type: ignore[attr-defined]
    trace = tmp_path / "trace"
    subprocess.run(["strace", "-f", "-e", "trace=sendto,sendmsg,sendmmsg", "-o", str(trace), HAPROXY, "-c",
                    "-f", str(path)], capture_output=True, timeout=30, check=False)
    sent = [line for line in trace.read_text().splitlines() if "send" in line and "resumed" not in line]
    assert sent == [], sent  # HAProxy 2.6 opens its default resolvers' socket, but sends nothing on it


def test_the_agent_checks_as_haproxy_will_run_it(tmp_path: Path) -> None:
    result = asyncio.run(check_rendered(_rendered(), HAPROXY, directory=tmp_path,  # type: ignore[arg-type]
                                        resolve=True))
    assert not result.ok and any("nonexistent.invalid" in m for m in result.messages), result.messages
