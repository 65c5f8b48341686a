"""An HSDO user's env file, as it is, driving a real agent and HAProxy: the backend and server-template names
HSDO's client used (CLIENT_HAPROXY_BACKEND_NAME, _BASE_NAME, the fallback's) are the names in HAProxy, the
dedicated-ASG split sends other groups to the fallback backend, and /metrics serves HSDO's
hsdo_server_weight{id,name,ip,asg} beside haplane's own families."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tests.support.fixtures import read_env_file
from tests.support.procs import MakeHttpBackend

from haplane.model.records import Instance, Service

from .conftest import READ, running_haplane
from .test_metrics_live import parse, value

pytestmark = pytest.mark.integration


async def test_hsdo_env_file_names_slots_splits_groups_and_exports_hsdo_metrics(
        tmp_path: Path, http_backends: MakeHttpBackend) -> None:
    env = read_env_file("hsdo", "hsdo.env")
    async with running_haplane(tmp_path, env=env) as hp, hp.client(READ) as api:
        rig, reg = hp.rig, hp.rig.reg
        await reg.put_service(Service("http-back", "host", "web.test"))
        await rig.settled()
        focused, other = http_backends("focused"), http_backends("other")
        a, _, _ = await reg.put_instance(Instance("i-a", "http-back", focused.host, focused.port, group="web-a"))
        b, _, _ = await reg.put_instance(Instance("i-b", "http-back", other.host, other.port, group="web-b"))
        await rig.until_status("web.test", 200)
        await rig.settled()

        servers = await rig.bundle.control.servers(["http-back", "http-back-fallback"])
        assert set(servers) == {"http-back", "http-back-fallback"}
        assert sorted(servers["http-back"], key=lambda n: int(n[len("mywebapp"):])) == [
            f"mywebapp{n}" for n in range(1, 17)], "HSDO's server-template names (16 slots for a list size of 10)"
        assert all(name.startswith("mywebapp-fb") for name in servers["http-back-fallback"])
        assert {(await rig.get("web.test")).text for _ in range(6)} == {"backend=focused"}

        m = parse((await api.get("/metrics")).text)
        hsdo = {labels: v for (metric, labels), v in m.items() if metric == "hsdo_server_weight"}
        assert hsdo == {
            (("asg", "web-a"), ("id", str(a.slot)), ("ip", focused.host), ("name", "i-a")): 10,
            (("asg", "web-b"), ("id", str(b.slot)), ("ip", other.host), ("name", "i-b")): 10,
        }
        assert value(m, "haplane_server_weight", backend="http-back", server=f"mywebapp{a.slot}",
                     instance="i-a") == 10

        a, rev = await reg.get_instance("http-back", "i-a")
        await reg.put_instance(replace(a, state="maint"), if_match=rev)
        await rig.settled()
        assert {(await rig.get("web.test")).text for _ in range(6)} == {"backend=other"}, "the fallback serves"
