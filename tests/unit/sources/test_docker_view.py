"""A container's inspect JSON → instance + service, or a skip naming the container and the bad value."""

from __future__ import annotations

from typing import Any

import pytest

from haplane.sources.docker import container_view, docker_host


def inspect(name: str = "/web-asteroid-1", env: list[str] | None = None, labels: dict[str, str] | None = None,
            network: str = "bridge", ip: str = "172.17.0.5", running: bool = True, health: str | None = None,
            ports: dict[str, Any] | None = None, paused: bool = False) -> dict[str, Any]:
    state: dict[str, Any] = {"Running": running, "Paused": paused, "Restarting": False}
    if health:
        state["Health"] = {"Status": health}
    return {"Id": "abc123" * 10, "Name": name, "State": state,
            "Config": {"Env": env if env is not None else ["SERVICE_NAME=web", "CONFIG_MODE=host",
                                                            "PREDICATE=web.example.com", "PORT=8080", "PATH=/bin"],
                       "Labels": labels or {}},
            "HostConfig": {"NetworkMode": network},
            "NetworkSettings": {"Networks": {network: {"IPAddress": ip if network != "host" else ""}},
                                "Ports": ports or {}}}


def test_cosmonaut_env_vars_make_an_instance_and_its_service() -> None:
    v = container_view(inspect(), "asteroid")
    assert v.instance is not None and v.service is not None and v.skipped is None
    assert (v.instance.id, v.instance.service, v.instance.address, v.instance.port) == (
        "web-asteroid-1", "web", "172.17.0.5", 8080)
    assert (v.service.mode, v.service.predicate, v.service.port) == ("host", "web.example.com", 8080)


def test_keyword_is_case_insensitive_and_labels_opt_in() -> None:
    assert container_view(inspect(name="/Web-ASTEROID"), "asteroid").instance is not None
    assert container_view(inspect(name="/web-asteroid"), "ASTEROID").instance is not None
    assert not container_view(inspect(name="/db"), "asteroid").selected
    v = container_view(inspect(name="/db", labels={"haplane.enable": "true"}), "asteroid")
    assert v.selected and v.instance is not None


def test_labels_win_over_env_vars() -> None:
    v = container_view(inspect(labels={"haplane.service": "api", "haplane.mode": "path", "haplane.predicate": "/api",
                                       "haplane.port": "9000", "haplane.version": "1.2", "haplane.weight": "5",
                                       "haplane.zone": "z1", "haplane.cookie": "SID"}), "asteroid")
    assert v.instance is not None and v.service is not None
    assert (v.service.name, v.service.mode, v.service.predicate, v.service.cookie) == ("api", "path", "/api", "SID")
    assert (v.instance.port, v.instance.version, v.instance.weight, v.instance.zone) == (9000, "1.2", 5, "z1")


def test_addresses_host_network_label_and_published_ports() -> None:
    assert container_view(inspect(network="host"), "asteroid", "127.0.0.9").instance.address == "127.0.0.9"  # type: ignore[union-attr]
    v = container_view(inspect(network="host", labels={"haplane.address": "127.0.0.7"}), "asteroid")
    assert v.instance is not None and v.instance.address == "127.0.0.7"
    v = container_view(inspect(network="none", ip="", ports={"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}]}),
                       "asteroid", "127.0.0.3")
    assert v.instance is not None and (v.instance.address, v.instance.port) == ("127.0.0.3", 32768)


def test_stopped_paused_and_unhealthy_containers() -> None:
    assert container_view(inspect(running=False), "asteroid").instance is None
    assert container_view(inspect(paused=True), "asteroid").instance is None
    v = container_view(inspect(health="unhealthy"), "asteroid")
    assert v.instance is not None and v.instance.healthy is False
    assert container_view(inspect(health="starting"), "asteroid").instance.healthy is False  # type: ignore[union-attr]
    assert container_view(inspect(health="healthy"), "asteroid").instance.healthy is True  # type: ignore[union-attr]


@pytest.mark.parametrize(("env", "labels", "words"), [
    (["CONFIG_MODE=host"], {}, "SERVICE_NAME"),
    (["SERVICE_NAME=web", "PREDICATE=a.com\n  stats enable", "PORT=80"], {}, "is not a valid host name"),
    (["SERVICE_NAME=web", "PORT=eighty"], {}, "'eighty' is not a port number"),
    (["SERVICE_NAME=web", "PORT=80"], {"haplane.weight": "-1"}, "haplane.weight"),
    (["SERVICE_NAME=web", "PORT=80", "CONFIG_MODE=tcp"], {}, "mode"),
    (["SERVICE_NAME=web"], {}, "PORT"),
])
def test_bad_values_skip_the_container_naming_it(env: list[str], labels: dict[str, str], words: str) -> None:
    v = container_view(inspect(env=env, labels=labels), "asteroid")
    assert v.instance is None and v.skipped is not None
    assert "container web-asteroid-1" in v.skipped and words in v.skipped


def test_docker_host_follows_the_docker_cli() -> None:
    assert docker_host({}) == "unix:///var/run/docker.sock"
    assert docker_host({"DOCKER_HOST": "tcp://127.0.0.1:2375"}) == "tcp://127.0.0.1:2375"
