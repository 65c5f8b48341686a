"""HSDO's DynamoDB table (hash key BackendServerID, a number, as its README's terraform makes it) named by
DYNAMODB_TABLE_NAME is recognised: a clear error naming its schema and what to run instead, at once, never a 503
"key element does not match the schema" at the first write."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from tests.integration.aws.conftest import Account

from haplane.errors import ConfigurationError
from haplane.store import open_store
from support.moto import FAKE_AWS_ENV
from support.procs import free_port

pytestmark = pytest.mark.integration


def _hsdo_table(account: Account) -> str:
    """HSDO's table, with the rows its server writes (ServerModel: id, IP, name, ASG, weight, status)."""
    import boto3

    table = f"haproxy-service-discovery-orchestrator-{uuid.uuid4().hex[:6]}"
    ddb = boto3.client("dynamodb", endpoint_url=account.url, region_name="us-east-1")
    ddb.create_table(TableName=table, BillingMode="PROVISIONED",
                     ProvisionedThroughput={"ReadCapacityUnits": 20, "WriteCapacityUnits": 20},
                     AttributeDefinitions=[{"AttributeName": "BackendServerID", "AttributeType": "N"}],
                     KeySchema=[{"AttributeName": "BackendServerID", "KeyType": "HASH"}])
    for n in range(1, 4):
        ddb.put_item(TableName=table, Item={
            "BackendServerID": {"N": str(n)}, "IPAddress": {"S": f"127.0.9.{n}" if n < 3 else "none"},
            "ASG": {"S": "web-a"}, "ServerName": {"S": f"i-{n:04x}"}, "Weight": {"N": "10"},
            "BackendServerStatus": {"S": "enabled" if n < 3 else "disabled"},
            "LastWeightUpdate": {"S": "2024-01-01 00:00:00.000000"}})
    return table


async def test_the_store_names_hsdos_schema_and_the_way_out(account: Account) -> None:
    table = _hsdo_table(account)
    store = open_store(f"dynamodb://{table}?region=us-east-1&endpoint={account.url}")
    try:
        with pytest.raises(ConfigurationError) as err:
            await store.revision()
        text = str(err.value)
        assert "HSDO's server list" in text and "hash key BackendServerID (N)" in text
        assert f"HAPLANE_STORE=dynamodb://{table}-haplane" in text and "haplane watch aws" in text
    finally:
        await store.close()


def test_serve_with_hsdos_table_name_stops_with_one_line(account: Account, tmp_path: Path) -> None:
    table = _hsdo_table(account)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **FAKE_AWS_ENV,
           "DYNAMODB_TABLE_NAME": table, "AWS_ENDPOINT_URL": account.url, "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-m", "haplane", "serve", "--listen", f"127.0.0.1:{free_port()}",
                          "--state-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("haplane serve: DynamoDB table") and "BackendServerID" in last
    assert "Traceback" not in out.stderr
