"""Release hygiene: one version, printed alike by ``haplane --version``, ``/health`` (the API's and the agent's
metrics listener's) and the UI; a CHANGELOG entry for it; wheel and sdist built cleanly by ``python -m build``; the
sdist carries its tests and they pass when it is unpacked; the wheel alone runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from tests.deploy.conftest import REPO, Dists

from haplane import __version__
from haplane.api import ApiDeps, create_app
from haplane.api.routes.ui import PAGES
from haplane.api.server import metrics_app
from haplane.metrics import Metrics
from haplane.registry import RegistryStore
from haplane.settings import Settings
from haplane.store import open_store

TOKEN = "release-admin-token"


def test_the_version_is_written_in_one_place() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml must not repeat the version"
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "haplane.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?", __version__)
    literal = re.compile(re.escape(f'"{__version__}"'))
    holders = [p.relative_to(REPO) for p in (REPO / "src").rglob("*.py") if literal.search(p.read_text())]
    assert holders == [Path("src/haplane/__init__.py")]


def test_cli_health_and_ui_print_the_same_version(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "haplane", "--version"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0 and r.stdout.strip() == f"haplane {__version__}"

    async def api() -> tuple[dict[str, object], str]:
        store = open_store("memory://")
        deps = ApiDeps(registry=RegistryStore(store), settings=Settings(state_dir=tmp_path, token=TOKEN))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(deps)),
                                     base_url="http://api") as c:
            assert (await c.get("/health")).json() == {"status": "ok"}  # the version needs a token
            health = (await c.get("/health", headers={"Authorization": f"Bearer {TOKEN}"})).json()
            assert (await c.post("/auth/login", json={"token": TOKEN})).status_code == 200
            pages = []
            for name in PAGES:
                page = await c.get(f"/ui/{name}")
                assert page.status_code == 200, name
                pages.append(page.text)
        await store.close()
        return health, pages

    async def agent_health() -> dict[str, object]:
        app = metrics_app(Metrics(CollectorRegistry()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as c:
            r = await c.get("/health")
            assert r.status_code == 200
            return dict(r.json())

    import asyncio

    health, pages = asyncio.run(api())
    assert health["version"] == __version__ and health["status"] == "ok"
    for page in pages:  # every page's header
        assert f'<span class="version" title="haplane version">{__version__}</span>' in page
        assert "{{version}}" not in page
    assert asyncio.run(agent_health()) == {"status": "ok", "version": __version__}


def test_the_changelog_has_an_entry_for_this_version() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[?{re.escape(__version__)}\]?", text, re.M), f"no '## {__version__}' in CHANGELOG.md"


def test_wheel_and_sdist_build_cleanly(dists: Dists) -> None:
    print(f"\npython -m build: sdist {dists.sdist.stat().st_size // 1024} KiB, wheel "
          f"{dists.wheel.stat().st_size // 1024} KiB in {dists.seconds:.1f}s")
    assert dists.sdist.name == f"haplane-{__version__}.tar.gz"
    assert dists.wheel.name == f"haplane-{__version__}-py3-none-any.whl"
    bad = [line for line in dists.log.splitlines()
           if re.search(r"deprecat|!!|no files found|\berror\b(?!s\.py)", line, re.I)
           or (line.lower().startswith("warning") and "no previously-included files" not in line
               and "byte-compiling is disabled" not in line)]
    assert not bad, "python -m build said:\n" + "\n".join(bad)

    with zipfile.ZipFile(dists.wheel) as whl:
        names = set(whl.namelist())
        meta = Parser().parsestr(whl.read(f"haplane-{__version__}.dist-info/METADATA").decode())
    assert meta["Version"] == __version__ and meta["License-Expression"] == "Apache-2.0"
    for needed in ("haplane/py.typed", "haplane/render/templates/haproxy.cfg.j2", "haplane/api/ui/overview.html",
                   "haplane/api/ui/static/app.js", "haplane/model/README.md"):
        assert needed in names, f"{needed} missing from the wheel"
    assert not any(n.startswith(("tests/", "deploy/")) for n in names)

    with tarfile.open(dists.sdist) as sd:
        members = {m.name.split("/", 1)[1] for m in sd.getmembers() if "/" in m.name}
    for needed in ("pyproject.toml", "requirements.lock", "README.md", "CHANGELOG.md", "MANIFEST.in", ".ci/run",
                   "scripts/setup", "scripts/test", "scripts/lib.sh", "tests/conftest.py", "tests/support/procs.py",
                   "tests/unit", "tests/golden/agent.cfg", "deploy/image/Dockerfile", "deploy/image/build",
                   "deploy/systemd/haplane-agent.service", "deploy/prometheus/haplane-alerts.yml",
                   "docs/deploy.md", "examples/seed-001.json", "bench/bench_agent.py"):
        assert needed in members, f"{needed} missing from the sdist"
    assert not [m for m in members if m.endswith((".pyc", ".db", ".sock")) or "/.venv/" in f"/{m}"]


def test_the_sdist_tests_pass_when_unpacked(dists: Dists, tmp_path: Path) -> None:
    with tarfile.open(dists.sdist) as sd:
        sd.extractall(tmp_path, filter="data")
    root = tmp_path / f"haplane-{__version__}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAPLANE_", "PYTEST_"))}
    env["PYTHONPATH"] = str(root / "src")
    where = subprocess.run([sys.executable, "-c", "import haplane; print(haplane.__file__)"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert Path(where).is_relative_to(root / "src"), f"the sdist's tests would import {where}"
    # Every test module of tests/unit and tests/golden imports from the unpacked tree (nothing it needs is left out
    # of the sdist: the checkout's tracked files are all in it, checked below); the pure core, the parsers, the
    # sources' views, the agent over its fake HAProxy and the golden configs run there. The rest of tests/unit runs
    # from the checkout in the same suite: running all of it here again cost CI as much as the unit tier itself.
    c = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                        "tests/unit", "tests/golden"], cwd=root, env=env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert c.returncode == 0, "\n".join((c.stdout + c.stderr).splitlines()[-15:])  # a module failed to import
    collected = [line for line in c.stdout.splitlines() if "::" in line]
    modules = {p.relative_to(root).as_posix() for d in ("tests/unit", "tests/golden")
               for p in (root / d).rglob("test_*.py")}
    assert modules == {line.split("::", 1)[0] for line in collected}, "a test module collects no test"
    subset = ["tests/unit/model/test_values.py", "tests/unit/test_plan.py", "tests/unit/test_lambda_payload.py",
              "tests/unit/haproxy", "tests/unit/sources", "tests/unit/agent", "tests/golden"]
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *subset],
                       cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
    tail = "\n".join((r.stdout + r.stderr).splitlines()[-15:])
    m = re.search(r"(\d+) passed", r.stdout)
    took = time.monotonic() - started
    print(f"\nunpacked sdist: {len(collected)} tests collected (tests/unit tests/golden); "
          f"{m.group(0) if m else '?'} ({' '.join(subset)}) in {took:.1f}s")
    assert r.returncode == 0, tail
    assert m is not None and int(m.group(1)) >= 150, tail
    assert " failed" not in r.stdout and " error" not in r.stdout, tail


def test_the_sdist_holds_every_file_the_checkout_tracks(dists: Dists) -> None:
    """What the unpacked sdist's tests may need is there: every file git tracks (but .gitignore), byte for byte."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist, say): nothing to compare with")
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, timeout=60,
                             check=True).stdout.decode().split("\0")
    wanted = {name for name in tracked if name and name != ".gitignore" and (REPO / name).is_file()}
    with tarfile.open(dists.sdist) as sd:
        members = {m.name.split("/", 1)[1]: m for m in sd.getmembers() if "/" in m.name and m.isfile()}
        assert not sorted(wanted - set(members)), f"tracked, not in the sdist: {sorted(wanted - set(members))}"
        for name in sorted(wanted):
            f = sd.extractfile(members[name])
            assert f is not None and f.read() == (REPO / name).read_bytes(), f"{name} differs in the sdist"


def test_the_wheel_alone_runs(dists: Dists, tmp_path: Path) -> None:
    with zipfile.ZipFile(dists.wheel) as whl:
        whl.extractall(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAPLANE_")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    r = subprocess.run([sys.executable, "-m", "haplane", "generate", "--store", "memory://",
                        str(REPO / "examples" / "seed-001.json")], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"# Generated by haplane {__version__}.")
    assert "cookie JSESSIONID prefix nocache" in r.stdout


@pytest.mark.parametrize("path", ["deploy/image/build", "deploy/image/rootfs", "deploy/image/entrypoint"])
def test_deploy_scripts_are_executable_and_say_what_they_do(path: str) -> None:
    p = REPO / path
    assert os.access(p, os.X_OK), f"{path} is not executable"
    if path.endswith(("build", "rootfs")):
        r = subprocess.run([str(p), "--help"], capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0 and "debootstrap" in r.stdout, r.stderr
