"""`haplane watch aws --elect`: two pollers on one etcd store (a real single-member etcd), AutoScaling in moto's
server mode. Only the one holding the election polls and writes; when it is killed (SIGKILL: no resignation), the
other takes over within the election's TTL and writes its own view, which follows the group from then on. A clean
stop (SIGTERM) resigns, so the lead moves at once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
from tests.integration.aws.conftest import Account
from tests.support.moto import FAKE_AWS_ENV
from tests.support.procs import EtcdCluster, Proc, wait_until

from haplane.election import Election
from haplane.registry import RegistryStore
from haplane.store import open_store

pytestmark = pytest.mark.integration


def read(url: str) -> tuple[dict[str, str], str | None]:
    async def go() -> tuple[dict[str, str], str | None]:
        store = open_store(url)
        try:
            members = {i.id: i.address for i, _ in await RegistryStore(store).list_instances("web")}
            return members, await Election(store, "aws-web", "reader").leader()
        finally:
            await store.close()
    return asyncio.run(go())


def test_one_elected_poller_writes_and_another_takes_over(tmp_path: Path, account: Account,
                                                          etcd_single: EtcdCluster,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    g = account.group(f"el-{uuid.uuid4().hex[:6]}", 2)
    url = f"etcd://{','.join(etcd_single.hostports)}/el{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HAPLANE_"))}
    env.update({**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": account.url, "HAPLANE_STORE": url})

    def poller(node: str) -> Proc:
        return Proc([sys.executable, "-m", "haplane", "watch", "aws", "--asg", g, "--service", "web", "--port",
                     "8080", "--interval", "0.3", "--elect", "aws-web", "--elect-ttl", "2",
                     "--state-dir", str(tmp_path / node)], tmp_path / f"{node}.log",
                    env={**env, "HAPLANE_NODE": node})

    procs = {"poller-a": poller("poller-a"), "poller-b": poller("poller-b")}
    def written() -> bool:
        members, lead = read(url)
        return lead is not None and members == account.addresses(g)

    try:
        wait_until(written, 60, interval=0.3, what="the group's instances written by the leader")
        leader = read(url)[1]
        assert leader in procs
        follower = next(n for n in procs if n != leader)
        assert f"{follower} leads" not in procs[follower].log.read_text()

        procs[leader].kill()  # SIGKILL: its lease is left to expire
        killed = time.monotonic()
        account.scale(g, 4)
        wait_until(lambda: read(url) == (account.addresses(g), follower), 60, interval=0.2,
                   what="the follower leading and writing the scaled group")
        took = time.monotonic() - killed
        with capsys.disabled():
            print(f"\nelected watch aws: {follower} took over {took:.1f}s after the leader's SIGKILL (ttl 2 s, "
                  "poll interval 0.3 s)")
        assert f"{follower} leads" in procs[follower].log.read_text()

        procs[leader] = poller(leader)  # back, as a follower
        time.sleep(1.0)
        assert read(url)[1] == follower
        assert procs[follower].stop(sig=signal.SIGTERM) == 0, procs[follower].log_tail()
        wait_until(lambda: read(url)[1] == leader, 10, interval=0.1, what="the lead handed over on a clean stop")
    finally:
        for p in procs.values():
            p.stop()
