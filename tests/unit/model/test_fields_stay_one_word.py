"""Property (issue #17): every field of every write endpoint (services, instances, Thalassa frontends with rules
and natives, backends with members, Lambda-Registry /generate bodies) is either refused with a ValidationError
naming that field, or rendered so that HAProxy's own split of the config (``model.cfgtokens``, the tokeniser
natives are held to) finds it as ONE word in its own place: the line is compared word for word with the line
expected from the stored record. A bounded sample of the accepted configs goes through real ``haproxy -c``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haplane.compose import compose, compose_table
from haplane.errors import ValidationError
from haplane.model.cfgtokens import split_line
from haplane.model.haproxy import Config
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, Service
from haplane.registry.payload import merge_payload, parse_payload
from haplane.render import render

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
HAVE_HAPROXY = Path(HAPROXY).exists()
CHECKS_PER_CASE = 3  # haproxy -c runs per case (the rest is the pure tokeniser comparison)

NASTY = "\n\r\t\v\f #'\"\\${}[]:;,/%&=?*!@~()<>|`^-" + "\x00\x7f" + "é\u2028\u00a0ß\U0001f600\ud800²"
text = st.one_of(
    st.text(max_size=24),
    st.text(alphabet=st.sampled_from("abcXYZ019.-_" + NASTY), max_size=16),
    st.sampled_from(["-i", "--", "-m", "-f", "-M", "-n", "-u", "\\x67lobal", '"global"', "'a'", "a b", "#x",
                     "$HOME", "${HOME}", "a.example.com", "/app", "/a/b", "x" * 120, "8" * 40, "²", "::1%lo",
                     "fe80::1%eth0", "[::1]:80", "127.0.0.2:81", "0x7f.1", "^/a$", "[a-z]+", "GET", "HTTP/1.1"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True),
    st.from_regex(r"-?/?[a-z0-9._~%-]{0,10}(/[a-z0-9%*+]{0,5})?", fullmatch=True),
)
number = st.one_of(st.integers(-5, 70000), st.sampled_from([2**63, 10**5000, 1.5, float("nan"), True]),
                   text)
Value = Any
Lines = list[tuple[str, ...]]


def words_of(cfg: str) -> Lines:
    return [w for w in (split_line(line).words for line in cfg.splitlines()) if w]


def section(lines: Lines, kind: str, name: str) -> Lines:
    """The lines of ``kind name`` (up to the next section)."""
    out: list[tuple[str, ...]] = []
    inside = False
    for w in lines:
        if w[0] in ("global", "defaults", "frontend", "backend", "listen", "userlist"):
            inside = w == (kind, name)
            continue
        if inside:
            out.append(w)
    return out


def first(lines: Lines, word: str) -> list[tuple[str, ...]]:
    return [w for w in lines if w[0] == word]


# --- what each record renders, word for word -----------------------------------------------------------------

def service_lines(svc: Service, inst: Instance, lines: Lines) -> None:
    be = section(lines, "backend", svc.name)
    assert be, f"no 'backend {svc.name}'"
    assert first(be, "balance") == [("balance", svc.balance)]
    if svc.cookie:
        assert first(be, "cookie")[0][:2] == ("cookie", svc.cookie)
    (server,) = [w for w in first(be, "server") if w[1] == "s1"]
    endpoint = f"[{inst.address}]:{inst.port}" if ":" in inst.address else f"{inst.address}:{inst.port}"
    assert server[:3] == ("server", "s1", endpoint), server
    if inst.weight != 1:
        assert server[3:5] == ("weight", str(inst.weight)), server
    h = svc.health
    if h is not None:
        send = ("http-check", "send", "meth", h.method, "uri", h.path, "ver", h.http_version)
        assert first(be, "http-check") == [send + (("hdr", "Host", h.host) if h.host else ())]
        assert first(be, "default-server")[0][1:] == ("inter", str(h.interval_ms), "fastinter",
                                                       str(min(h.interval_ms, 200)), "downinter",
                                                       str(min(h.interval_ms, 1000)), "rise", str(h.rise),
                                                       "fall", str(h.fall))
    fe = section(lines, "frontend", "http")
    acls = [w for w in first(fe, "acl") if svc.predicate and w[-1].rstrip("/") == svc.predicate.rstrip("/")]
    if svc.predicate and svc.mode == "host":
        assert [w[2:] for w in acls] == [("req.hdr(host),field(1,:),lower", "-m", "str", svc.predicate)], fe
    elif svc.predicate and svc.mode == "path":
        assert all(w[2] in ("path", "path_beg") and len(w) == 4 for w in acls) and acls, fe


def frontend_lines(fe: FrontendSpec, lines: Lines) -> None:
    sec = section(lines, "frontend", fe.name)
    assert sec, f"no 'frontend {fe.name}'"
    assert [w for w in first(sec, "bind")] == [
        ("bind", f"{'[' + a + ']' if ':' in a else a}:{p}") for a, p in fe.binds]
    for rule in fe.rules:
        if rule.backend != "b":  # a backend not defined (yet): the route is left out
            assert not any(w[:2] == ("use_backend", rule.backend) for w in sec)
            continue
        criterion = f"{rule.operation}({rule.header})" if rule.header else rule.operation
        expected = ("acl", criterion, *(("-i",) if rule.header else ()), "--", rule.value)
        acls = [w for w in first(sec, "acl") if w[2] == criterion and w[-1] == rule.value]
        assert [(w[0], *w[2:]) for w in acls] == [expected], (expected, sec)
        assert ("use_backend", rule.backend, "if", acls[0][1]) in sec
    for native in fe.natives:
        assert split_line(native).words in sec, native


def backend_lines(be: BackendSpec, lines: Lines) -> None:
    sec = section(lines, "backend", be.name)
    assert sec, f"no 'backend {be.name}'"
    servers = first(sec, "server")
    assert [w[2] for w in servers] == [f"[{m.host}]:{m.port}" if ":" in m.host else f"{m.host}:{m.port}"
                                       for m in be.members]
    if be.host is not None:
        assert ("http-request", "set-header", "Host", be.host) in sec
    for native in be.natives:
        assert split_line(native).words in sec, native


# --- the cases: a base record, one field set to the value, the field path an error must name ----------------

@dataclass(frozen=True)
class Case:
    field: str  # the path a refusal must name
    build: Callable[[Value], Config]  # the config, its words checked (ValidationError for a refused value)


def _service(field: str, value: Value) -> Config:
    base: dict[str, Any] = {"mode": "host", "predicate": "app.example.com", "port": 8080, "cookie": "SID",
                            "health": {"path": "/health", "http_version": "HTTP/1.1", "host": "app.example.com"}}
    if field == "name":
        svc = Service.from_dict({**base, "name": value})
    elif field.startswith("health."):
        svc = Service.from_dict({**base, "health": {**base["health"], field.split(".", 1)[1]: value}}, name="app")
    elif field == "predicate@path":
        svc = Service.from_dict({**base, "mode": "path", "predicate": value}, name="app")
    else:
        svc = Service.from_dict({**base, field: value}, name="app")
    inst = Instance.from_dict({"address": "127.0.0.2"}, service=svc.name, id="i1", default_port=svc.port or 8080)
    config = compose(Registry((svc,), (inst.with_slot(1),)))
    cfg = render(config)
    service_lines(svc, inst, words_of(cfg))
    return config


def _instance(field: str, value: Value) -> Config:
    svc = Service.from_dict({"mode": "host", "predicate": "app.example.com", "port": 8080}, name="app")
    raw: dict[str, Any] = {"address": "127.0.0.2", "weight": 5, field: value}
    inst = Instance.from_dict(raw, service="app", id="i1", default_port=svc.port)
    config = compose(Registry((svc,), (inst.with_slot(1),)))
    cfg = render(config)
    service_lines(svc, inst, words_of(cfg))
    return config


def _frontend(field: str, value: Value) -> Config:
    rule = {"type": "path", "operation": "path_beg", "value": "/a", "backend": "b"}
    hrule = {"type": "header", "header": "x-h", "operation": "hdr_dom", "value": "a.example.com", "backend": "b"}
    base: dict[str, Any] = {"name": "f", "bind": "127.0.0.1:18080", "backend": "b", "rules": [rule, hrule],
                            "natives": ["http-request set-header X-Via haplane"]}
    if field.startswith("rules[0]."):
        base["rules"] = [{**rule, field.split(".", 1)[1]: value}, hrule]
    elif field.startswith("rules[1]."):
        base["rules"] = [rule, {**hrule, field.split(".", 1)[1]: value}]
    elif field == "natives[1]":
        base["natives"] = [*base["natives"], value]
    else:
        base[field] = value
    fe = FrontendSpec.from_dict(base)
    be = BackendSpec.from_dict({"type": "static", "members": [{"host": "127.0.0.2", "port": 80}]}, name="b")
    config = compose(Registry((), (), (fe,), (be,)))
    cfg = render(config)
    frontend_lines(fe, words_of(cfg))
    return config


def _backend(field: str, value: Value) -> Config:
    base: dict[str, Any] = {"key": "b", "type": "static", "host": "b.example.com",
                            "members": [{"host": "127.0.0.2", "port": 80}], "natives": ["timeout server 5s"],
                            "health": {"uri": "/h", "interval": 2000}}
    if field.startswith("members[0]."):
        base["members"] = [{**base["members"][0], field.split(".", 1)[1]: value}]
    elif field.startswith("health."):
        base["health"] = {**base["health"], field.split(".", 1)[1]: value}
    elif field == "natives[1]":
        base["natives"] = [*base["natives"], value]
    elif field == "name":
        base["key"] = value
    else:
        base[field] = value
    be = BackendSpec.from_dict(base)
    fe = FrontendSpec.from_dict({"bind": "127.0.0.1:18080", "backend": be.name}, name="f")
    config = compose(Registry((), (), (fe,), (be,)))
    cfg = render(config)
    backend_lines(be, words_of(cfg))
    return config


def _generate(field: str, value: Value) -> Config:
    payload: dict[str, Any] = {"table": "t", "running": [], "candidates": [{
        "serviceName": "svc", "configMode": "host", "predicate": "a.example.com", "cookie": "SID",
        "containers": [{"id": "c1", "ip": "127.0.0.2:8080"}]}]}
    cand = payload["candidates"][0]
    if field.startswith("candidates[0].containers[0]."):
        cand["containers"][0][field.rsplit(".", 1)[1]] = value
    elif field == "candidates[0].predicate@path":
        cand["configMode"] = "path"
        cand["predicate"] = value
    elif field == "table":
        payload["table"] = value
    else:
        cand[field.rsplit(".", 1)[1]] = value
    table, _ = merge_payload(parse_payload(payload), {})
    config = compose_table(list(table.values()))
    cfg = render(config)
    lines = words_of(cfg)
    (ts,) = table.values()
    svc = ts.service
    be = section(lines, "backend", svc.name)
    assert be, cfg
    if svc.cookie:
        assert first(be, "cookie") == [("cookie", svc.cookie, "prefix", "nocache")]
    for c, server in zip(ts.containers, first(be, "server"), strict=True):
        endpoint = f"[{c.address}]:{c.port}" if ":" in c.address else f"{c.address}:{c.port}"
        assert server[:3] == ("server", c.id, endpoint), server
        assert server[3:5] == ("cookie", c.id) if svc.cookie else "cookie" not in server, server
    acls = first(section(lines, "frontend", "http") or lines, "acl")
    if svc.predicate and svc.mode == "host":
        assert [w[2:] for w in acls] == [("req.hdr(host),field(1,:),lower", "-m", "str", svc.predicate)]
    return config


def _cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for f in ("name", "predicate", "predicate@path", "port", "cookie", "balance", "hsts", "health.path",
              "health.host", "health.method", "health.http_version", "health.interval_ms", "health.rise",
              "health.fall"):
        expected = "predicate" if f == "predicate@path" else f
        cases[f"services.{f}"] = Case(expected, lambda v, f=f: _service(f, v))
    for f in ("address", "port", "weight", "weight_override", "slot", "version", "zone", "group", "source",
              "hostname", "pid", "state", "ttl"):
        cases[f"instances.{f}"] = Case(f, lambda v, f=f: _instance(f, v))
    for f in ("name", "bind", "backend", "mode", "keepalive", "rules[0].value", "rules[0].operation",
              "rules[0].backend", "rules[1].value", "rules[1].header", "natives[1]"):
        cases[f"frontends.{f}"] = Case(f, lambda v, f=f: _frontend(f, v))
    for f in ("name", "host", "balance", "mode", "members[0].host", "members[0].port", "health.uri",
              "health.interval", "health.method", "natives[1]"):
        expected = {"health.uri": "health.path", "health.interval": "health.interval_ms"}.get(f, f)
        cases[f"backends.{f}"] = Case(expected, lambda v, f=f: _backend(f, v))
    for f in ("table", "candidates[0].serviceName", "candidates[0].predicate", "candidates[0].predicate@path",
              "candidates[0].cookie", "candidates[0].containers[0].id", "candidates[0].containers[0].ip"):
        expected = f.removesuffix("@path")
        cases[f"generate.{f}"] = Case(expected, lambda v, f=f: _generate(f, v))
    return cases


CASES = _cases()
NUMERIC = {"port", "weight", "weight_override", "slot", "pid", "ttl", "hsts", "interval_ms", "rise", "fall",
           "interval"}
_checked: dict[str, int] = {}


def haproxy_check(cfg: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "haproxy.cfg")
        path.write_text(cfg)
        return subprocess.run([HAPROXY, "-c", "-q", "-f", str(path)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_field_is_refused_by_name_or_stays_one_word_in_its_place(case: str, data: st.DataObject) -> None:
    c = CASES[case]
    leaf = c.field.rsplit(".", 1)[-1].split("@")[0]
    value = data.draw(number if leaf in NUMERIC else text, label=case)
    try:
        config = c.build(value)
    except ValidationError as exc:
        assert exc.field == c.field or exc.field.startswith(c.field + "["), (case, exc.field, str(exc))
        assert str(exc).startswith(exc.field + ":")
        return
    cfg = render(config)
    # no value opened a line, a section or a comment, or expanded a variable
    for line in cfg.splitlines()[1:]:
        parsed = split_line(line)
        assert not parsed.comment and not parsed.env and not parsed.scope, line
    if HAVE_HAPROXY and _checked.get(case, 0) < CHECKS_PER_CASE:
        _checked[case] = _checked.get(case, 0) + 1
        result = haproxy_check(render(config, resolve=False))  # as the API checks: no DNS query
        assert result.returncode in (0, 2), (case, value, result.stdout, result.stderr)
