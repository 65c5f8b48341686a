"""A record stored before today's rules (an older haplane wrote a native the allowlist now refuses) does not
take every read down with it: lists and the rendered config leave it out and say so, and the record itself is
still readable to fix or delete (issue 17's stricter natives met an existing store)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from tests.unit.api.conftest import ADMIN, WRITE, auth

from haplane.store import keys
from haplane.store.base import Put

A = auth(ADMIN)
OLD = {"name": "old", "members": [{"host": "127.0.0.2", "port": 80}], "natives": ["errorfile 503 /etc/shadow"]}


async def test_a_record_the_rules_now_refuse_is_left_out_of_reads_and_said(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    r = await client.put("/backends/good", json={"members": [{"host": "127.0.0.3", "port": 80}]}, headers=A)
    assert r.status_code == 200, r.text
    store = client.deps.registry.store  # type: ignore[attr-defined]
    await store.txn([], [Put(keys.backend_key("old"), json.dumps(OLD))])
    with caplog.at_level(logging.WARNING):
        r = await client.get("/backends", headers=A)
        assert r.status_code == 200, r.text
        assert [b.get("key", b.get("name")) for b in r.json()] == ["good"], r.json()
        r = await client.get("/haproxy/config", headers=A)
        assert r.status_code == 200 and "good" in r.text and "/etc/shadow" not in r.text, r.text
    said = [rec.getMessage() for rec in caplog.records if "old" in rec.getMessage()]
    assert said and "natives" in said[0], said
    # below admin it stays as it is (it may carry natives); an admin can write over it, or delete it
    r = await client.delete("/backends/old", headers=auth(WRITE))
    assert r.status_code == 422 and r.json()["field"] == "natives[0]", r.text
    r = await client.put("/backends/old", json={"members": [{"host": "127.0.0.4", "port": 80}]}, headers=A)
    assert r.status_code == 200, r.text
    assert [b.get("key", b.get("name")) for b in (await client.get("/backends", headers=A)).json()] == [
        "good", "old"]
    await store.txn([], [Put(keys.backend_key("old"), json.dumps(OLD))])
    assert (await client.delete("/backends/old", headers=A)).status_code == 200
    assert (await client.get("/backends/old", headers=A)).status_code == 404
