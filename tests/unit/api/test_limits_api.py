"""Hostile bodies at the API's edge: bounded before they are read, refused with a 4xx naming the rule, never a
5xx; nothing the caller sent is echoed back whole; a true bug still answers JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.unit.api.conftest import ADMIN, WRITE, MakeClient, auth

from haplane.api import create_app

MiB = 1024 * 1024


async def test_a_body_past_the_limit_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    """Unauthenticated, 2 MiB to /auth/login: 413 naming the limit and its setting (Content-Length says so)."""
    r = await client.post("/auth/login", content=b'{"token": "' + b"a" * (2 * MiB) + b'"}',
                          headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:200]
    body = r.json()
    assert body["error"] == "TooLarge" and body["limit"] == MiB and body["setting"] == "max_body_bytes"
    assert "HAPLANE_MAX_BODY_BYTES" in body["detail"]


async def test_a_chunked_body_is_cut_off_at_the_limit(client: httpx.AsyncClient) -> None:
    """No Content-Length (chunked): counted as it streams in; the reading stops past the limit."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"token": "'
        for _ in range(64):  # 64 MiB on offer
            sent += MiB
            yield b"a" * MiB
        yield b'"}'

    r = await client.post("/auth/login", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["setting"] == "max_body_bytes"
    assert sent <= 3 * MiB, f"read {sent} bytes of a body past a 1 MiB limit"


async def test_a_bulk_write_may_be_larger_and_has_its_own_setting(make_client: MakeClient) -> None:
    client = await make_client(max_body_bytes=4096, max_bulk_body_bytes=2 * MiB)
    await client.put("/services/web", json={"port": 8080}, headers=auth(WRITE))
    items = [{"service": "web", "id": f"i{i}", "address": f"127.0.{i // 250}.{i % 250 + 1}"} for i in range(2000)]
    r = await client.put("/sources/s/instances", json={"instances": items}, headers=auth(WRITE))
    assert r.status_code == 200, r.text[:200]
    r = await client.put("/services/web/instances/i1", json={"address": "127.0.0.9", "pad": "x" * 8000},
                         headers=auth(WRITE))
    assert r.status_code == 413 and r.json()["setting"] == "max_body_bytes"
    r = await client.put("/sources/s/instances", json={"instances": items * 20}, headers=auth(WRITE))
    assert r.status_code == 413 and r.json()["setting"] == "max_bulk_body_bytes"


async def test_a_long_value_or_field_name_is_not_echoed_whole(client: httpx.AsyncClient) -> None:
    huge = "k" * 500_000
    for body in ({huge: 1}, {"port": huge}, {"port": [1] * 100_000}):
        r = await client.put("/services/web", json=body, headers=auth(WRITE))
        assert 400 <= r.status_code < 500, r.text[:200]
        assert len(r.content) < 2000, f"{len(r.content)} bytes echoed for a {len(str(body))}-character body"
        assert "elided" in r.text or "..." in r.text


async def test_deep_nesting_is_a_400_naming_the_rule(client: httpx.AsyncClient) -> None:
    for depth in (100_000, 65):
        r = await client.put("/services/web", content=b"[" * depth + b"]" * depth, headers=auth(WRITE))
        assert r.status_code == 400, r.text[:200]
        assert r.json()["error"] == "PayloadError" and "nested deeper than 64 levels" in r.json()["detail"]
    r = await client.put("/services/web", content=b'{"port": 8080, "natives": ' + b"[" * 60 + b"]" * 60 + b"}",
                         headers=auth(WRITE))
    assert r.status_code == 422, "60 deep is parsed, and refused by the model's own rule"


async def test_duplicate_keys_are_refused_naming_the_key(client: httpx.AsyncClient) -> None:
    r = await client.put("/services/web", content=b'{"port": 8080, "port": 9090}', headers=auth(WRITE))
    assert r.status_code == 400
    assert r.json()["field"] == "port" and "appears twice" in r.json()["detail"]
    r = await client.post("/auth/login", content=b'{"token": "x", "token": "' + WRITE.encode() + b'"}')
    assert r.status_code == 400 and r.json()["field"] == "token"
    assert (await client.get("/services/web", headers=auth(WRITE))).status_code == 404, "nothing was written"


MALFORMED: tuple[bytes, ...] = (
    b"\xff\xfe{}",  # not UTF-8
    b'{"a": "\xc3"}',  # cut UTF-8
    b"9" * 5000,  # more digits than Python converts
    b'{"port": ' + b"9" * 4000 + b"}",
    b'{"port": 1e400}',
    b'{"weight": NaN}',
    b"-Infinity",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
    b"[]", b"null", b"true", b'"text"', b"42", b"[{}]", b"{}", b"",
    b'{"a": 1, "a": 1}',
    b'{"port": 99999999999999999999999999, "weight": -1e308, "natives": {"x": []}}',
    b'{"instances": [' + b"{}," * 200 + b"1]}",
    b'{"instances": {"service": []}, "ttl": "x", "token": []}',
    b"\x00\x01\x02",
    b'{"\\ud800": 1}',
)


def _write_paths(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI document that takes a body, with its path parameters filled in."""
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method in ("put", "post", "patch") and "requestBody" in op:
                out.append((method.upper(), path.replace("{", "").replace("}", "")))
    return out


async def test_no_malformed_body_gets_a_5xx_at_any_write(client: httpx.AsyncClient) -> None:
    await client.put("/services/name", json={"port": 8080}, headers=auth(ADMIN))
    spec = (await client.get("/openapi.json")).json()
    writes = _write_paths(spec)
    assert len(writes) >= 12, writes
    for method, path in [*writes, ("POST", "/auth/login"), ("POST", "/ui/login")]:
        for body in MALFORMED:
            r = await client.request(method, path, content=body, headers={**auth(ADMIN),
                                                                          "content-type": "application/json"})
            assert r.status_code < 500, (method, path, body[:40], r.status_code, r.text[:300])
            assert len(r.content) < 20_000, (method, path, body[:40])
            if r.status_code >= 400 and path != "/ui/login":
                assert r.json()["detail"], (method, path, body[:40])


async def test_a_bug_answers_json_in_the_error_shape(make_client: MakeClient) -> None:
    client = await make_client()
    app = create_app(client.deps)  # type: ignore[attr-defined]

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://api") as c:
        r = await c.get("/boom")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "InternalError" and "RuntimeError" in r.json()["detail"]


@pytest.mark.parametrize("value", [b"12x", b"-1", b"9" * 40])
async def test_a_bad_content_length_is_a_400(client: httpx.AsyncClient, value: bytes) -> None:
    from haplane.api.limits import BodyLimit

    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("reached the application")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    mw = BodyLimit(app, client.deps.settings)  # type: ignore[attr-defined]
    await mw({"type": "http", "method": "POST", "path": "/auth/login", "headers": [(b"content-length", value)]},
             receive, send)
    assert sent[0]["status"] == 400 and b"Content-Length" in sent[1]["body"]
