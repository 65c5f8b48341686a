"""deploy/systemd: every unit (with the etcd client-key drop-in the guide installs) passes `systemd-analyze verify`
with no complaint at all, run on a temporary root
where haplane is really installed at the path the units use (/opt/haplane: a virtual environment with the wheel
built from this checkout) beside this host's own systemd units; every unit is hardened the same way; every
ExecStart, with the example environment files, is a command line haplane's own parser accepts."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.deploy.conftest import DEPLOY, Dists
from tests.support.require import require_binary

from haplane.cli import build_parser

UNITS = DEPLOY / "systemd"
HAPLANE_RUNS = ["haplane-agent.service", "haplane-serve.service", "haplane-watch@docker.service",
                "haplane-watch@aws.service", "haplane-watch@consul.service"]
ALL_UNITS = ["haplane-agent.service", "haplane-serve.service", "haplane-watch@.service", "haplane-haproxy.service",
             "haplane-docker-proxy.service"]
INSTANCES = [*HAPLANE_RUNS, "haplane-haproxy.service", "haplane-docker-proxy.service"]


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}} (keys repeat in units, so not configparser)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    return require_binary("systemd-analyze", "/usr/bin/systemd-analyze", env="HAPLANE_SYSTEMD_ANALYZE_BIN",
                          package="systemd")


def host_unit_dir() -> Path:
    for d in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(d, "sysinit.target").exists():
            return Path(d)
    pytest.fail("this host's systemd units (sysinit.target) were not found")


@pytest.fixture(scope="module")
def unit_root(dists: Dists, tmp_path_factory: pytest.TempPathFactory, haproxy_bin: str) -> Iterator[Path]:
    """/opt/haplane (a venv with the wheel, as docs/deploy.md installs it), /usr/sbin/haproxy, the host's units and
    ours under a temporary root."""
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(host_unit_dir(), root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in ALL_UNITS:
        shutil.copy(UNITS / name, root / "etc/systemd/system" / name)
    for unit in ("haplane-agent.service", "haplane-serve.service", "haplane-watch@.service"):  # as the guide says
        (root / f"etc/systemd/system/{unit}.d").mkdir()
        shutil.copy(UNITS / "etcd-client-key.conf", root / f"etc/systemd/system/{unit}.d/etcd-client-key.conf")
    venv = root / "opt/haplane"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
                    "--no-deps", "--no-index", "--disable-pip-version-check", str(dists.wheel)],
                   check=True, timeout=300, capture_output=True)
    assert os.access(venv / "bin/haplane", os.X_OK)
    (root / "usr/sbin").mkdir(parents=True)
    shutil.copy(haproxy_bin, root / "usr/sbin/haproxy")
    (root / "bin").mkdir()
    for tool in ("sh", "kill"):  # haplane-haproxy.service's ExecStartPre and ExecReload
        found = shutil.which(tool)
        assert found, f"no {tool} here"
        shutil.copy(found, root / "bin" / tool)
    yield root


def verify(systemd_analyze: str, root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze, "verify", f"--root={root}", "--man=no", "--generators=no", *units],
                          capture_output=True, text=True, timeout=120, check=False)


def test_every_unit_verifies_without_a_word(systemd_analyze: str, unit_root: Path) -> None:
    r = verify(systemd_analyze, unit_root, *INSTANCES)
    assert r.returncode == 0 and (r.stdout + r.stderr).strip() == "", r.stdout + r.stderr


def test_the_check_catches_a_typo_and_a_missing_binary(systemd_analyze: str, unit_root: Path) -> None:
    unit = unit_root / "etc/systemd/system/haplane-broken.service"
    text = (UNITS / "haplane-serve.service").read_text()
    unit.write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    try:
        r = verify(systemd_analyze, unit_root, unit.name)
        assert "Unknown key 'ProtectSytem'" in r.stderr  # systemd-analyze exits 0 here: the test reads the output
        unit.write_text(text.replace("/opt/haplane/bin/haplane", "/opt/haplane/bin/haplane-not-there"))
        r = verify(systemd_analyze, unit_root, unit.name)
        assert r.returncode != 0 and "is not executable" in r.stderr, r.stderr
    finally:
        unit.unlink()


@pytest.mark.parametrize("name", ALL_UNITS)
def test_units_are_hardened(name: str) -> None:
    svc = parse_unit(UNITS / name)["Service"]

    def one(key: str) -> str:
        assert key in svc, f"{name}: no {key}="
        return svc[key][-1]

    assert one("DynamicUser") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("NoNewPrivileges") == "yes"
    assert one("Restart") in ("always", "on-failure")
    assert one("ProtectHome") == "yes" and one("PrivateTmp") == "yes"
    assert one("SystemCallFilter") == "@system-service"
    if name != "haplane-docker-proxy.service":
        state = one("StateDirectory")
        assert state.startswith("haplane")
        assert one("WorkingDirectory") == f"%S/{state}"
        assert f"HAPLANE_STATE_DIR=%S/{state}" in svc["Environment"]
    if name in ("haplane-agent.service", "haplane-haproxy.service"):  # one dynamic user, one state directory
        assert one("User") == "haplane" and one("StateDirectory") == "haplane"
    if name == "haplane-haproxy.service":  # HAProxy binds :80/:443, and needs nothing else
        assert one("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
        assert one("CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"
        assert one("KillMode") == "mixed" and one("KillSignal") == "SIGUSR1"
    else:
        assert one("AmbientCapabilities") == "" and one("CapabilityBoundingSet") == ""


@pytest.mark.parametrize("unit", HAPLANE_RUNS)
def test_execstart_with_the_example_settings_is_a_command_haplane_accepts(unit: str) -> None:
    template, _, instance = unit.partition("@")
    name = f"{template}@.service" if instance else unit
    instance = instance.removesuffix(".service")
    svc = parse_unit(UNITS / name)["Service"]
    role = "agent" if "agent" in name else "serve" if "serve" in name else f"watch-{instance}"
    example = UNITS / f"{role}.env.example"
    assert example.exists(), f"no {example.name} for {unit}"
    env = env_file(example)
    assert f"/etc/haplane/{role}.env" in svc["EnvironmentFile"][0].replace("%i", instance)
    argv = shlex.split(svc["ExecStart"][0].replace("%i", instance))
    assert argv[0] == "/opt/haplane/bin/haplane"
    words: list[str] = []
    for word in argv[1:]:
        m = re.fullmatch(r"\$([A-Z_]+)", word)
        words += env.get(m.group(1), "").split() if m else [word]
    args = build_parser().parse_args(words)  # argparse exits (SystemExit) on anything it refuses
    assert args.command == role.split("-")[0]
    for key in env:
        assert key.startswith(("HAPLANE_", "AWS_")), f"{example.name}: {key} is not a setting"
