"""Golden test: the config the agent renders for one fixed registry, byte for byte.

It pins what the agent hands HAProxy (compose + render with the agent's own options: control lines, host map,
focus/fallback, slots), so a refactor that changes a single byte of it fails here. When a change to the rendered
config is intended, regenerate the file and review the diff:

    HAPLANE_GOLDEN_UPDATE=1 .venv/bin/python -m pytest tests/golden
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from haplane import __version__
from haplane.agent.runner import agent_options
from haplane.compose import compose
from haplane.haproxy.process import control_globals
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, Service
from haplane.render import render
from haplane.settings import Settings

HERE = Path(__file__).parent
STATE = Path("/var/lib/haplane")  # a fixed path: only its text matters, nothing is created


def _registry() -> Registry:
    services = (
        Service.from_dict({"mode": "host", "predicate": "web.example.com", "port": 8080, "cookie": "SRV",
                           "balance": "leastconn",
                           "health": {"path": "/healthz", "http_version": "HTTP/1.1", "host": "web.example.com",
                                      "interval_ms": 1000, "rise": 2, "fall": 3}}, name="web"),
        Service.from_dict({"mode": "path", "predicate": "/api", "port": 9000}, name="api"),
        Service.from_dict({"mode": "path", "predicate": "/api/v2/", "balance": "source"}, name="api2"),
        Service.from_dict({"mode": "host", "predicate": "idle.example.com"}, name="idle"),
    )
    instances = (
        Instance.from_dict({"address": "127.0.0.2", "port": 8080, "weight": 20, "zone": "a", "slot": 1},
                           service="web", id="w1"),
        Instance.from_dict({"address": "127.0.0.3", "port": 8080, "zone": "b", "group": "asg-b", "slot": 2,
                            "state": "drain"}, service="web", id="w2"),
        Instance.from_dict({"address": "127.0.0.4", "port": 9000, "version": "2", "slot": 1}, service="api",
                           id="a1"),
        Instance.from_dict({"address": "127.0.0.5", "port": 9000, "version": "1", "slot": 3, "healthy": False},
                           service="api", id="a2"),
        Instance.from_dict({"address": "::1", "port": 9100, "slot": 1}, service="api2", id="b1"),
    )
    frontends = (
        FrontendSpec.from_dict({"bind": "127.0.0.1:8181,[::1]:8182", "backend": "static1", "keepalive": "close",
                                "rules": [{"type": "path", "operation": "path_beg", "value": "/live",
                                           "backend": "live"},
                                          {"type": "header", "operation": "hdr_dom", "header": "host",
                                           "value": "static.example.com", "backend": "static1"},
                                          {"type": "url", "operation": "url_reg", "value": "^/v[0-9]+/x",
                                           "backend": "live"}],
                                "natives": ["http-request set-header X-Via haplane"]}, name="edge"),
    )
    backends = (
        BackendSpec.from_dict({"type": "static", "members": [{"host": "127.0.0.6", "port": 80},
                                                             {"host": "127.0.0.7", "port": 81}],
                               "health": {"uri": "/ping", "httpVersion": "HTTP/1.1", "host": "static.example.com"},
                               "host": "static.example.com", "natives": ["timeout server 20s"]}, name="static1"),
        BackendSpec.from_dict({"type": "dynamic", "name": "api", "version": "2", "balance": "roundrobin"},
                              name="live"),
    )
    return Registry(services, instances, frontends, backends, revision=42)


def _render(**settings: object) -> str:
    """The config text, then each map file under a '# map NAME' line (the version in the header is masked: a
    release must not churn the golden files)."""
    cl = control_globals(STATE, hard_stop_after="30s")
    options = agent_options(Settings(state_dir=STATE, **settings),  # type: ignore[arg-type]
                            STATE, cl.global_lines, cl.defaults_lines)
    compose_options = replace(options.compose, cookie_key="golden-key")
    config = compose(_registry(), compose_options)
    text = render(config).replace(f"haplane {__version__}.", "haplane VERSION.", 1)
    for name, content in config.maps:
        text += f"# map {name}\n{content}"
    return text


def _check(name: str, text: str) -> None:
    path = HERE / name
    if os.environ.get("HAPLANE_GOLDEN_UPDATE") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with HAPLANE_GOLDEN_UPDATE=1 once and review it"
    assert text == path.read_text(encoding="utf-8"), f"the agent's rendered config differs from {path}"


def test_agent_config_is_byte_for_byte_the_golden_one() -> None:
    _check("agent.cfg", _render())


def test_agent_config_with_focus_and_no_host_map_is_the_golden_one() -> None:
    _check("agent-focus.cfg", _render(host_map=False, focus_zones=("a",), focus_groups=("asg-b",)))


def test_agent_config_with_focus_and_route_maps_is_the_golden_one() -> None:
    _check("agent-focus-maps.cfg", _render(focus_zones=("a",), focus_groups=("asg-b",)))
