"""The registry's HTTP API: ``create_app(deps)`` builds the FastAPI application.

Routers are found through a table of import strings (each module exposes ``router(deps) -> APIRouter``),
resolved by ``haplane.importer``: a router that cannot be loaded is an error, never a part silently missing.
"""

from __future__ import annotations

from fastapi import FastAPI

from haplane import __version__
from haplane.api import errors
from haplane.api.deps import ApiDeps
from haplane.api.limits import BodyLimit
from haplane.importer import import_module

ROUTERS: tuple[str, ...] = (
    "haplane.api.routes.system",
    "haplane.api.routes.services",
    "haplane.api.routes.thalassa",
    "haplane.api.routes.certificates",
    "haplane.api.routes.ui",
    "haplane.api.routes.metrics",
)

DESCRIPTION = """\
The registry of haplane: what HAProxy should do. Services and their instances (with TTLs and source-owned
sets), Thalassa's frontends and backends, Lambda-Registry's `/generate`.

Reads need a `read` token, changes a `write` token, raw config lines (natives) an `admin` token:
`Authorization: Bearer TOKEN`. Writes answer with an `ETag` (the record's revision); send it back in
`If-Match` and a write based on a stale read fails with 412 instead of overwriting someone else's change.
Errors are `{"error", "field", "detail"}`.
"""


def install_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the files vendored in the package (``api/ui/static/vendor/swagger-ui``), so the
    page works without internet (FastAPI's default loads them from a CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="haplane API",
            swagger_js_url="/ui/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/ui/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/ui/static/favicon.svg",
            swagger_ui_parameters={"persistAuthorization": True, "displayOperationId": True})


def create_app(deps: ApiDeps) -> FastAPI:
    from haplane.api.schemas import install_contract, operation_id

    app = FastAPI(title="haplane", version=__version__, description=DESCRIPTION, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json", generate_unique_id_function=operation_id)
    app.state.deps = deps
    app.add_middleware(BodyLimit, settings=deps.settings)
    errors.install(app)
    install_docs(app)
    for name in ROUTERS:
        app.include_router(import_module(name, f"the API router {name}").router(deps))
    install_contract(app)
    return app


__all__ = ["ApiDeps", "create_app"]
