"""Fields a role cannot write it cannot change either (issue 17): a write token's PUT of a frontend or backend
keeps the natives an admin set; setting, changing or clearing them, or deleting the record that carries them, is
403 naming the field."""

from __future__ import annotations

import httpx
import pytest
from tests.unit.api.conftest import ADMIN, WRITE, auth

from haplane.errors import PreconditionFailed
from haplane.model.records import BackendSpec
from haplane.registry import RegistryStore
from haplane.store import open_store

W, A = auth(WRITE), auth(ADMIN)
BACKEND_NATIVE = "timeout server 7s"
FRONTEND_NATIVE = "timeout client 7s"


def refused(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.json()["field"] == "natives" and "admin" in r.json()["detail"], r.json()


async def test_a_write_token_put_keeps_a_backends_admin_natives(client: httpx.AsyncClient) -> None:
    r = await client.put("/backends/b1", json={"members": [{"host": "127.0.0.2", "port": 80}],
                                               "natives": [BACKEND_NATIVE]}, headers=A)
    assert r.status_code == 200, r.text
    r = await client.put("/backends/b1", json={}, headers=W)
    assert r.status_code == 200, r.text
    assert r.json()["natives"] == [BACKEND_NATIVE]
    assert (await client.get("/backends/b1", headers=W)).json()["natives"] == [BACKEND_NATIVE]
    assert BACKEND_NATIVE in (await client.get("/haproxy/config", headers=W)).text
    # the same natives sent back are no change; other fields are the write token's to change
    r = await client.put("/backends/b1", json={"balance": "leastconn", "natives": [BACKEND_NATIVE]}, headers=W)
    assert r.status_code == 200 and r.json()["balance"] == "leastconn", r.text
    for natives in ([], ["timeout server 9s"], [BACKEND_NATIVE, "timeout connect 1s"]):
        refused(await client.put("/backends/b1", json={"natives": natives}, headers=W))
    assert (await client.get("/backends/b1", headers=W)).json()["natives"] == [BACKEND_NATIVE]
    refused(await client.delete("/backends/b1", headers=W))
    assert (await client.get("/backends/b1", headers=W)).status_code == 200
    assert (await client.put("/backends/b1", json={"natives": []}, headers=A)).status_code == 200
    assert (await client.delete("/backends/b1", headers=W)).status_code == 200


async def test_a_write_token_cannot_set_natives_on_a_new_record(client: httpx.AsyncClient) -> None:
    refused(await client.put("/backends/new", json={"natives": [BACKEND_NATIVE]}, headers=W))
    refused(await client.put("/frontends/new", json={"bind": "127.0.0.1:8081", "natives": [FRONTEND_NATIVE]},
                             headers=W))
    assert (await client.put("/backends/new", json={"natives": []}, headers=W)).status_code == 200


async def test_a_write_token_put_keeps_a_frontends_admin_natives(client: httpx.AsyncClient) -> None:
    body = {"bind": "127.0.0.1:8081", "natives": [FRONTEND_NATIVE]}
    assert (await client.put("/frontends/f1", json=body, headers=A)).status_code == 200
    r = await client.put("/frontends/f1", json={"bind": "127.0.0.1:8082"}, headers=W)
    assert r.status_code == 200, r.text
    assert r.json()["natives"] == [FRONTEND_NATIVE] and r.json()["bind"] == "127.0.0.1:8082"
    refused(await client.put("/frontends/f1", json={"bind": "127.0.0.1:8082", "natives": []}, headers=W))
    refused(await client.delete("/frontends/f1", headers=W))
    assert (await client.delete("/frontends/f1", headers=A)).status_code == 200


async def test_an_admin_still_sets_and_clears_natives(client: httpx.AsyncClient) -> None:
    assert (await client.put("/backends/b2", json={"natives": [BACKEND_NATIVE]}, headers=A)).status_code == 200
    r = await client.put("/backends/b2", json={}, headers=A)
    assert r.status_code == 200 and r.json()["natives"] == [], "an admin's PUT replaces, natives included"


async def test_a_write_based_on_what_it_read_never_overwrites_a_change_since() -> None:
    store = open_store("memory://")
    reg = RegistryStore(store)
    rev, _ = await reg.put_backend(BackendSpec("b"))
    await reg.put_backend(BackendSpec("b", natives=(BACKEND_NATIVE,)))  # an admin, in between
    with pytest.raises(PreconditionFailed):
        await reg.put_backend(BackendSpec("b"), unchanged_since=rev)
    with pytest.raises(PreconditionFailed):
        await reg.put_backend(BackendSpec("new"), unchanged_since=rev)  # read as absent... it is; rev is not 0
    await reg.put_backend(BackendSpec("new2"), unchanged_since=0)
    assert (await reg.get_backend("b"))[0].natives == (BACKEND_NATIVE,)
    await store.close()
