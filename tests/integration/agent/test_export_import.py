"""Export -> wipe -> import, with a real agent driving a real HAProxy: the agent applies the same haproxy.cfg,
byte for byte, and requests are routed as before. And Thalassa's persistence file, imported as it is (its bind
and static members pointed at this test's loopback servers), routes through HAProxy: its header rule, its path
rule to a static backend, and its dynamic backend following the service's instances of its version."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from tests.integration.agent.conftest import Backend, Rig, agent_rig, free_port, new_backend
from tests.support.fixtures import load_json

from haplane.model.records import Instance, Service
from haplane.registry.transfer import export_document, import_document
from haplane.render import render
from haplane.store import Delete
from haplane.transfer import parse_document

pytestmark = pytest.mark.integration


async def _answers(rig: Rig, requests: list[tuple[str, str]], proxy: str | None = None) -> list[str]:
    out = []
    for host, path in requests:
        r = await rig.client.get((proxy or rig.proxy) + path, headers={"Host": host})
        out.append(f"{r.status_code} {r.text}")
    return out


def _desired(rig: Rig) -> str:
    desired = rig.bundle.agent.desired
    assert desired is not None
    return render(desired)


async def test_export_wipe_import_gives_the_same_config_and_routing(tmp_path: Path, backends: list[Backend]
                                                                    ) -> None:
    web1, web2, api1 = (new_backend(backends, n) for n in ("web1", "web2", "api1"))
    # pools off: which spare a service takes depends on HAProxy's history, not on the store; the config compared
    # is the one the agent composes from the store (the file on disk is only rewritten at a reload, so it may hold
    # a moment before the last runtime change, e.g. w0 before its delete)
    async with agent_rig(tmp_path, pool_size=0) as rig:
        reg, store = rig.reg, rig.bundle.store
        await reg.put_service(Service("web", "host", "web.test", cookie="SRV"))
        await reg.put_service(Service("api", "path", "/api"))
        for iid, svc, b in (("w0", "web", web1), ("w1", "web", web1), ("w2", "web", web2), ("a1", "api", api1)):
            await reg.put_instance(Instance(iid, svc, b.address, b.port))
        await reg.delete_instance("web", "w0")  # a resting slot: w1 and w2 keep slots 2 and 3
        await rig.settled()
        requests = [("web.test", "/"), ("web.test", "/x"), ("any.test", "/api/v1"), ("nope.test", "/")]
        await rig.until_status("web.test", 200)
        before_answers = await _answers(rig, requests * 2)
        before = _desired(rig)

        exported = json.loads(json.dumps(await export_document(store)))
        await store.txn([], [Delete("/haplane/", prefix=True)])
        await rig.settled()
        assert (await rig.get("web.test")).status_code == 503, "wiped"
        assert _desired(rig) != before, "the agent composed the empty registry"

        result = await import_document(store, parse_document(exported))
        assert result.applied
        await rig.settled()
        await rig.until_status("web.test", 200)
        assert _desired(rig) == before, "the same config, byte for byte"
        assert await _answers(rig, requests * 2) == before_answers


async def test_thalassas_persistence_file_routes_through_haproxy(tmp_path: Path, backends: list[Backend]) -> None:
    live, staged, asset = (new_backend(backends, n) for n in ("live", "staged", "assets"))
    data = copy.deepcopy(load_json("thalassa", "persistence.json"))
    port = free_port()
    data["frontends"][0]["bind"] = f"127.0.0.1:{port}"  # the file's *:8080,*:80, moved to a free loopback port
    data["backends"][2]["members"] = [{"host": asset.address, "port": str(asset.port)}]
    async with agent_rig(tmp_path) as rig:
        result = await import_document(rig.bundle.store, parse_document(data))
        assert result.applied
        # the dynamic backends follow service myapp by version, as Thalassa's followed its registrations
        await rig.reg.put_instance(Instance("l1", "myapp", live.address, live.port, version="1.0.0"))
        await rig.reg.put_instance(Instance("s1", "myapp", staged.address, staged.port, version="1.1.0"))
        await rig.settled()
        proxy = f"http://127.0.0.1:{port}"
        answers = await _answers(rig, [("www.myapp.com", "/"), ("staged.myapp.com", "/"),
                                       ("www.myapp.com", "/static/app.css")], proxy)
        assert answers == ["200 backend=live", "200 backend=staged", "200 backend=assets"]
