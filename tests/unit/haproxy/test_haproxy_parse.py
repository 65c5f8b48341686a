"""The pure parsers against real HAProxy 2.6 output (haproxy_samples.py)."""

from __future__ import annotations

import haproxy_samples as S
import pytest

from haplane.errors import HAProxyParseError
from haplane.haproxy.parse import (
    answer_error,
    config_lines,
    filter_server_state,
    named_proxies,
    parse_check_output,
    parse_get_map,
    parse_info,
    parse_map_list,
    parse_servers_state,
    parse_show_map,
    parse_show_proc,
    parse_stat,
    parse_uptime,
    proxy_lines,
)
from haplane.model.observed import CheckResult


def test_servers_state_fields_and_flags() -> None:
    s1, s2, s3 = parse_servers_state(S.SERVERS_STATE)
    assert (s1.backend, s1.name, s1.addr, s1.port, s1.uweight, s1.iweight) == ("b", "s1", "127.0.0.2", 37887, 10, 10)
    assert s1.op_name == "UP" and s1.admin_name == "ready" and s1.routable and s1.checked
    assert s1.check_status_name == "L7OK" and s1.check_result_name == "PASSED"
    # s2: disabled in the config, then ``set server state drain``: up, draining, not routable
    assert s2.admin_state == 0x0C and s2.drain and not s2.maint and s2.config_disabled and not s2.routable
    assert s2.admin_name == "drain"
    # s3: disabled in the config (FMAINT|CMAINT), IPv6, no check
    assert s3.addr == "::1" and s3.port == 80 and s3.maint and s3.admin_name == "maint" and not s3.up
    assert not s3.checked and s3.check_status_name == "INI"
    assert s3.key == ("b", "s3")


def test_servers_state_cmaint_alone_is_not_maintenance() -> None:
    # HAProxy's SRV_ADMF_MAINT is 0x23: a server declared disabled and enabled since keeps CMAINT (0x04)
    text = S.SERVERS_STATE.replace("3 b 1 s1 127.0.0.2 2 0 ", "3 b 1 s1 127.0.0.2 2 4 ")
    s1 = parse_servers_state(text)[0]
    assert s1.config_disabled and not s1.maint and s1.routable


def test_servers_state_tolerates_junk_and_extra_columns() -> None:
    assert parse_servers_state("") == []
    header = S.SERVERS_STATE.splitlines()[1]
    assert parse_servers_state(f"1\n{header}\n") == []  # no server
    for text in ("1\n# be_id be_name\n", "1\n", "garbage\n"):  # no header with its columns: not an answer
        with pytest.raises(HAProxyParseError, match="not a show servers state answer"):
            parse_servers_state(text)
    header = S.SERVERS_STATE.splitlines()[1] + " new_col"
    line = S.SERVERS_STATE.splitlines()[2] + " 42"
    (s,) = parse_servers_state(f"1\n{header}\n{line}\nshort line\n")
    assert s.name == "s1" and s.port == 37887


def test_stat_rows() -> None:
    rows = {r.key: r for r in parse_stat(S.SHOW_STAT)}
    assert set(rows) == {("fe", "FRONTEND"), ("b", "s1"), ("b", "s2"), ("b", "s3"), ("b", "BACKEND")}
    fe, s1, s2, be = rows["fe", "FRONTEND"], rows["b", "s1"], rows["b", "s2"], rows["b", "BACKEND"]
    assert fe.type == "frontend" and fe.status == "OPEN" and fe.stot == 3 and fe.weight is None
    assert s1.type == "server" and s1.status == "UP" and s1.weight == 10 and s1.stot == 3 and s1.hrsp_2xx == 3
    assert s1.check_status == "L7OK" and s1.check_code == 200 and s1.addr and s1.addr.startswith("127.0.0.2:")
    assert s1.raw["algo"] == "" and s1.raw["mode"] == "http"
    assert s2.status == "DRAIN 1/3" and s2.check_status == "INI"
    assert rows["b", "s3"].addr == "[::1]:80"
    assert be.type == "backend" and be.raw["algo"] == "roundrobin" and be.hrsp_5xx == 0
    assert parse_stat("") == [] and parse_stat("no header\n") == []


def test_info() -> None:
    info = parse_info(S.SHOW_INFO)
    assert (info.version, info.pid, info.uptime_sec, info.nbthread, info.cum_req) == ("2.6.12-1+deb12u4", 10045, 2,
                                                                                      2, 2)
    assert not info.stopping and info.raw["node"] == "vm" and info.raw["Build info"] == "2.6.12-1+deb12u4"


def test_show_proc() -> None:
    p = parse_show_proc(S.SHOW_PROC)
    assert (p.master_pid, p.reloads, p.failed_reloads, p.worker_pid, p.worker_pids) == (10042, 0, 0, 10045,
                                                                                        (10045,))
    assert not p.reload_failed and p.old_workers == () and p.master.version == "2.6.12-1+deb12u4"
    old = parse_show_proc(S.SHOW_PROC_OLD_WORKER)
    assert old.worker_pid == 15036 and [w.pid for w in old.old_workers] == [15031] and old.old_workers[0].reloads == 1
    failed = parse_show_proc(S.SHOW_PROC_FAILED)
    assert failed.reloads == 2 and failed.failed_reloads == 1 and failed.reload_failed
    assert failed.workers[0].reloads == 1  # the worker survived the failed reload
    with pytest.raises(ValueError):
        parse_show_proc("Unknown command.\n")


def test_show_proc_with_programs() -> None:
    text = S.SHOW_PROC.replace("# programs\n", "# programs\n1244            foo             0               "
                                               "0d00h00m00s     -\n")
    p = parse_show_proc(text)
    assert [(x.pid, x.type) for x in p.programs] == [(1244, "foo")]


@pytest.mark.parametrize(("text", "seconds"), [
    ("0d00h02m07s", 127), ("1d01h00m00s", 90000), ("0d 0h00m02s", 2), ("garbage", 0),
])
def test_uptime(text: str, seconds: int) -> None:
    assert parse_uptime(text) == seconds


def test_maps() -> None:
    assert parse_show_map(S.SHOW_MAP) == {"www.example.com": "b", "a.com": "b"}  # first duplicate wins
    assert parse_map_list(S.MAP_LIST) == {"/tmp/hx/hosts.map": 2}


def test_get_map_keeps_the_exact_key_alone() -> None:
    """``get map`` answers what a lookup finds (HAProxy 2.6's own answers): an exact key's value; a prefix map's
    shorter key is another entry; not found is None."""
    found = 'type=str, case=sensitive, found=yes, idx=tree, key="a.test", value="be1", type="str"\n\n'
    assert parse_get_map(found, "a.test") == "be1"
    beg = 'type=beg, case=sensitive, found=yes, idx=tree, key="/api/", value="be1", type="str"\n\n'
    assert parse_get_map(beg, "/api/") == "be1"
    assert parse_get_map(beg, "/api/v2/") is None  # /api/v2/ is not in the map: /api/ is what a request finds
    assert parse_get_map("type=str, case=sensitive, found=no\n\n", "c.test") is None
    assert parse_get_map("Unknown map identifier. Please use #<id> or <file>.\n", "a.test") is None


def test_check_output() -> None:
    r = parse_check_output(S.CHECK_OUTPUT, 1)
    assert isinstance(r, CheckResult) and not r.ok and r.lines == (11, 13, 14)
    assert r.messages[0] == "[ALERT] config : parsing [bad.cfg:11] : unknown keyword 'bogus' in 'frontend' section"
    assert not any("NOTICE" in m for m in r.messages) and len(r.alerts) == 5 and r.warnings == ()
    ok = parse_check_output("[NOTICE]   (1) : haproxy version is 2.6\n[WARNING]  (1) : config : something\n", 0)
    assert ok.ok and ok.warnings == ("[WARNING] config : something",) and ok.lines == ()


def test_check_output_continuation_lines() -> None:
    out = "[ALERT]    (7) : config : parsing [x.cfg:3] : first\n   | more detail\nConfiguration file is valid\n"
    r = parse_check_output(out, 1)
    assert r.messages == ("[ALERT] config : parsing [x.cfg:3] : first", "   | more detail")


def test_config_lines_by_file() -> None:
    msgs = ["[ALERT] parsing [/d/haproxy.cfg:3] : x", "[ALERT] parsing [/d/hosts.map:7] : y", "[ALERT] [haproxy.cfg:9]"]
    assert config_lines(msgs) == (3, 7, 9)
    assert config_lines(msgs, "/d/haproxy.cfg") == (3, 9)


def test_proxy_lines_point_at_the_declaration() -> None:
    cfg = ("global\n    maxconn 1\ndefaults\n    mode http\nfrontend f\n    bind :80\nbackend b\n"
           "    server s 1.2.3.4:80\n")
    r = parse_check_output(S.CHECK_OUTPUT_PROXY, 1)
    assert proxy_lines(r.messages, cfg) == (5,)  # "Proxy 'f'" → line of "frontend f"; located messages skipped


def test_named_proxies_are_those_of_location_less_alerts() -> None:
    r = parse_check_output(S.CHECK_OUTPUT_PROXY, 1)
    assert named_proxies(r.messages) == ("f",)
    assert named_proxies(["[ALERT] config : parsing [x.cfg:3] : Proxy 'b': bad", "[WARNING] Proxy 'w': meh"]) == ()


# what the new config declares (render.Rendered.servers): IPv6 as the model writes it, free slots included
SERVERS: dict[tuple[str, str], tuple[str, int | None]] = {
    ("app", "s1"): ("10.0.0.1", 8080), ("app", "s2"): ("127.0.0.1", 1), ("app", "s3"): ("2001:db8::1", 80),
    ("app", "t1"): ("127.0.0.1", 1), ("app", "t2"): ("127.0.0.1", 1), ("l", "x"): ("10.0.0.9", 9),
}


def _state_line(be: str, srv: str, addr: str, port: int, admin: int = 0, weight: int = 1) -> str:
    return f"3 {be} 1 {srv} {addr} 2 {admin} {weight} 1 0 1 0 0 14 0 0 0 - {port} - 0 0 - - 0"


def test_filter_server_state_keeps_unmoved_servers_only() -> None:
    header = S.SERVERS_STATE.splitlines()[:2]
    lines = [
        _state_line("app", "s1", "10.0.0.1", 8080, weight=7),  # same as config: keep
        _state_line("app", "s2", "10.0.0.2", 9000, admin=4),  # filled at runtime, config frees it: drop
        _state_line("app", "s3", "2001:db8:0::1", 80, admin=8),  # same address written differently: keep
        _state_line("app", "t1", "127.0.0.1", 1, admin=5),  # free slot, still free: keep
        _state_line("gone", "s1", "10.0.0.1", 8080),  # backend no longer in the config: drop
    ]
    text, dropped = filter_server_state("\n".join(header + lines) + "\n", SERVERS)
    kept = [s.name for s in parse_servers_state(text)]
    assert kept == ["s1", "s3", "t1"]
    assert dropped == [("app", "s2"), ("gone", "s1")]
    assert text.startswith("1\n# be_id")


@pytest.mark.parametrize(("command", "answer", "error"), [
    ("set server b/s1 weight 5", "", None),
    ("set server b/s1 addr 127.0.0.2 port 8081",
     "IP changed from '127.0.0.1' to '127.0.0.2', port changed from '1' to '8081' by 'stats socket command'", None),
    ("set server b/s1 addr 127.0.0.2", "no need to change the addr by 'stats socket command'", None),
    ("set server b/s1 addr 127.0.0.3 port abc",
     "IP changed from '127.0.0.2' to '127.0.0.3', problem converting port 'abc' to an int by 'stats socket command'",
     "IP changed from '127.0.0.2' to '127.0.0.3', problem converting port 'abc' to an int by 'stats socket command'"),
    ("set server b/s1 addr nothost", "Invalid addr 'nothost' by 'stats socket command'",
     "Invalid addr 'nothost' by 'stats socket command'"),
    ("set server b/s1 weight abc", "Empty weight string empty or preceded by garbage",
     "Empty weight string empty or preceded by garbage"),
    ("set server b/s1 weight 300", "Absolute weight can only be between 0 and 256 inclusive.",
     "Absolute weight can only be between 0 and 256 inclusive."),
    ("set server b/nope weight 1", "No such server.", "No such server."),
    ("set server nope/s1 weight 1", "No such backend.", "No such backend."),
    ("set server bs1 weight 1", "Require 'backend/server'.", "Require 'backend/server'."),
    ("set server b/s1 state bogus", "'set server <srv> state' expects 'ready', 'drain' and 'maint'.",
     "'set server <srv> state' expects 'ready', 'drain' and 'maint'."),
    ("set map /m nokey v", "entry not found.", "entry not found."),
    ("del map /m a.com", "Key not found.", "Key not found."),
    ("add map /nomap k v", "Unknown map identifier. Please use #<id> or <file>.",
     "Unknown map identifier. Please use #<id> or <file>."),
    ("add server b/s3 127.0.0.1:80", "New server registered.", None),
    ("bogus", "Unknown command, but maybe one of the following ones is a better match:\n  show fd [num]  : dump",
     "Unknown command, but maybe one of the following ones is a better match:"),
    ("show servers state nope", "Can't find backend.", "Can't find backend."),
    ("show map /nomap", "Unknown map identifier. Please use #<id> or <file>.",
     "Unknown map identifier. Please use #<id> or <file>."),
    ("show servers state", S.SERVERS_STATE, None),
    ("show map /m", S.SHOW_MAP, None),
    ("show info", S.SHOW_INFO, None),
])
def test_answer_error(command: str, answer: str, error: str | None) -> None:
    assert answer_error(command, answer) == error
