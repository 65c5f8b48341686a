"""Issue #17 through the API: bad values that gave a 500 (non-ASCII digits, lone surrogates, 5,000-digit numbers)
or a config HAProxy refuses later (scoped IPv6), and natives that reached the host, are a 422 naming the field
(a lone surrogate: a 400 naming the body, refused before any field is read); nothing is stored."""

from __future__ import annotations

import json

import httpx
import pytest
from tests.unit.api.conftest import ADMIN, WRITE, auth

W, A = auth(WRITE), auth(ADMIN)


def raw(body: str) -> dict[str, object]:
    """A request whose JSON text is given as is (a lone surrogate has no UTF-8: json= cannot send it)."""
    return {"content": body.encode(), "headers": {**A, "Content-Type": "application/json"}}


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/services/app/instances/i1", '{"address": "127.0.0.2", "port": "\\u00b2"}', "port"),
    ("/services/app/instances/i1", '{"address": "127.0.0.2:\\u00b2"}', "address"),
    ("/services/app/instances/i1", '{"address": "127.0.0.2", "weight": "' + "9" * 5000 + '"}', "weight"),
    ("/services/app/instances/i1", '{"address": "fe80::1%eth0", "port": 80}', "address"),
    ("/services/app/instances/i1", '{"address": "::1%lo", "port": 80}', "address"),
    ("/frontends/f", '{"bind": "*:18080", "rules": [{"type": "path", "operation": "path_reg", '
                     '"value": "^/a\\ud800", "backend": "b"}]}', "rules[0].value"),
    ("/frontends/f", '{"bind": "*:18080", "rules": [{"type": "url", "operation": "url_beg", '
                     '"value": "/caf\\u00e9", "backend": "b"}]}', "rules[0].value"),
    ("/frontends/f", '{"bind": "*:18080", "rules": [{"type": "path", "operation": "path_reg", '
                     '"value": "\\u2028", "backend": "b"}]}', "rules[0].value"),
    ("/backends/b", '{"natives": ["timeout server 5s", "\\"global\\""]}', "natives[1]"),
    ("/backends/b", '{"natives": ["\\\\x67lobal"]}', "natives[0]"),
    ("/backends/b", '{"natives": ["http-request set-header X \\ud800"]}', "natives[0]"),
    ("/frontends/f", '{"bind": "*:18080", "natives": ["\\"frontend\\" x"]}', "natives[0]"),
    ("/frontends/f", '{"bind": "*:18080", "natives": ["stats socket /tmp/s level admin"]}', "natives[0]"),
])
async def test_a_hostile_value_is_a_422_naming_its_field(client: httpx.AsyncClient, path: str, body: str,
                                                        field: str) -> None:
    json.loads(body)  # the body is JSON
    assert (await client.put("/services/app", json={"port": 8080}, headers=W)).status_code in (200, 201)
    before = await client.deps.registry.store.revision()  # type: ignore[attr-defined]
    r = await client.put(path, **raw(body))  # type: ignore[arg-type]
    if "\\ud800" in body:  # the API refuses a lone surrogate in the body before any field is read
        assert r.status_code == 400 and r.json()["field"] == "body", r.text
    else:
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field, r.text
    assert await client.deps.registry.store.revision() == before  # type: ignore[attr-defined]
