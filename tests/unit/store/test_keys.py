"""The key layout: every key haplane writes decodes back to what it is, and only those do; the agent learns the
layout without importing the write side (the registry)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from haplane.agent.mirror import Mirror
from haplane.model.records import Instance, Service
from haplane.registry import RegistryStore
from haplane.store import keys, open_store
from haplane.store.base import Event
from haplane.store.keys import Key


@pytest.mark.parametrize(("key", "expected"), [
    (keys.service_key("web"), Key("service", "web")),
    (keys.instance_key("web", "c1.host-a"), Key("instance", "c1.host-a", "web")),
    (keys.instances_of("web") + "i1", Key("instance", "i1", "web")),
    (keys.frontend_key("fe"), Key("frontend", "fe")),
    (keys.backend_key("be"), Key("backend", "be")),
    (keys.table_prefix("demo") + "web", Key("table", "web", "demo")),
    (keys.alloc_key("web"), Key("alloc", "web")),
    (keys.source_key("docker-a"), Key("source", "docker-a")),
    (keys.certificate_key("www"), Key("certificate", "www")),
    (keys.private_key_key("www"), Key("private_key", "www")),
    (keys.challenge_key("tok-1"), Key("acme_challenge", "tok-1")),
    (keys.order_key("www"), Key("acme_order", "www")),
    (keys.ACME_ACCOUNT, Key("acme_account", "")),
    (keys.node_key("lb1"), Key("node", "lb1")),
    (keys.election_key("aws"), Key("election", "aws")),
    (keys.NAMES, Key("names", "")),
])
def test_every_key_written_decodes_to_what_it_is(key: str, expected: Key) -> None:
    assert keys.decode(key) == expected


@pytest.mark.parametrize("key", ["/haplane/services", "/haplane/agents/n1", "/haplane/servicesx/web", "/other/web",
                                 "haplane/services/web", "", "/haplane-nodes", "/haplane/acme/x/y", "/haplane-namesx",
                                 "/haplane/acme/accounts"])
def test_a_key_haplane_does_not_write_decodes_to_none(key: str) -> None:
    assert keys.decode(key) is None


def test_records_are_the_four_kinds_compose_reads_and_all_live_under_the_watched_root() -> None:
    assert {k for k in keys.RECORDS} == {"service", "instance", "frontend", "backend"}
    for key in (keys.service_key("a"), keys.instance_key("a", "b"), keys.frontend_key("a"), keys.backend_key("a")):
        assert key.startswith(keys.ROOT)
        what = keys.decode(key)
        assert what is not None and what.record
    for key in (keys.certificate_key("a"), keys.challenge_key("t"), keys.alloc_key("a")):
        what = keys.decode(key)
        assert what is not None and not what.record  # the mirror skips them
    for key in (keys.node_key("n"), keys.election_key("e"), keys.NAMES):  # these never wake an agent
        assert not key.startswith(keys.ROOT)


async def test_the_registry_writes_where_the_mirror_reads() -> None:
    """The write side and the agent's mirror agree on the layout: what the registry writes, the mirror holds."""
    store = open_store("memory://")
    reg = RegistryStore(store)
    await reg.put_service(Service.from_dict({"name": "web", "predicate": "web.example.com", "port": 80}))
    await reg.put_instance(Instance.from_dict({"address": "127.0.0.2"}, service="web", id="i1", default_port=80))
    kvs, rev = await store.range(keys.ROOT)
    mirror = Mirror()
    mirror.load(kvs, rev)
    assert [i.id for i in mirror.service_instances("web")] == ["i1"]
    assert set(mirror.services) == {"web"} and not mirror.bad
    rev = await reg.delete_instance("web", "i1")
    touched = mirror.apply([Event("delete", keys.instance_key("web", "i1"), None, rev)])
    assert touched.services == {"web"} and mirror.service_instances("web") == []


def test_the_agent_does_not_import_the_registry() -> None:
    code = ("import sys, haplane.agent.reconcile, haplane.agent.mirror, haplane.agent.nodes; "
            "print('haplane.registry' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
