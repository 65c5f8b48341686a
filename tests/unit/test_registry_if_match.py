"""If-Match on every registry write: the revision the caller read must still be the record's, a record that does
not exist never matches, and a refused write changes nothing (one helper, ``guard_write``, for all of them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from haplane.errors import NotFound, PreconditionFailed
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Service
from haplane.registry import RegistryStore, guard_write
from haplane.store import KV, open_store

SVC = Service.from_dict({"name": "web", "predicate": "web.example.com", "port": 80})
INST = Instance("i1", "web", "127.0.0.2", 80)
FE = FrontendSpec.from_dict({"name": "fe", "bind": "127.0.0.1:8081"})
BE = BackendSpec.from_dict({"name": "be", "type": "static", "members": [{"host": "127.0.0.3", "port": 80}]})

Put = Callable[[RegistryStore, int | None], Awaitable[Any]]
Delete = Callable[[RegistryStore, int | None], Awaitable[int]]
Get = Callable[[RegistryStore], Awaitable[tuple[Any, int]]]

KINDS: list[tuple[str, Put, Delete, Get]] = [
    ("service", lambda r, m: r.put_service(SVC, m), lambda r, m: r.delete_service("web", m),
     lambda r: r.get_service("web")),
    ("instance", lambda r, m: r.put_instance(INST, m), lambda r, m: r.delete_instance("web", "i1", m),
     lambda r: r.get_instance("web", "i1")),
    ("frontend", lambda r, m: r.put_frontend(FE, m), lambda r, m: r.delete_frontend("fe", m),
     lambda r: r.get_frontend("fe")),
    ("backend", lambda r, m: r.put_backend(BE, m), lambda r, m: r.delete_backend("be", m),
     lambda r: r.get_backend("be")),
]


def test_guard_write_compares_with_what_was_read() -> None:
    kv = KV("/k", "{}", 3, 7)
    assert guard_write("/k", kv, None).mod_revision == 7
    assert guard_write("/k", None, None).mod_revision == 0  # create only if still absent
    assert guard_write("/k", kv, 7).mod_revision == 7
    with pytest.raises(PreconditionFailed) as stale:
        guard_write("/k", kv, 6)
    assert (stale.value.expected, stale.value.actual) == (6, 7)
    with pytest.raises(PreconditionFailed):
        guard_write("/k", None, 0)  # If-Match never matches a record that does not exist


@pytest.mark.parametrize(("kind", "put", "delete", "get"), KINDS, ids=[k[0] for k in KINDS])
async def test_if_match_on_every_write(kind: str, put: Put, delete: Delete, get: Get) -> None:
    store = open_store("memory://")
    reg = RegistryStore(store)
    if kind == "instance":
        await reg.put_service(SVC)
    with pytest.raises(PreconditionFailed):
        await put(reg, 5)  # absent: no revision matches
    with pytest.raises(NotFound):
        await delete(reg, 5)
    await put(reg, None)
    _, rev = await get(reg)
    await put(reg, rev)  # the current revision: accepted
    _, current = await get(reg)
    assert current > rev
    before = await store.revision()
    with pytest.raises(PreconditionFailed):
        await put(reg, rev)  # stale
    with pytest.raises(PreconditionFailed):
        await delete(reg, rev)
    assert await store.revision() == before, "a refused write wrote nothing"
    await delete(reg, current)
    with pytest.raises(NotFound):
        await get(reg)
