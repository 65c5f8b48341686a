"""/docs works without internet: Swagger UI's files and the chart library are served from the package, and
no page of the API or UI names another origin."""

from __future__ import annotations

import re

import httpx

from haplane.api.routes.ui import PAGES


async def test_docs_load_only_from_this_origin(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200
    assert not re.search(r"(src|href)=[\"']https?://", r.text), "the docs page loads something from elsewhere"
    assets = re.findall(r"(?:src|href)=[\"'](/[^\"']+)[\"']", r.text)
    assert "/ui/static/vendor/swagger-ui/swagger-ui-bundle.js" in assets
    assert "/ui/static/vendor/swagger-ui/swagger-ui.css" in assets
    for path in assets:
        got = await client.get(path)
        assert got.status_code == 200, path
    js = await client.get("/ui/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert js.headers["content-type"].startswith("text/javascript") and len(js.content) > 500_000
    assert "max-age" in js.headers["cache-control"]
    assert "/openapi.json" in r.text


async def test_vendored_chart_library_and_its_license(client: httpx.AsyncClient) -> None:
    r = await client.get("/ui/static/vendor/uplot/uPlot.iife.min.js")
    assert r.status_code == 200 and r.text.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert (await client.get("/ui/static/vendor/uplot/uPlot.min.css")).status_code == 200
    from haplane.api.routes.ui import ui_dir

    for lib in ("uplot", "swagger-ui"):
        assert (ui_dir() / "static" / "vendor" / lib / "LICENSE").is_file()
    for bad in ("vendor/../../routes/ui.py", "vendor/uplot/.hidden.js", "vendor//uplot/uPlot.min.css",
                "vendor/uplot/LICENSE"):
        assert (await client.get(f"/ui/static/{bad}")).status_code == 404, bad


async def test_ui_pages_name_no_other_origin(client: httpx.AsyncClient) -> None:
    from haplane.api.routes.ui import ui_dir

    for name in (*PAGES.values(), "login.html"):
        text = (ui_dir() / name).read_text()
        assert not re.search(r"(src|href)=[\"']https?://", text), name
