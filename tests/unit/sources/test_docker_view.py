"""A container's inspect JSON → instance + the service fields it states, or a skip naming the container and the
bad value. ``docker_inspect/*.json`` are recorded from the test dockerd (Debian docker.io, host network);
network addresses and published ports (no bridge there) use a synthetic document of the same shape."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from haplane.errors import ConfigurationError
from haplane.sources.docker import (
    ContainerView,
    DockerSource,
    container_view,
    docker_host,
    docker_socket_reachable,
    signal_number,
    tls_context,
)
from haplane.sources.docker.daemon import endpoint

RECORDED = Path(__file__).parent / "docker_inspect"


def recorded(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return doc


def inspect(name: str = "/web-asteroid-1", env: list[str] | None = None, labels: dict[str, str] | None = None,
            network: str = "bridge", ip: str = "172.17.0.5", running: bool = True, health: str | None = None,
            ports: dict[str, Any] | None = None, paused: bool = False,
            started: str = "2026-11-23T02:25:20.123456789Z") -> dict[str, Any]:
    state: dict[str, Any] = {"Running": running, "Paused": paused, "Restarting": False, "StartedAt": started}
    if health:
        state["Health"] = {"Status": health}
    return {"Id": "abc123" * 10, "Name": name, "State": state,
            "Config": {"Env": env if env is not None else ["SERVICE_NAME=web", "CONFIG_MODE=host",
                                                            "PREDICATE=web.example.com", "PORT=8080", "PATH=/bin"],
                       "Labels": labels or {}},
            "HostConfig": {"NetworkMode": network},
            "NetworkSettings": {"Networks": {network: {"IPAddress": ip if network != "host" else ""}},
                                "Ports": ports or {}}}


# --- recorded from a real dockerd ------------------------------------------------------------------------------


def test_recorded_host_network_container_with_cosmonaut_env_vars() -> None:
    v = container_view(recorded("host_env"), "asteroid", "127.0.0.9", qualifier="h1")
    assert v.instance is not None and v.skipped is None
    # the haplane.address label wins over the host address for a host-network container
    assert (v.instance.id, v.instance.service, v.instance.address, v.instance.port, v.instance.version) == (
        "Web-Asteroid-1.h1", "web", "127.0.0.250", 18080, "1.2")
    assert v.instance.healthy is True
    assert dict(v.stated) == {"mode": "host", "predicate": "web.example.com", "cookie": "JSESSIONID", "port": 18080}
    del recorded_labels(doc := recorded("host_env"))["haplane.address"]
    v = container_view(doc, "asteroid", "127.0.0.9")
    assert v.instance is not None and v.instance.address == "127.0.0.9"


def recorded_labels(doc: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = doc["Config"]["Labels"]
    return labels


def test_recorded_labels_win_and_health_gates() -> None:
    v = container_view(recorded("labels_healthy"), "asteroid")  # no keyword in "api": the label opts in
    assert v.instance is not None and v.service is not None
    assert (v.instance.service, v.instance.port, v.instance.weight, v.instance.zone, v.instance.healthy) == (
        "api", 18081, 5, "z1", True)  # SERVICE_NAME=ignored and PORT=1 lose to the labels
    assert dict(v.stated) == {"mode": "path", "predicate": "/api", "port": 18081}
    sick = container_view(recorded("unhealthy"), "asteroid")
    assert sick.instance is not None and sick.instance.healthy is False
    starting = recorded("labels_healthy")
    starting["State"]["Health"]["Status"] = "starting"
    assert container_view(starting, "asteroid").instance.healthy is False  # type: ignore[union-attr]


def test_recorded_paused_exited_and_networkless_containers_are_not_instances() -> None:
    for name in ("paused", "exited"):
        v = container_view(recorded(name), "asteroid")
        assert v.selected and v.instance is None and v.skipped is None, name
    v = container_view(recorded("network_none"), "asteroid")  # --network none, nothing published: no address
    assert v.instance is None and v.skipped is not None
    assert "container none-asteroid: address" in v.skipped and "cannot be found" in v.skipped


# --- rules ---------------------------------------------------------------------------------------------------


def test_keyword_is_case_insensitive_and_labels_opt_in() -> None:
    assert container_view(inspect(name="/Web-ASTEROID"), "asteroid").instance is not None
    assert container_view(inspect(name="/web-asteroid"), "ASTEROID").instance is not None
    assert container_view(inspect(name="/web-AsTeRoId-2"), "aStErOiD").instance is not None
    assert not container_view(inspect(name="/db"), "asteroid").selected
    assert not container_view(inspect(name="/db", labels={"haplane.enable": "false"}), "asteroid").selected
    v = container_view(inspect(name="/db", labels={"haplane.enable": "TRUE"}), "asteroid")
    assert v.selected and v.instance is not None


def test_labels_win_over_env_vars() -> None:
    v = container_view(inspect(labels={"haplane.service": "api", "haplane.mode": "path", "haplane.predicate": "/api",
                                       "haplane.port": "9000", "haplane.version": "1.2", "haplane.weight": "5",
                                       "haplane.zone": "z1", "haplane.cookie": "SID"}), "asteroid")
    assert v.instance is not None and v.service is not None
    assert (v.service.name, v.service.mode, v.service.predicate, v.service.cookie) == ("api", "path", "/api", "SID")
    assert (v.instance.port, v.instance.version, v.instance.weight, v.instance.zone) == (9000, "1.2", 5, "z1")


def test_tls_labels_as_traefik_spells_them_too() -> None:
    v = container_view(inspect(labels={"haplane.tls": "true", "haplane.hsts": "3600"}), "asteroid")
    assert v.service is not None and (v.service.tls, v.service.hsts) == ("on", 3600)
    v = container_view(inspect(labels={"haplane.tls": "auto"}), "asteroid")
    assert v.service is not None and v.service.tls == "auto" and dict(v.stated)["tls"] == "auto"


def test_only_stated_service_fields_are_carried_and_a_predicate_brings_its_mode() -> None:
    v = container_view(inspect(env=["SERVICE_NAME=web", "PORT=80"]), "asteroid")
    assert dict(v.stated) == {"port": 80}
    v = container_view(inspect(env=["SERVICE_NAME=web", "PORT=80", "PREDICATE=a.example.com"]), "asteroid")
    assert dict(v.stated) == {"port": 80, "predicate": "a.example.com", "mode": "host"}


def test_addresses_host_network_label_network_and_published_ports() -> None:
    v = container_view(inspect(network="host"), "asteroid", "127.0.0.9")
    assert v.instance is not None and v.instance.address == "127.0.0.9"
    v = container_view(inspect(network="host", labels={"haplane.address": "127.0.0.7"}), "asteroid")
    assert v.instance is not None and v.instance.address == "127.0.0.7"
    v = container_view(inspect(), "asteroid", "127.0.0.9")
    assert v.instance is not None and (v.instance.address, v.instance.port) == ("172.17.0.5", 8080)
    published = {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}]}
    v = container_view(inspect(network="none", ip="", ports=published), "asteroid", "127.0.0.3")
    assert v.instance is not None and (v.instance.address, v.instance.port) == ("127.0.0.3", 32768)
    bound = {"8080/tcp": [{"HostIp": "127.0.0.44", "HostPort": "32769"}]}
    v = container_view(inspect(network="none", ip="", ports=bound), "asteroid", "127.0.0.3")
    assert v.instance is not None and (v.instance.address, v.instance.port) == ("127.0.0.44", 32769)


@pytest.mark.parametrize(("env", "labels", "words"), [
    (["CONFIG_MODE=host"], {}, "SERVICE_NAME"),
    (["SERVICE_NAME=web", "PREDICATE=a.com\n  stats enable", "PORT=80"], {}, "env PREDICATE"),
    (["SERVICE_NAME=web", "PORT=eighty"], {}, "env PORT: 'eighty' is not a port number"),
    (["SERVICE_NAME=web", "PORT=80"], {"haplane.port": "99999"}, "label haplane.port: 99999"),
    (["SERVICE_NAME=web", "PORT=80"], {"haplane.weight": "-1"}, "label haplane.weight: '-1'"),
    (["SERVICE_NAME=web", "PORT=80"], {"haplane.weight": "100000"}, "label haplane.weight"),
    (["SERVICE_NAME=web", "PORT=80", "CONFIG_MODE=tcp"], {}, "env CONFIG_MODE: 'tcp'"),
    (["SERVICE_NAME=web", "PORT=80"], {"haplane.mode": "tcp"}, "label haplane.mode: 'tcp'"),
    (["SERVICE_NAME=web", "PORT=80", "COOKIE=a b"], {}, "env COOKIE"),
    (["SERVICE_NAME=we b", "PORT=80"], {}, "env SERVICE_NAME: 'we b'"),
    (["SERVICE_NAME=web", "PORT=80"], {"haplane.zone": "a/b"}, "label haplane.zone: 'a/b'"),
    (["SERVICE_NAME=web", "PORT=80"], {"haplane.address": "not an address"}, "label haplane.address"),
    (["SERVICE_NAME=web"], {}, "PORT"),
    (["SERVICE_NAME=web", "PORT=80", "PREDICATE=a.com"], {"haplane.tls": "maybe"}, "label haplane.tls: 'maybe'"),
    (["SERVICE_NAME=web", "PORT=80", "PREDICATE=a.com"], {"haplane.hsts": "1y"}, "label haplane.hsts: '1y'"),
    (["SERVICE_NAME=web", "PORT=80"], {"haplane.tls": "redirect"}, "label haplane.tls: 'redirect' needs a predicate"),
])
def test_bad_values_skip_the_container_naming_it_and_the_value(env: list[str], labels: dict[str, str],
                                                               words: str) -> None:
    v = container_view(inspect(env=env, labels=labels), "asteroid")
    assert v.instance is None and v.skipped is not None
    assert v.skipped.startswith("container web-asteroid-1: ") and words in v.skipped, v.skipped


def test_docker_host_follows_the_docker_cli() -> None:
    assert docker_host({}) == "unix:///var/run/docker.sock"
    assert docker_host({"DOCKER_HOST": "tcp://127.0.0.1:2375"}) == "tcp://127.0.0.1:2375"
    assert endpoint("unix:///run/d.sock", {}) == ("http://docker", {"uds": "/run/d.sock"})
    assert endpoint("tcp://127.0.0.1", {}) == ("http://127.0.0.1:2375", {"verify": True})
    assert endpoint("tcp://[::1]:2000", {})[0] == "http://[::1]:2000"
    for bad in ("ssh://me@host", "unix://", "tcp://"):
        with pytest.raises(ConfigurationError, match="DOCKER_HOST"):
            endpoint(bad, {})


def test_tls_as_the_docker_cli_reads_it(tmp_path: Path) -> None:
    assert tls_context({}) is None
    with pytest.raises(ConfigurationError, match=r"ca\.pem"):
        tls_context({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    ctx = tls_context({"DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    assert ctx is not None and not ctx.check_hostname
    base, kw = endpoint("tcp://127.0.0.1", {"DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    assert base == "https://127.0.0.1:2376" and kw["verify"] is not True


def test_socket_reachable_never_raises(tmp_path: Path) -> None:
    class S:
        docker_host = f"unix://{tmp_path}/none.sock"

    assert docker_socket_reachable(S()) is False
    assert docker_socket_reachable({"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}) is False
    assert docker_socket_reachable({"DOCKER_HOST": "ssh://nowhere"}) is False


def test_a_disagreement_about_a_service_goes_to_the_container_started_last(
        caplog: pytest.LogCaptureFixture) -> None:
    source = DockerSource(host="unix:///nowhere.sock", name="docker-h1")
    old = container_view(inspect(name="/old-asteroid", env=["SERVICE_NAME=web", "PORT=80", "PREDICATE=old.test"],
                                 started="2026-11-23T02:25:20.1Z"), "asteroid")
    new = container_view(inspect(name="/new-asteroid", env=["SERVICE_NAME=web", "PORT=80", "PREDICATE=new.test"],
                                 started="2026-11-23T02:25:20.12Z"), "asteroid")  # later by 20 ms
    later = container_view(inspect(name="/later-asteroid", env=["SERVICE_NAME=web", "PORT=80", "PREDICATE=new.test"],
                                   started="2026-11-23T02:25:21Z"), "asteroid")
    caplog.set_level(logging.WARNING, logger="haplane.sources.docker")
    for order in ([old, new, later], [later, new, old], [new, later, old]):
        source.views = {v.name: v for v in order}
        assert source.definitions() == [{"name": "web", "port": 80, "predicate": "new.test", "mode": "host"}]
    source.views = {"new": new, "old": old}
    assert source.definitions() == [{"name": "web", "port": 80, "predicate": "new.test", "mode": "host"}]
    assert any("old-asteroid and later-asteroid define service web differently" in r.getMessage()
               for r in caplog.records)
    # stopped containers do not take part
    stopped = ContainerView("x", started=("9999", ""))
    source.views = {"old": old, "x": stopped}
    assert source.definitions() == [{"name": "web", "port": 80, "predicate": "old.test", "mode": "host"}]


def test_instance_ids_carry_the_host() -> None:
    assert DockerSource(host="unix:///x.sock", name="docker-h1").qualifier == "h1"
    assert DockerSource(host="unix:///x.sock", name="edge").qualifier == "edge"
    doc = copy.deepcopy(recorded("host_env"))
    a = container_view(doc, "asteroid", qualifier="h1").instance
    b = container_view(doc, "asteroid", qualifier="h2").instance
    assert a is not None and b is not None and a.id != b.id


def test_stop_signals() -> None:
    assert [signal_number(x) for x in ("15", "SIGTERM", "term", "WINCH", "", None, "SIGNOPE")] == [
        15, 15, 15, 28, None, None, None]
    assert container_view(recorded("host_env"), "asteroid").stop_signal == 9  # the test image: STOPSIGNAL SIGKILL
    assert container_view(inspect(), "asteroid").stop_signal == 15  # none configured: Docker's SIGTERM


def test_a_stop_signal_takes_the_container_out_before_it_dies() -> None:
    source = DockerSource(host="unix:///x.sock", name="docker-h1")
    view = container_view(inspect(), "asteroid")
    source.views = {"c1": view}
    hup = {"Action": "kill", "Actor": {"ID": "c1", "Attributes": {"signal": "1"}}}
    source._note_leaving("c1", "kill", hup, 0.0)
    assert source._apply_leaving("c1", view) == view  # SIGHUP: a reload, not a stop
    term = {"Action": "kill", "Actor": {"ID": "c1", "Attributes": {"signal": "15"}}}
    source._note_leaving("c1", "kill", term, 0.0)
    leaving = source._apply_leaving("c1", view)
    assert leaving is not None and leaving.instance is None and leaving.name == view.name
    source._note_leaving("c1", "start", {}, 1.0)
    assert source._apply_leaving("c1", view) == view
    # the container's own STOPSIGNAL counts too
    source.views = {"c1": replace(view, stop_signal=28)}
    source._note_leaving("c1", "kill", {"Actor": {"Attributes": {"signal": "28"}}}, 0.0)
    assert source._apply_leaving("c1", view).instance is None  # type: ignore[union-attr]
