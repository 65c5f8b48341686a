"""Natives are read as HAProxy reads them and held to an allowlist: an admin token never reaches the host
(issue #17: a quoted 'global' then 'master-worker' and a 'program' section ran a command as root)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from haplane.compose import compose
from haplane.errors import ValidationError
from haplane.model import values as v
from haplane.model.records import BackendSpec, FrontendSpec, Registry
from haplane.render import render

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

# each opens a section, reaches the host (files, code, environment, sockets) or is not a proxy keyword
REFUSED = [
    '"global"', "'global'", "\\x67lobal", "g\\lobal", '"frontend" x', "'backend' evil", '"program" pwn',
    "\\x70rogram pwn", "listen x", '"defaults"', "  \"userlist\" u", '"peers" p', "[scope]", "  [scope]",
    "master-worker", "command /bin/sh -c id", "stats socket /tmp/x level admin", "lua-load /tmp/x.lua",
    "external-check command /bin/true", "option external-check", "errorfile 503 /etc/passwd",
    "errorfiles e", "errorloc 503 http://x/", "errorloc302 503 http://x/",
    "http-request return status 200 file /etc/shadow", "http-request return status 200 lf-file /etc/shadow",
    "http-request deny errorfile /etc/passwd", "http-error status 503 file /etc/passwd",
    "http-response return status 200 errorfiles e", "http-request use-service lua.x", "http-request lua.x",
    "http-request set-header X %[lua.x]", "http-response set-header X %[env(HAPLANE_TOKEN)]",
    'http-request set-header X "${HAPLANE_TOKEN}"', 'http-request set-header X "$HOME"',
    'http-request set-header X "${A-b}"', "acl x path -f /etc/passwd", "acl x path -M -f /etc/m",
    "http-request set-header X %[path,map(/etc/passwd)]", "http-request set-map(/tmp/m) a b",
    "use_backend %[req.hdr(host),map_str(/etc/hosts)]", "filter trace", "filter spoe config /etc/x",
    "log /dev/log local0", "log syslog.example.com:514 local0", "log udp@1.2.3.4:514 local0",
    "bind 127.0.0.1:9999", "bind /tmp/sock", "server x 127.0.0.1:80", "server x 127.0.0.1:80 ca-file /etc/x",
    "default-server ca-file /etc/x", "server-template s 3 x.example:80", "mode tcp", "dispatch 1.2.3.4:80",
    "load-server-state-from-file global", "use-fcgi-app php", "email-alert mailers m", ".if defined(X)",
    ".diag x", "no bind", "default mode", "user x", "setenv X y", "presetenv X y", "chroot /",
    "http-request set-header X a\\x0ab", "http-request set-header X \\x00", "http-request set-header X caf\\xc3\\xa9",
    "http-request set-header X \"unterminated", "http-request set-header X \\xZZ", "# only a comment",
    "a\tb", "http-request deny\nglobal", "http-request set-header X ü", "http-request set-header X \ud800",
    "timeout server 1s\x0b stats enable",
]


@pytest.mark.parametrize("line", REFUSED)
def test_a_native_that_reaches_the_host_or_leaves_its_section_is_refused(line: str) -> None:
    for section in ("frontend", "backend"):
        with pytest.raises(ValidationError) as exc:
            v.native_line(line, "natives[2]", section)  # type: ignore[arg-type]
        assert exc.value.field == "natives[2]"
        assert exc.value.rule  # says which rule


def test_the_issue_exploit_is_refused_through_the_record() -> None:
    natives = ["timeout server 5s", '"global"', "master-worker", '"program" pwn', "command /bin/touch /tmp/x"]
    with pytest.raises(ValidationError) as exc:
        BackendSpec.from_dict({"type": "static", "natives": natives}, name="b")
    assert exc.value.field == "natives[1]"
    assert "section" in exc.value.rule
    with pytest.raises(ValidationError) as fe_exc:
        FrontendSpec.from_dict({"bind": "*:80", "natives": ["http-request deny", "\\x67lobal"]}, name="f")
    assert fe_exc.value.field == "natives[1]"


FRONTEND_OK = [
    "http-request deny if { path /x }", 'http-response set-header X-Note "a \\"quoted\\" <b>&amp;</b>"',
    "http-request set-header X-Cost \\$5", "acl bad src 10.0.0.0/8", "http-request deny if bad",
    "option httplog", "no option http-server-close", "timeout client 30s", "capture request header Host len 40",
    "log global", "log 127.0.0.1:514 local0", "http-request return status 200 content-type text/plain string ok"
    " if { path /ping }", "redirect scheme https code 301 if { hdr(host) -i secure.example.com }",
    "rate-limit sessions 100", "maxconn 1000", "http-after-response set-header X-A b", "monitor-uri /alive",
    "http-request set-header X-Q 'single $HOME kept'", "compression algo gzip", "# the next is kept",
]
BACKEND_OK = [
    "timeout server 20s", "option httpchk GET /a HTTP/1.0", "http-check expect status 200", "retries 3",
    "option redispatch", "http-request set-header X-Via haplane", "balance leastconn", "hash-type consistent",
    "http-reuse safe", "stick-table type ip size 1m expire 1h", "stick on src", "log global",
    "http-response del-header Server", "option log-health-checks", "fullconn 100",
]


def _config(frontend: list[str], backend: list[str]) -> str:
    fe = FrontendSpec.from_dict({"bind": "127.0.0.1:18080", "backend": "b", "natives": frontend}, name="f")
    be = BackendSpec.from_dict({"type": "static", "members": [{"host": "127.0.0.2", "port": 80}],
                                "natives": backend}, name="b")
    return render(compose(Registry((), (), (fe,), (be,))))


def test_the_directives_admins_use_pass_and_haproxy_accepts_them(tmp_path: Path) -> None:
    ok_fe = [line for line in FRONTEND_OK if not line.startswith("#")]
    cfg = _config(ok_fe, BACKEND_OK)
    for line in ok_fe + BACKEND_OK:
        assert f"    {line}\n" in cfg
    if not Path(HAPROXY).exists():
        pytest.skip("haproxy binary not installed")
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    result = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_comment_only_native_is_refused_but_a_trailing_comment_is_kept() -> None:
    with pytest.raises(ValidationError, match="no directive"):
        v.native_line("# the next is kept", "natives[0]", "frontend")
    assert v.native_line("timeout server 1s # why", "n", "backend") == "timeout server 1s # why"


def test_section_rules() -> None:
    with pytest.raises(ValidationError, match="backend's natives"):
        v.native_line("use_backend x", "natives[0]", "backend")
    with pytest.raises(ValidationError, match="frontend's natives"):
        v.native_line("option httpchk", "natives[0]", "frontend")
    with pytest.raises(ValidationError, match="stats socket"):
        v.native_line("stats socket /tmp/s", "natives[0]", "backend")
    assert v.native_line("stats uri /stats", "n", "backend") == "stats uri /stats"
