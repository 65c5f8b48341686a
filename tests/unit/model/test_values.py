"""Validation where values enter: every rejection names the field, shows the value and says the rule."""

from __future__ import annotations

import pytest

from haplane.errors import ValidationError
from haplane.model import values as v
from haplane.model.records import BackendSpec, FrontendSpec, HealthCheck, Instance, Service


@pytest.mark.parametrize("good", ["app1", "App_1.v2-x", "a" * 100])
def test_names_accepted(good: str) -> None:
    assert v.name(good, "f") == good


@pytest.mark.parametrize("bad", ["", "-app", "app 1", "app\n", "a#b", "a'b", 'a"b', "a" * 101, "a/b", "a:b"])
def test_names_rejected_with_field_value_rule(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        v.name(bad, "services[0].name")
    assert exc.value.field == "services[0].name"
    assert repr(bad) in str(exc.value)
    assert "valid name" in str(exc.value)


def test_host_names() -> None:
    assert v.host_name("First.Example.COM", "f") == "first.example.com"
    assert v.host_name("example.com.", "f") == "example.com"
    for bad in ["a.com\n  stats enable", "-a.com", "a..com", "a_b.com", "a" * 64 + ".com", "*.a.com", ""]:
        with pytest.raises(ValidationError, match="is not a valid host name"):
            v.host_name(bad, "predicate")


def test_issue_example_message() -> None:
    with pytest.raises(ValidationError) as exc:
        v.host_name("a.com\n  stats enable", "candidates[1].predicate")
    assert str(exc.value) == "candidates[1].predicate: 'a.com\\n  stats enable' is not a valid host name"


def test_paths() -> None:
    assert v.path_prefix("api", "p") == "/api"
    assert v.path_prefix("/api", "p") == "/api"  # not doubled
    assert v.path_prefix("/a/b-c_d.e~f%20", "p") == "/a/b-c_d.e~f%20"
    for bad in ["/a b", "/a#b", "/a'b", '/a"b', "/a\\b", "/${X}", "//a", "/a\nb"]:
        with pytest.raises(ValidationError, match="valid URL path"):
            v.path_prefix(bad, "p")


def test_cookie_names() -> None:
    assert v.cookie_name("JSESSIONID", "c") == "JSESSIONID"
    for bad in ["a b", "a;b", "a=b", "", "a\n"]:
        with pytest.raises(ValidationError, match="valid cookie name"):
            v.cookie_name(bad, "cookie")


@pytest.mark.parametrize(("raw", "expected"), [
    ("192.168.1.9:80", ("192.168.1.9", 80)),
    ("192.168.1.9", ("192.168.1.9", 8080)),
    ("[::1]:81", ("::1", 81)),
    ("::1", ("::1", 8080)),
    ("Host.Example.com:90", ("host.example.com", 90)),
])
def test_address_port(raw: str, expected: tuple[str, int]) -> None:
    assert v.address_port(raw, "ip", 8080) == expected


@pytest.mark.parametrize("bad", ["192.168.1.300", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:x", "a b:80",
                                 "[::1", "1.2.3.4:80 check"])
def test_address_port_rejected(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        v.address_port(bad, "running[0].ip", 80)
    assert exc.value.field == "running[0].ip"


def test_address_without_any_port() -> None:
    with pytest.raises(ValidationError, match="has no port"):
        v.address_port("10.0.0.1", "ip", None)


def test_ports_and_weights() -> None:
    assert v.port("80", "p") == 80
    for bad in [0, 65536, -1, True, "80x", 1.5]:
        with pytest.raises(ValidationError):
            v.port(bad, "port")
    assert v.weight(0, "w") == 0
    with pytest.raises(ValidationError):
        v.weight(257, "weight")


def test_native_lines() -> None:
    assert v.native_line("  http-request deny if { path /x }", "n") == "http-request deny if { path /x }"
    for bad in ["a\nb", "backend evil", "  listen x", "", "x\rfrontend y"]:
        with pytest.raises(ValidationError):
            v.native_line(bad, "natives[0]")


def test_regex() -> None:
    assert v.regex("^/article/[^/]*$", "r") == "^/article/[^/]*$"
    with pytest.raises(ValidationError):
        v.regex("it's", "value")
    with pytest.raises(ValidationError, match="not a valid regex"):
        v.regex("([", "value")


def test_service_record_roundtrip_and_errors() -> None:
    svc = Service.from_dict({"mode": "path", "predicate": "api", "port": 80, "cookie": "SID",
                             "balance": "leastconn", "health": {"uri": "/health"}}, name="api")
    assert svc.predicate == "/api"
    assert Service.from_dict(svc.to_dict()) == svc
    with pytest.raises(ValidationError) as exc:
        Service.from_dict({"mode": "udp"}, name="x")
    assert exc.value.field == "mode"
    with pytest.raises(ValidationError, match="not a known field"):
        Service.from_dict({"predicat": "a.com"}, name="x")


def test_health_check_http11_needs_host() -> None:
    with pytest.raises(ValidationError) as exc:
        HealthCheck.from_dict({"httpVersion": "HTTP/1.1"}, "health")
    assert exc.value.field == "health.host"
    h = HealthCheck.from_dict({}, "health")
    assert (h.method, h.path, h.http_version, h.interval_ms) == ("GET", "/", "HTTP/1.0", 2000)


def test_instance_record() -> None:
    inst = Instance.from_dict({"address": "127.0.0.2:8080", "version": "1.0.0", "zone": "a", "ttl": 10},
                              service="api", id="i1")
    assert (inst.address, inst.port, inst.weight, inst.ttl) == ("127.0.0.2", 8080, 10, 10.0)
    assert Instance.from_dict(inst.to_dict()) == inst
    with pytest.raises(ValidationError) as exc:
        Instance.from_dict({"address": "127.0.0.2"}, service="api", id="i1")
    assert exc.value.field == "address"


def test_thalassa_frontend_and_backend() -> None:
    fe = FrontendSpec.from_dict({"bind": "*:8080,127.0.0.1:80", "backend": "live", "rules": [
        {"type": "header", "header": "host", "operation": "hdr_dom", "value": "staged.myapp.com",
         "backend": "staged"},
        {"type": "path", "operation": "path_reg", "value": "^/article/[^/]*$", "backend": "live"}]},
        name="myapp")
    assert fe.binds == (("*", 8080), ("127.0.0.1", 80))
    assert FrontendSpec.from_dict(fe.to_dict()) == fe
    with pytest.raises(ValidationError) as exc:
        FrontendSpec.from_dict({"bind": "*:80", "rules": [{"type": "path", "operation": "hdr_dom",
                                                           "value": "x", "backend": "b"}]}, name="f")
    assert exc.value.field == "rules[0].operation"
    be = BackendSpec.from_dict({"type": "dynamic", "name": "myapp", "version": "1.0.0"}, name="live")
    assert (be.service, be.version) == ("myapp", "1.0.0")
    assert BackendSpec.from_dict(be.to_dict()) == be
    st = BackendSpec.from_dict({"type": "static", "members": [{"host": "127.0.0.2", "port": 80}]}, name="s")
    assert st.members[0].port == 80
