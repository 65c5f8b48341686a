"""Acknowledged = durable under the batched write path: `haplane serve` (SQLite) takes registrations from 30
concurrent clients into one service, so they are group-committed by the registry, and is killed with SIGKILL in
the middle. Every registration it answered (201 with an ETag) is in the store afterwards, with the slot and the
revision it was answered with; no two instances share a slot."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from tests.support.procs import Proc, free_port

from haplane.model.records import Instance
from haplane.registry import RegistryStore
from haplane.store import open_store

pytestmark = pytest.mark.integration
TOKEN = "durability-admin-token"


async def test_every_acknowledged_registration_survives_a_sigkill(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "h.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAPLANE_")}
    proc = Proc([sys.executable, "-m", "haplane", "serve", "--store", f"sqlite:///{db}", "--state-dir",
                 str(tmp_path / "state"), "--listen", f"127.0.0.1:{port}"], tmp_path / "serve.log",
                env={**env, "HAPLANE_TOKEN": TOKEN})
    headers = {"Authorization": f"Bearer {TOKEN}"}
    await asyncio.to_thread(proc.wait_answering, url + "/health")
    acked: dict[str, tuple[int, int]] = {}  # id -> (slot, revision) as answered
    batched = asyncio.Event()

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, trust_env=False, timeout=10) as c:
            i = 0
            while True:
                i += 1
                iid = f"c{n}-{i}"
                try:
                    r = await c.put(f"/services/web/instances/{iid}", json={"address": f"127.1.{n}.{i % 250 + 1}"})
                except httpx.HTTPError:
                    return  # the server died: this one was never acknowledged
                assert r.status_code == 201, r.text
                acked[iid] = (r.json()["slot"], int(r.headers["etag"].strip('"')))
                if len(acked) >= 300:
                    batched.set()

    async with httpx.AsyncClient(base_url=url, headers=headers, trust_env=False) as c:
        assert (await c.put("/services/web", json={"port": 8080})).status_code == 201
    tasks = [asyncio.create_task(client(n)) for n in range(30)]
    try:
        await asyncio.wait_for(batched.wait(), 60)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: requests in flight, batches half-built
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        for t in tasks:
            t.cancel()
        proc.kill()

    store = open_store(f"sqlite:///{db}")
    try:
        stored: dict[str, tuple[Instance, int]] = {i.id: (i, rev)
                                                   for i, rev in await RegistryStore(store).list_instances("web")}
    finally:
        await store.close()
    lost = sorted(set(acked) - set(stored))
    assert not lost, f"{len(lost)} acknowledged registrations lost, e.g. {lost[:5]}"
    for iid, (slot, rev) in acked.items():
        inst, mod_rev = stored[iid]
        assert (inst.slot, mod_rev) == (slot, rev), iid
    slots = [inst.slot for inst, _ in stored.values()]
    assert len(slots) == len(set(slots)), "no two instances share a slot"
    revisions = {rev for _, rev in acked.values()}
    assert len(revisions) < len(acked), "registrations shared transactions (the batched path was exercised)"
