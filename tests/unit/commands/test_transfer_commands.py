"""haplane export / import on the command line: Thalassa's persistence file with --dry-run then for real, every
bad row of a bad document on its own line with nothing written, and an export that is owner-only."""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path

import pytest
from tests.support.fixtures import fixture_path, load_json

from haplane.cli import main


def _store(tmp_path: Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp_path}/h.db", "--state-dir", str(tmp_path / "state")]


def test_import_thalassas_file_dry_run_then_for_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    thalassa = str(fixture_path("thalassa", "persistence.json"))
    assert main(["import", "--dry-run", thalassa, *_store(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "+ frontends myapp" in out and "dry run (Thalassa persistence file): 4 change(s)" in out
    assert main(["import", thalassa, *_store(tmp_path)]) == 0
    assert "imported (Thalassa persistence file): 4 change(s)" in capsys.readouterr().out
    assert main(["export", *_store(tmp_path)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert [f["key"] for f in exported["frontends"]] == ["myapp"]
    assert [b["key"] for b in exported["backends"]] == ["assets", "live", "staged"]


def test_a_bad_document_lists_every_bad_row_and_writes_nothing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = copy.deepcopy(load_json("thalassa", "persistence.json"))
    data["frontends"][0]["rules"][1]["operation"] = "path_sub"
    data["backends"][0]["type"] = "elastic"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["import", str(bad), *_store(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "haplane import: 2 bad row(s); nothing was imported:"
    assert err[1].startswith("  frontends[0].rules[1].operation: ")
    assert err[2].startswith("  backends[0].type: ")
    assert main(["export", *_store(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["frontends"] == []
    bad.write_text("{not json")
    assert main(["import", str(bad), *_store(tmp_path)]) == 1
    assert "is not valid JSON" in capsys.readouterr().err


def test_export_to_a_file_is_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "registry.json"
    assert main(["export", "-o", str(out), *_store(tmp_path)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["haplane"] == 1
