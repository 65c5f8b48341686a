"""Fixtures for the Store contract suite: every engine in ``ENGINES`` runs every test in
``test_store_contract.py``.

To put another engine through the suite, add one line to ``ENGINES``: a URL template for ``open_store``.
``{tmp}`` becomes a fresh temporary directory and ``{unique}`` a fresh token (e.g. an etcd key prefix or a
DynamoDB table name), so tests never see each other's data. Options a test asks for (``history=5``) are
appended as URL query parameters; an engine that cannot honour one should skip via ``pytest.param(...,
marks=...)`` or support it. Mark engines that need a server with ``pytest.mark.integration``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from haplane.store import Store, open_store
from support.moto import FAKE_AWS_ENV, moto_server

ENGINES = [
    pytest.param("memory://", id="memory"),
    pytest.param("sqlite:///{tmp}/store.db", id="sqlite"),
    pytest.param("etcd://{etcd}/t{unique}", id="etcd", marks=pytest.mark.integration),
    # etcd as production runs it: TLS only, a client certificate, RBAC user and password (tokens expire every 2 s)
    pytest.param("{etcd_secure}", id="etcd-secure", marks=pytest.mark.integration),
    # moto in server mode (a real HTTP endpoint); moto allows 25 items per transaction where AWS allows 100
    pytest.param("dynamodb://t{unique}?region=us-east-1&endpoint={moto}&max_items=25&poll=0.05&lease_check=0.05",
                 id="dynamodb", marks=pytest.mark.integration),
]
# engines that cannot honour an option: a test asking for it is skipped there (with the reason)
UNSUPPORTED = {"etcd": {"history": "etcd keeps history until the cluster is compacted; "
                                   "tests/integration/etcd compacts a real cluster instead"}}

MakeStore = Callable[..., Store]


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The engine's URL with its placeholders filled in (without options)."""
    template: str = request.param
    etcd = ""
    if "{etcd}" in template:  # a real single-member etcd, started once per session, only when needed
        etcd = ",".join(request.getfixturevalue("etcd_single").hostports)
    if "{etcd_secure}" in template:
        return str(request.getfixturevalue("etcd_secure").url(f"t{uuid.uuid4().hex[:12]}"))
    moto = ""
    if "{moto}" in template:  # moto's DynamoDB, started once per session, only when needed
        moto = request.getfixturevalue("moto_endpoint")
    return template.format(tmp=tmp_path, unique=uuid.uuid4().hex[:12], etcd=etcd, moto=moto)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server (AWS fake, server mode) for the dynamodb engine, with fake credentials in the env."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_AWS_ENV.items():
            mp.setenv(name, value)
        with moto_server() as server:
            yield server.url


@pytest.fixture
async def make_store(store_url: str) -> AsyncIterator[MakeStore]:
    """``make_store(**options)`` opens a store on the engine's URL with ``options`` as query parameters.
    Every store opened this way is closed after the test."""
    opened: list[Store] = []

    def make(**options: object) -> Store:
        url = store_url
        scheme = store_url.partition("://")[0]
        for name in options:
            if name in UNSUPPORTED.get(scheme, {}):
                pytest.skip(f"{scheme}: {UNSUPPORTED[scheme][name]}")
        if options:
            query = "&".join(f"{name}={value}" for name, value in options.items())
            url += ("&" if "?" in url else "?") + query
        store = open_store(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    """A fresh, empty store of the engine under test."""
    return make_store()
