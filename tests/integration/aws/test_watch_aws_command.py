"""`haplane watch aws` as a process, HSDO's AWS-native setup: AutoScaling -> the DynamoDB store, with the AWS
endpoint taken from AWS_ENDPOINT_URL (moto in server mode) as boto3 reads it; a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
from tests.integration.aws.conftest import Account
from tests.support.moto import FAKE_AWS_ENV
from tests.support.procs import Proc, wait_until

from haplane.registry import RegistryStore
from haplane.store import open_store

pytestmark = pytest.mark.integration


def members(store_url: str) -> dict[str, tuple[str, str | None, str | None]]:
    async def read() -> dict[str, tuple[str, str | None, str | None]]:
        store = open_store(store_url)
        try:
            return {i.id: (i.address, i.zone, i.group) for i, _ in await RegistryStore(store).list_instances("web")}
        finally:
            await store.close()
    return asyncio.run(read())


def test_watch_aws_into_dynamodb_from_aws_endpoint_url(tmp_path: Path, account: Account) -> None:
    g = account.group("cli-web", 3)
    table = f"hsdo-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HAPLANE_"))}
    env.update({**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": account.url, "SERVER_ASG_NAMES": g, "INTERVAL": "0.3",
                "DYNAMODB_TABLE_NAME": table})  # HSDO's names
    proc = Proc([sys.executable, "-m", "haplane", "watch", "aws", "--service", "web", "--port", "8080",
                 "--state-dir", str(tmp_path / "state")], tmp_path / "watch.log", env=env)
    try:
        url = f"dynamodb://{table}?region=us-east-1&endpoint={account.url}"

        def three() -> bool:
            assert proc.alive(), proc.log_tail()
            return members(url) == {i: (a, "us-east-1a", g) for i, a in account.addresses(g).items()}
        wait_until(three, 60, interval=0.3, what="the group's instances in DynamoDB")
        account.scale(g, 5)
        wait_until(lambda: len(members(url)) == 5, 60, interval=0.3, what="scaled to 5")
        assert f"dynamodb://{table}" in proc.log.read_text(), "it says where it pushes"
    finally:
        rc = proc.stop(sig=signal.SIGTERM)
    assert rc == 0, proc.log_tail()
