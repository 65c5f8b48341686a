"""`haplane watch ... --elect`: refused clearly where it cannot work (with --api: no store to hold the election; a
name that could not be a store key; a TTL that is not positive), before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from haplane.cli import main


@pytest.mark.parametrize(("extra", "message"), [
    (["--elect", "aws-web", "--api", "http://127.0.0.1:9"], "--elect needs the store (--store URL)"),
    (["--elect", "a/b"], "--elect: 'a/b' is not a valid name"),
    (["--elect", "aws-web", "--elect-ttl", "0"], "--elect-ttl: 0.0 must be a positive number of seconds"),
])
def test_elect_is_refused_where_it_cannot_work(extra: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["watch", "consul", "--service", "api", "--state-dir", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("haplane watch: ") and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "haplane.db").exists()  # refused before anything was opened
