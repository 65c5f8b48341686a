"""render_config: the text with what render knows about it (line owners, servers, maps at other paths)."""

from __future__ import annotations

from haplane.compose import ComposeOptions, compose
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, Service
from haplane.render import compile_template, default_template_text, render, render_config

OPTIONS = ComposeOptions(min_slots=2, host_map="/s/hosts.map", focus_zones=frozenset({"a"}))


def registry() -> Registry:
    services = (Service("web", "host", "web.test"), Service("api", "path", "/api"))
    instances = (Instance("w1", "web", "127.0.0.2", 80, slot=1, zone="a"),
                 Instance("a1", "api", "::1", 9000, slot=1, zone="b"))
    frontends = (FrontendSpec.from_dict({"bind": "127.0.0.1:8181", "backend": "static",
                                         "rules": [{"type": "path", "operation": "path_beg", "value": "/s",
                                                    "backend": "static"}],
                                         "natives": ["http-request set-header X-Via haplane"]}, name="edge"),)
    backends = (BackendSpec.from_dict({"type": "static", "members": [{"host": "127.0.0.6", "port": 80}],
                                       "natives": ["timeout server 20s"]}, name="static"),)
    return Registry(services, instances, frontends, backends)


def owner_of(rendered_text: str, owners: tuple[str, ...], line: str) -> str:
    """The owner of the first line that is ``line`` (stripped)."""
    lines = [ln.strip() for ln in rendered_text.splitlines()]
    return owners[lines.index(line)]


def test_every_line_has_the_owner_it_was_rendered_from() -> None:
    r = render_config(compose(registry(), OPTIONS))
    owners = r.line_owners
    assert len(owners) == len(r.text.splitlines())
    text = r.text
    assert owner_of(text, owners, "global") == ""
    assert owner_of(text, owners, "maxconn 4096") == ""
    assert owner_of(text, owners, "frontend http") == "frontend:http"
    assert owner_of(text, owners, "backend web") == "service:web"
    assert owner_of(text, owners, "server s1 127.0.0.2:80 weight 10 check") == "service:web"
    assert owner_of(text, owners, "server s1 [::1]:9000 weight 10 check") == "service:api"  # api_fallback
    assert owner_of(text, owners, "frontend edge") == "frontend:edge"
    assert owner_of(text, owners, "http-request set-header X-Via haplane") == "frontend:edge"
    assert owner_of(text, owners, "backend static") == "backend:static"
    assert owner_of(text, owners, "timeout server 20s") == "backend:static"
    api_route = next(f for f in r.config.frontends if f.name == "http").routes[0]
    acl_lines = [n for n, ln in enumerate(text.splitlines()) if api_route.acl_name in ln]
    assert acl_lines and {owners[n] for n in acl_lines} == {"service:api"}  # acl, fallback and use_backend


def test_owners_of_lines_and_of_proxies() -> None:
    r = render_config(compose(registry(), OPTIONS))
    lines = r.text.splitlines()
    n = lines.index("    timeout server 20s") + 1
    assert r.owners([n]) == {"backend:static"}
    assert r.owners([1, n]) == {"", "backend:static"}
    assert r.owners(proxies=["web", "edge", "unknown"]) == {"service:web", "frontend:edge"}
    assert r.owners([10_000]) == {""}


def test_an_operator_template_is_traced_too() -> None:
    tpl = compile_template(default_template_text().replace("    balance {{ be.balance }}",
                                                           "    balance {{ be.balance }}\n    bogus-directive on"))
    r = render_config(compose(registry(), OPTIONS), tpl)
    bogus = [n for n, ln in enumerate(r.text.splitlines()) if ln.strip() == "bogus-directive on"]
    assert [r.line_owners[n] for n in bogus] == ["service:api", "service:api", "service:web", "service:web",
                                                 "backend:static"]  # api, api_fallback, web, web_fallback, static


def test_servers_are_the_model_s() -> None:
    r = render_config(compose(registry(), OPTIONS))
    free = ("127.0.0.1", 1)
    assert r.servers == {
        ("api", "s1"): free, ("api", "s2"): free,  # api's instance is outside the focus zone: in its fallback
        ("api_fallback", "s1"): ("::1", 9000), ("api_fallback", "s2"): free,
        ("web", "s1"): ("127.0.0.2", 80), ("web", "s2"): free,
        ("web_fallback", "s1"): free, ("web_fallback", "s2"): free,
        ("static", "m1"): ("127.0.0.6", 80),
    }


def test_maps_at_other_paths_render_the_same_lines() -> None:
    config = compose(registry(), OPTIONS)
    r = render_config(config)
    assert r.maps == {"/s/hosts.map": "web.test web\n"}
    moved = r.with_map_paths({"/s/hosts.map": "/tmp/check/map0-hosts.map"})
    old, new = r.text.splitlines(), moved.splitlines()
    assert len(old) == len(new)
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert changed and all(a.replace("/s/hosts.map", "/tmp/check/map0-hosts.map") == b for a, b in changed)
    assert "/s/hosts.map" not in moved
    assert r.with_map_paths({}) is r.text
    assert render(config) == r.text
