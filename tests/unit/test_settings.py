"""Settings are parsed strictly: a value that does not read as its type is an error naming the setting and where
it came from (env var, file key, option), never a silent default."""

from __future__ import annotations

from pathlib import Path

import pytest

from haplane.errors import ConfigurationError
from haplane.settings import Settings, load


@pytest.mark.parametrize(("env", "words"), [
    ({"HAPLANE_HOST_MAP": "ture"}, ["host_map", "HAPLANE_HOST_MAP", "'ture'", "boolean"]),
    ({"HAPLANE_ALL_IN_FALLBACK": "2"}, ["all_in_fallback", "boolean"]),
    ({"CLIENT_ALL_SERVERS_IN_FALLBACK_BACKEND": "maybe"}, ["all_in_fallback",
                                                           "CLIENT_ALL_SERVERS_IN_FALLBACK_BACKEND"]),
    ({"HAPLANE_HTTP_PORT": "80a"}, ["http_port", "HAPLANE_HTTP_PORT", "integer"]),
    ({"HAPLANE_HTTP_PORT": "8²"}, ["http_port", "ASCII"]),
    ({"HAPLANE_HTTP_PORT": "70000"}, ["http_port", "65535"]),
    ({"HAPLANE_RAMP_INTERVAL": "-1"}, ["ramp_interval", "greater than or equal to 0"]),
    ({"EXPORTER_PORT": "x"}, ["metrics_port", "EXPORTER_PORT"]),
    ({"HAPLANE_TOKENS": "abcdefghij"}, ["tokens", "TOKEN:ROLE"]),
    ({"HAPLANE_TOKENS": "abcdefghij:root"}, ["tokens", "role 'root'"]),
])
def test_a_value_that_does_not_parse_names_the_setting_and_its_origin(env: dict[str, str], words: list[str]
                                                                       ) -> None:
    with pytest.raises(ConfigurationError) as err:
        load(env=env)
    for word in words:
        assert word in str(err.value)


def test_secrets_are_never_echoed_in_errors() -> None:
    with pytest.raises(ConfigurationError) as err:
        load(env={"HAPLANE_TOKEN": "short"})
    assert "short" not in str(err.value) and "token" in str(err.value)
    with pytest.raises(ConfigurationError) as err:
        load(env={"HAPLANE_TOKENS": "tiny7:admin"})
    assert "tiny7" not in str(err.value)


def test_text_values_read_as_their_types() -> None:
    s = load(env={"HAPLANE_HOST_MAP": "off", "HAPLANE_ALL_IN_FALLBACK": "Yes", "HAPLANE_FOCUS_ZONES": " a, b ,",
                  "HAPLANE_TOKENS": "reader-token:read,writer-token:write", "INTERVAL": "2.5",
                  "HAPLANE_HTTP_PORT": " 8081 ", "HAPLANE_STATE_DIR": "/tmp/x"})
    assert s.host_map is False and s.all_in_fallback is True
    assert s.focus_zones == ("a", "b")
    assert s.tokens == {"reader-token": "read", "writer-token": "write"}
    assert s.poll_interval == 2.5 and s.http_port == 8081 and s.state_dir == Path("/tmp/x")


def test_precedence_file_then_env_then_options(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("http_port: 1000\nramp_min: 3\nSERVER_HAPROXY_BACKEND_SERVER_MAX_WEIGHT: 50\n")
    s = load({"http_port": 3000}, env={"HAPLANE_HTTP_PORT": "2000", "HAPLANE_RAMP_MIN": "4"}, config_file=str(f))
    assert (s.http_port, s.ramp_min, s.ramp_max) == (3000, 4, 50)
    f.write_text("host_map: ture\n")
    with pytest.raises(ConfigurationError, match=r"host_map \(host_map in .*s\.yaml\)"):
        load(env={}, config_file=str(f))
    f.write_text("no_such_setting: 1\n")
    with pytest.raises(ConfigurationError, match="unknown setting 'no_such_setting'"):
        load(env={}, config_file=str(f))


def test_direct_construction_reads_nothing_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAPLANE_HTTP_PORT", "9999")
    assert Settings().http_port == 8080
    with pytest.raises(Exception, match="host_map"):
        Settings(host_map="ture")  # type: ignore[arg-type]
    assert Settings().with_(http_port="81").http_port == 81
