"""Parsers of what HAProxy prints. PURE: text in, ``model.observed`` values out; no I/O.

Formats are those of HAProxy 2.6 (see docs/haproxy-notes.md for real samples):
- ``show servers state`` (format version 1, space separated, ``#`` header),
- ``show stat`` (CSV with a ``# pxname,svname,...`` header),
- ``show info`` (``Name: value`` lines),
- the master CLI's ``show proc`` (fixed columns, ``# workers`` / ``# old workers`` / ``# programs`` sections),
- ``show map`` (``0x<ref> <key> <value>`` lines), ``get map`` (the entry a lookup finds),
- ``haproxy -c`` (``[ALERT]    (pid) : config : parsing [file.cfg:12] : ...`` lines).

Unknown or malformed lines are skipped rather than fatal: these parsers feed a reconcile loop that must
keep working when a newer HAProxy adds a column. Whatever the text (garbage, cut short, huge numbers, NUL), a
parser returns a value or raises ``HAProxyParseError`` (only ``parse_show_proc`` does: an answer without a master
line is no ``show proc`` answer), and works in time linear in the text (tests/unit/haproxy/test_parse_fuzz.py).
"""

from __future__ import annotations

import csv
import ipaddress
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Literal

from haplane.errors import HAProxyParseError
from haplane.model.observed import CheckResult, Info, Proc, ProcInfo, ServerState, StatRow

__all__ = [
    "answer_error", "config_lines", "filter_server_state", "named_proxies", "parse_check_output", "parse_info",
    "parse_kv", "parse_map_list", "parse_servers_state", "parse_show_map", "parse_show_proc", "parse_stat",
    "parse_uptime", "proxy_lines",
]


# --- show servers state ---------------------------------------------------------------------------------

def _int(text: str, default: int = 0) -> int:
    try:
        return int(text)
    except ValueError:
        return default


_STATE_FIELDS = ("be_id", "be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state",
                 "srv_uweight", "srv_iweight", "srv_time_since_last_change", "srv_check_status", "srv_check_result",
                 "srv_check_health", "srv_check_state", "srv_agent_state", "srv_port", "srv_fqdn", "srv_check_port",
                 "srv_check_addr")


def parse_servers_state(text: str) -> list[ServerState]:
    """``show servers state [backend]`` → one ``ServerState`` per server, in HAProxy's order.

    Columns are looked up by the names on the ``#`` header line, so a column added by a later format
    does not shift the others. About 2 µs a server (10,000 servers: ~25 ms). A line that does not fit the
    header is skipped; text without the header and its columns (HAProxy always prints it, servers or not) raises
    ``HAProxyParseError``: no servers is not what it says, and the agent must not plan from it."""
    out: list[ServerState] = []
    pick: Callable[[list[str]], tuple[str, ...]] | None = None
    header = False
    width = 0
    append = out.append
    for line in text.split("\n"):
        if not line:
            continue
        if line[0] == "#":
            names = line[1:].split()
            if names and names[0] == "be_id":
                pos = {n: i for i, n in enumerate(names)}
                header = all(f in pos for f in _STATE_FIELDS[:16])
                if header:
                    idx = [pos.get(f, -1) for f in _STATE_FIELDS]  # -1: a "-" appended to every line
                    width = max(idx) + 1
                    pick = operator.itemgetter(*idx)
            continue
        if pick is None:
            continue  # the format version line ("1") comes before the header
        p = line.split(" ")
        if len(p) < width:
            continue
        p.append("-")
        try:
            be_id, be, sid, name, addr, op, adm, uw, iw, since, cs, cr, ch, cst, ast, port, fq, cport, caddr = pick(p)
            append(ServerState(int(be_id), be, int(sid), name, addr, int(op), int(adm), int(uw), int(iw),
                               int(since), int(cs), int(cr), int(ch), int(cst), int(ast), int(port),
                               None if fq == "-" else fq, _int(cport), None if caddr in ("-", "") else caddr))
        except ValueError:
            continue
    if not header and text.strip():
        raise HAProxyParseError(f"not a show servers state answer (no header line with its columns): "
                                f"{text[:120]!r}")
    return out


# --- show stat ------------------------------------------------------------------------------------------

_STAT_TYPES: Mapping[str, Literal["frontend", "backend", "server", "listener"]] = MappingProxyType(
    {"0": "frontend", "1": "backend", "2": "server", "3": "listener"})


def _oint(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_stat(text: str) -> list[StatRow]:
    """``show stat`` (CSV) → one ``StatRow`` per frontend, backend, server and listener row."""
    lines = [ln for ln in text.splitlines() if ln]
    if not lines or not lines[0].startswith("#"):
        return []
    header = [h.strip() for h in lines[0].lstrip("#").split(",")]
    out: list[StatRow] = []
    rows = csv.reader(lines[1:])
    while True:
        try:
            values = next(rows)
        except StopIteration:
            break
        except csv.Error:  # a field over csv's limit, say: that row is skipped, the reader goes on with the next
            continue
        raw = {h: v for h, v in zip(header, values, strict=False) if h and h != "-"}
        if "pxname" not in raw or "svname" not in raw:
            continue
        out.append(_stat_row(raw))
    return out


def _stat_row(raw: dict[str, str]) -> StatRow:
    def n(name: str) -> int:
        return _oint(raw.get(name)) or 0

    return StatRow(
        pxname=raw["pxname"], svname=raw["svname"], type=_STAT_TYPES.get(raw.get("type", ""), "server"),
        status=raw.get("status", ""), weight=_oint(raw.get("weight")), uweight=_oint(raw.get("uweight")),
        scur=n("scur"), smax=n("smax"), slim=_oint(raw.get("slim")), stot=n("stot"), rate=n("rate"),
        req_rate=n("req_rate"), req_tot=n("req_tot"), qcur=n("qcur"), bin=n("bin"), bout=n("bout"),
        ereq=n("ereq"), econ=n("econ"), eresp=n("eresp"), wretr=n("wretr"), wredis=n("wredis"),
        hrsp_1xx=n("hrsp_1xx"), hrsp_2xx=n("hrsp_2xx"), hrsp_3xx=n("hrsp_3xx"), hrsp_4xx=n("hrsp_4xx"),
        hrsp_5xx=n("hrsp_5xx"), hrsp_other=n("hrsp_other"),
        qtime=n("qtime"), ctime=n("ctime"), rtime=n("rtime"), ttime=n("ttime"),
        check_status=raw.get("check_status") or None, check_code=_oint(raw.get("check_code")),
        check_duration=_oint(raw.get("check_duration")), lastchg=_oint(raw.get("lastchg")),
        downtime=_oint(raw.get("downtime")), chkfail=n("chkfail"), act=n("act"), bck=n("bck"),
        addr=raw.get("addr") or None, cookie=raw.get("cookie") or None, mode=raw.get("mode") or None,
        raw=MappingProxyType(raw),
    )


# --- show info ------------------------------------------------------------------------------------------

def parse_kv(text: str) -> dict[str, str]:
    """``Name: value`` lines (``show info``) → a dict, in order."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


def parse_info(text: str) -> Info:
    raw = parse_kv(text)

    def n(name: str) -> int:
        return _oint(raw.get(name)) or 0

    return Info(
        version=raw.get("Version", ""), pid=n("Pid"), uptime_sec=n("Uptime_sec"), nbthread=n("Nbthread"),
        maxconn=n("Maxconn"), curr_conns=n("CurrConns"), cum_conns=n("CumConns"), cum_req=n("CumReq"),
        conn_rate=n("ConnRate"), sess_rate=n("SessRate"), idle_pct=n("Idle_pct"), stopping=n("Stopping") != 0,
        jobs=n("Jobs"), raw=MappingProxyType(raw),
    )


# --- master CLI: show proc ------------------------------------------------------------------------------

_UPTIME = re.compile(r"^(?:(\d+)d)?\s*(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_FAILED = re.compile(r"\[failed:([0-9]+)\]")


def parse_uptime(text: str) -> int:
    """``0d00h02m07s`` (``show proc``) or ``0d 0h00m02s`` (``show info``) → seconds; 0 if unreadable."""
    m = _UPTIME.match(text.strip())
    if not m:
        return 0
    try:
        d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    except ValueError:  # more digits than int() takes
        return 0
    return ((d * 24 + h) * 60 + mi) * 60 + s


def parse_show_proc(text: str) -> ProcInfo:
    """The master CLI's ``show proc`` → ``ProcInfo``. Raises ``HAProxyParseError`` (a ``ValueError``) if there is
    no master line (the text is not a ``show proc`` answer)."""
    section = "head"
    master: Proc | None = None
    workers: list[Proc] = []
    old: list[Proc] = []
    programs: list[Proc] = []
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
            if title in ("workers", "old workers", "programs"):
                section = title
            continue
        proc = _proc(line)
        if proc is None:
            continue
        if section == "head" and proc.type == "master":
            master = proc
        elif section == "workers":
            workers.append(proc)
        elif section == "old workers":
            old.append(proc)
        elif section == "programs":
            programs.append(proc)
    if master is None:
        raise HAProxyParseError(f"not a show proc answer: {text[:200]!r}")
    return ProcInfo(master=master, workers=tuple(workers), old_workers=tuple(old), programs=tuple(programs))


def _digits(word: str) -> bool:
    return word.isascii() and word.isdigit() and len(word) <= 20


def _proc(line: str) -> Proc | None:
    """One ``show proc`` line (``<pid> <type> <reloads> [failed: N] <uptime> [<version>]``), or None. Words, not
    one regular expression: a regex with adjacent optional parts backtracks quadratically on a long line."""
    words = line.split()
    if len(words) < 4 or not _digits(words[0]) or not _digits(words[2]):
        return None
    rest = words[3:]
    failed = 0
    if rest[0].startswith("[failed:"):
        tag = rest[0] if rest[0].endswith("]") else " ".join(rest[:2])
        rest = rest[1:] if rest[0].endswith("]") else rest[2:]
        m = _FAILED.fullmatch(tag.replace(" ", ""))
        if m is None:
            return None
        failed = int(m.group(1)) if _digits(m.group(1)) else 0
    if not 1 <= len(rest) <= 2:
        return None
    return Proc(pid=int(words[0]), type=words[1], reloads=int(words[2]), uptime_sec=parse_uptime(rest[0]),
                version=rest[1] if len(rest) > 1 else "", failed_reloads=failed)


# --- maps -----------------------------------------------------------------------------------------------

def parse_show_map(text: str) -> dict[str, str]:
    """``show map <file>`` → {key: value}. Lines are ``0x<ref> <key> <value>``; the value is the rest of
    the line. When a key appears twice (``add map`` does not check), HAProxy uses the first: so do we."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("0x"):
            continue
        parts = line.split(" ", 2)
        if len(parts) < 2:
            continue
        out.setdefault(parts[1], parts[2] if len(parts) > 2 else "")
    return out


_GET_MAP = re.compile(r'found=yes, idx=\w+, key="([^"]*)", value="([^"]*)"')


def parse_get_map(text: str, key: str) -> str | None:
    """``get map <file> <key>`` → the value of the entry whose key is ``key``, or None. HAProxy answers with the
    entry its rules would pick (``type=str ... found=yes, idx=tree, key="a.test", value="web", type="str"``, a line
    per way the map is looked up); a prefix map (``map_beg``) may find a shorter key, which is not ``key``'s entry."""
    for line in text.splitlines():
        m = _GET_MAP.search(line)
        if m and m.group(1) == key:
            return m.group(2)
    return None


_MAP_LIST = re.compile(r"^(-?\d+) \((.*)\) ")


def parse_map_list(text: str) -> dict[str, int]:
    """``show map`` (no argument) → {file: id} of the maps HAProxy has loaded."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _MAP_LIST.match(line)
        if m:
            n = _oint(m.group(1))
            if n is not None:
                out[m.group(2)] = n
    return out


# --- haproxy -c -----------------------------------------------------------------------------------------

_LEVEL = re.compile(r"^\[(ALERT|WARNING|NOTICE|DIAG)\]\s+(?:\(\d+\)\s+)?:\s*")
_LOCATION = re.compile(r"\[([^\[\]\s]+):(\d+)\]")
_PROXY = re.compile(r"\b(?:Proxy|proxy|frontend|backend|listen) '([^']+)'")
_SECTION = re.compile(r"^\s*(frontend|backend|listen|defaults|peers|resolvers|userlist|program|cache|ring)\s+(\S+)")


def parse_check_output(output: str, returncode: int) -> CheckResult:
    """``haproxy -c`` output (stdout and stderr together) and its exit code → ``CheckResult``.

    Keeps HAProxy's ALERT and WARNING lines (with continuation lines), drops NOTICEs, and normalises the
    prefix to ``[ALERT] config : ...`` (the pid is noise). ``lines`` holds every ``[file:N]`` line number
    whose file is not a map or other side file (see ``config_lines`` to pick one file)."""
    messages: list[str] = []
    keep = False
    for line in output.splitlines():
        m = _LEVEL.match(line)
        if m:
            keep = m.group(1) in ("ALERT", "WARNING")
            if keep:
                messages.append(f"[{m.group(1)}] {line[m.end():].rstrip()}")
        elif keep and line.strip() and line[:1].isspace():
            messages.append(line.rstrip())
        else:
            keep = False
    ok = returncode == 0
    return CheckResult(ok=ok, messages=tuple(messages), lines=config_lines(messages))


def config_lines(messages: Iterable[str], file: str | None = None) -> tuple[int, ...]:
    """Line numbers named as ``[path:N]`` in ``messages`` (sorted, unique). With ``file``, only those whose
    path is ``file`` or ends with ``/`` + its base name (HAProxy prints the path it was given)."""
    base = file.rsplit("/", 1)[-1] if file else None
    found: set[int] = set()
    for msg in messages:
        for m in _LOCATION.finditer(msg):
            path = m.group(1)
            if base is not None and path != file and path.rsplit("/", 1)[-1] != base:
                continue
            n = _oint(m.group(2))
            if n is not None:
                found.add(n)
    return tuple(sorted(found))


def named_proxies(messages: Iterable[str]) -> tuple[str, ...]:
    """The proxies (frontends, backends) that ALERTs without a ``[file:N]`` location name, in order, once each
    (``Proxy 'f': unable to find required use_backend: 'nope'.`` → ``f``)."""
    found: dict[str, None] = {}
    for msg in messages:
        if msg.startswith("[ALERT]") and not _LOCATION.search(msg):
            found.update((m.group(1), None) for m in _PROXY.finditer(msg))
    return tuple(found)


def proxy_lines(messages: Sequence[str], config_text: str) -> tuple[int, ...]:
    """Lines declaring the proxies that location-less messages name (``Proxy 'f': unable to find required
    use_backend: 'nope'.``): so every ALERT points at some line an owner can be found for."""
    declared: dict[str, int] = {}
    for n, line in enumerate(config_text.splitlines(), 1):
        m = _SECTION.match(line)
        if m:
            declared.setdefault(m.group(2), n)
    found: set[int] = set()
    for msg in messages:
        if not msg.startswith("[ALERT]") or _LOCATION.search(msg):
            continue
        for m in _PROXY.finditer(msg):
            if m.group(1) in declared:
                found.add(declared[m.group(1)])
    return tuple(sorted(found))


# --- server-state file vs. a new config -----------------------------------------------------------------

def _norm_addr(addr: str) -> str:
    try:
        return ipaddress.ip_address(addr).compressed
    except ValueError:
        return addr


def filter_server_state(state_text: str, servers: Mapping[tuple[str, str], tuple[str, int | None]]
                        ) -> tuple[str, list[tuple[str, str]]]:
    """Keep from a ``show servers state`` dump only the servers the new config declares at the same address
    and port (``servers``: (backend, server) → (address, port), as ``render.Rendered.servers`` gives them);
    return the filtered dump and the (backend, server) pairs dropped.

    Why: HAProxy 2.6 applies a state file's port, weight and admin/op state to a server whose config
    address is an IP literal, but never its address (``srv_addr`` only feeds ``init-addr last`` of FQDN
    servers). A slot the new config points elsewhere would come back as *config address + old port*, and
    keep the old op/admin state. Dropping its line lets the config win whole for that server, while
    servers the config leaves in place keep their runtime weight, drain and maintenance."""
    wanted: dict[tuple[str, str], tuple[str, int | None]] = {}
    norm: dict[str, str] = {}  # addresses repeat (free slots): normalise each once
    for key, (address, port) in servers.items():
        wanted[key] = (norm.get(address) or norm.setdefault(address, _norm_addr(address)), port)
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    cols: tuple[int, int, int, int] | None = None
    for line in state_text.split("\n"):
        if not line:
            continue
        if line[0] == "#" or cols is None:
            names = line[1:].split() if line[0] == "#" else []
            if names[:1] == ["be_id"]:
                pos = {n: i for i, n in enumerate(names)}
                if all(c in pos for c in ("be_name", "srv_name", "srv_addr", "srv_port")):
                    cols = (pos["be_name"], pos["srv_name"], pos["srv_addr"], pos["srv_port"])
            if line[0] == "#" or line.strip() == "1":  # the header, comments, the format version
                kept.append(line)
            continue
        p = line.split(" ")
        if len(p) <= max(cols):
            continue
        key = (p[cols[0]], p[cols[1]])
        want = wanted.get(key)
        if want is not None:
            addr = p[cols[2]]
            addr = norm.get(addr) or norm.setdefault(addr, _norm_addr(addr))
            if want[0] == addr and (want[1] is None or str(want[1]) == p[cols[3]]):
                kept.append(line)
                continue
        dropped.append(key)
    if cols is None:  # not a state dump HAProxy can read back: none at all (the config's states win)
        return "", []
    return "\n".join(kept) + "\n", dropped


# --- Runtime API answers --------------------------------------------------------------------------------

# Commands that change something answer nothing on success, except these informational answers.
_MUTATING = frozenset({"set", "add", "del", "clear", "enable", "disable", "commit", "prepare", "abort", "new",
                       "update", "shutdown", "trace", "experimental-mode", "expert-mode"})
_MUTATION_OK = re.compile(r"^(IP changed from|no need to change the addr|New server registered|Server deleted"
                          r"|New version created|Done\.|Transaction|Committing|Success)")
_MUTATION_PARTIAL = re.compile(r"problem|invalid|failed|error|cannot|can't|unable", re.IGNORECASE)
# Answers of read commands that are errors (the first line is checked).
_READ_ERROR = re.compile(
    r"^(No such |Can't find|Unknown |Require |usage:|Usage:|Permission denied|Invalid |Missing |Unable |"
    r"Failed |Not enough|'[^']*' (?:expects|requires)|This command|entry not found|Key not found)")


def answer_error(command: str, answer: str) -> str | None:
    """The error in ``answer`` to ``command``, or None when HAProxy accepted it.

    HAProxy's CLI has no status code: a command that changes state (``set``, ``add``, ``del``, ...) answers
    nothing on success, or one of a few informational lines (``IP changed from ...``); anything else is an
    error (``No such server.``, ``Require 'backend/server'.``, ``Absolute weight can only be between 0 and 256
    inclusive.``). ``set server addr`` can half-succeed (``IP changed ..., problem converting port``): that
    is an error too. A read command's answer is an error when its first line is one of HAProxy's error
    phrasings."""
    start = len(answer) - len(answer.lstrip()) if answer[:1].isspace() else 0
    if start == len(answer):
        return None  # empty: success
    end = answer.find("\n", start)
    first = answer[start:end if end >= 0 else len(answer)].rstrip()
    verb = command.split(" ", 1)[0].lower()
    if verb in _MUTATING:
        text = answer.strip()  # mutation answers are one short line: copying is cheap
        if _MUTATION_OK.match(text) and not _MUTATION_PARTIAL.search(text):
            return None
        return first
    if verb == "help" or verb == "prompt" or verb == "quit":
        return None
    if _READ_ERROR.match(first):
        return first
    return None
