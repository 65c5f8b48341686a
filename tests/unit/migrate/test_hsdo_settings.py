"""HSDO users keep their env file and their conf/env.yaml: every setting HSDO's README lists is honoured or
refused with a warning that names it and says what to use instead; none is dropped in silence and none stops
haplane from starting."""

from __future__ import annotations

import re

import pytest
from tests.support.fixtures import fixture_path, read_env_file

from haplane.agent.runner import agent_options
from haplane.compose import compose
from haplane.errors import ConfigurationError
from haplane.model.records import Instance, Registry, Service
from haplane.settings import FOREIGN_SETTINGS, HSDO_ALIASES, load

README_VARIABLES = [
    "SERVER_ASG_NAMES", "SERVER_CONSUL_API_URL", "SERVER_CONSUL_SERVICE_NAME",
    "SERVER_HAPROXY_BACKEND_SERVER_MIN_WEIGHT", "SERVER_HAPROXY_BACKEND_SERVER_MAX_WEIGHT",
    "SERVER_HAPROXY_BACKEND_SERVER_INCREASE_WEIGHT", "SERVER_HAPROXY_BACKEND_SERVER_INCREASE_WEIGHT_INTERVAL",
    "SERVER_MODE", "CLIENT_HAPROXY_SOCKET_PATH", "CLIENT_HAPROXY_BACKEND_LIST", "CLIENT_HAPROXY_BACKEND_NAME",
    "CLIENT_HAPROXY_BACKEND_BASE_NAME", "CLIENT_HAPROXY_BACKEND_SERVER_PORT", "INTERVAL",
    "HAPROXY_BACKEND_SERVERS_LIST_SIZE", "DEBUG", "DYNAMODB_TABLE_NAME", "AWS_DEFAULT_REGION", "EXPORTER_PORT",
    "CLIENT_DEDICATED_ASG", "CLIENT_ASG_NAMES", "CLIENT_HAPROXY_FALLBACK_BACKEND_NAME",
    "CLIENT_HAPROXY_FALLBACK_BACKEND_BASE_NAME", "CLIENT_ALL_SERVERS_IN_FALLBACK_BACKEND",
]


def test_the_env_file_lists_every_variable_of_hsdos_readme() -> None:
    assert sorted(read_env_file("hsdo", "hsdo.env")) == sorted(README_VARIABLES)


def test_every_hsdo_variable_is_honoured_or_named_in_a_warning() -> None:
    env = read_env_file("hsdo", "hsdo.env")
    notices: list[str] = []
    s = load({"state_dir": "/tmp/x"}, env=env, notices=notices)
    # honoured
    assert s.aws_asg_names == ("web-a", "web-b", "web-c")
    assert (s.consul_address, s.consul_service) == ("http://127.0.0.1:8500", "web")
    assert (s.ramp_min, s.ramp_max, s.ramp_step, s.ramp_interval) == (2, 20, 3, 15.0)
    assert (s.aws_service, s.server_prefix, s.aws_port) == ("http-back", "mywebapp", 8080)
    assert s.dedicated_asg is True and s.focus_groups == ("web-a",)
    assert (s.fallback_backend, s.fallback_server_prefix, s.all_in_fallback) == (
        "http-back-fallback", "mywebapp-fb", False)
    assert (s.poll_interval, s.min_slots, s.metrics_port) == (1.0, 10, 6789)
    assert s.dynamodb_table == "haproxy-service-discovery-orchestrator"
    assert s.store_url().startswith("dynamodb://haproxy-service-discovery-orchestrator")
    # not used, and said so: the socket of an HAProxy someone else started (no master socket given)
    assert s.admin_socket is None
    text = "\n".join(notices)
    for name in ("CLIENT_HAPROXY_SOCKET_PATH", "SERVER_MODE", "DEBUG", "CLIENT_HAPROXY_BACKEND_LIST"):
        assert name in text, f"{name} is neither honoured nor named in a warning"
    assert "haplane watch aws" in text and "--log-level debug" in text and "HAPLANE_MASTER_SOCKET" in text
    # AWS_DEFAULT_REGION in the environment is boto3's own: it reads it, as HSDO's boto3 did
    accounted = set(HSDO_ALIASES) | set(FOREIGN_SETTINGS) | {"AWS_DEFAULT_REGION"}
    assert set(README_VARIABLES) <= accounted


def test_the_socket_path_is_honoured_with_a_master_socket() -> None:
    s = load(env={"CLIENT_HAPROXY_SOCKET_PATH": "/run/haproxy/admin.sock",
                  "HAPLANE_MASTER_SOCKET": "/run/haproxy/master.sock"})
    assert s.admin_socket == "/run/haproxy/admin.sock"


def test_hsdos_conf_env_yaml_loads_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    notices: list[str] = []
    s = load(env={}, config_file=str(fixture_path("hsdo", "env.yaml")), notices=notices)
    assert (s.ramp_min, s.ramp_max, s.ramp_step, s.ramp_interval) == (1, 10, 1, 30.0)
    assert (s.poll_interval, s.min_slots, s.metrics_port, s.aws_port) == (1.0, 10, 9000, 80)
    assert s.aws_region == "eu-west-1"
    assert s.dedicated_asg is False and s.all_in_fallback is False and s.focus_groups == ()
    # HSDO's empty strings are its "not set"
    assert s.aws_asg_names == () and s.dynamodb_table is None and s.aws_service is None
    assert s.consul_address == "http://127.0.0.1:8500"
    assert s.admin_socket is None
    assert any(n.startswith("SERVER_MODE") for n in notices)
    assert any(n.startswith("DEBUG") for n in notices)
    assert any("CLIENT_HAPROXY_SOCKET_PATH" in r.getMessage() for r in caplog.records), "warnings are logged"


def test_client_asg_names_apply_only_in_dedicated_asg_mode() -> None:
    notices: list[str] = []
    s = load(env={"CLIENT_ASG_NAMES": "web-a", "CLIENT_DEDICATED_ASG": "false"}, notices=notices)
    assert s.focus_groups == ()
    assert any("CLIENT_ASG_NAMES is not applied" in n and "CLIENT_DEDICATED_ASG" in n for n in notices)
    s = load(env={"CLIENT_ASG_NAMES": "web-a"})
    assert s.focus_groups == (), "HSDO's default for CLIENT_DEDICATED_ASG is false"
    assert load(env={"CLIENT_ASG_NAMES": "web-a", "CLIENT_DEDICATED_ASG": "true"}).focus_groups == ("web-a",)
    assert load(env={"HAPLANE_FOCUS_GROUPS": "web-a"}).focus_groups == ("web-a",), "haplane's own name: as given"


def test_unknown_settings_are_errors_naming_them_and_foreign_names_warnings(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="HAPLANE_HTTP_PROT"):
        load(env={"HAPLANE_HTTP_PROT": "81"})
    load(env={"HAPLANE_ETCD_BIN": "/x", "HAPLANE_TEST_SKIP_LINT": "1"})  # the project's tool variables
    notices: list[str] = []
    load(env={"COSMONAUT_LOG": "debug"}, notices=notices)
    assert notices and "COSMONAUT_LOG" in notices[0]


def test_thalassa_and_cosmonaut_options_in_a_settings_file_are_warnings(tmp_path: object) -> None:
    from pathlib import Path

    f = Path(str(tmp_path)) / "s.yaml"
    f.write_text("persistence: /tmp/thalassa.json\nhaproxyCfgPath: /etc/haproxy/haproxy.cfg\nkeyword: rocket\n"
                 "cosmosUrl: http://x\n")
    notices: list[str] = []
    s = load(env={}, config_file=str(f), notices=notices)
    assert s.docker_keyword == "rocket", "Cosmonaut's keyword is honoured"
    assert [n.split(" ", 1)[0] for n in notices] == ["persistence", "haproxyCfgPath", "cosmosUrl"]
    assert "haplane import" in notices[0]


def test_hsdo_backend_and_server_template_names_are_kept() -> None:
    s = load({"state_dir": "/tmp/x"}, env=read_env_file("hsdo", "hsdo.env"))
    options = agent_options(s, s.state_dir).compose
    reg = Registry(services=(Service("http-back", "host", "web.test"),), instances=(
        Instance("i-a", "http-back", "127.0.0.2", 8080, group="web-a", slot=1),
        Instance("i-b", "http-back", "127.0.0.3", 8080, group="web-b", slot=2)))
    config = compose(reg, options)
    by_name = {b.name: b for b in config.backends}
    assert set(by_name) == {"http-back", "http-back-fallback"}
    main, fallback = by_name["http-back"], by_name["http-back-fallback"]
    # HAPROXY_BACKEND_SERVERS_LIST_SIZE=10 is a minimum here: slots come in powers of two (16)
    assert [srv.name for srv in main.servers] == [f"mywebapp{n}" for n in range(1, 17)]
    assert [srv.name for srv in fallback.servers] == [f"mywebapp-fb{n}" for n in range(1, 17)]
    assert [srv.instance for srv in main.servers if srv.instance] == ["i-a"]
    assert [srv.instance for srv in fallback.servers if srv.instance] == ["i-b"]
    assert config.frontends[0].fallbacks == (("http-back", "http-back-fallback"),)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", srv.name) for srv in main.servers)
