"""Health, sessions, Lambda-Registry's /generate, and the rendered config."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from haplane import __version__
from haplane.api.auth import (
    COOKIE,
    Principal,
    authenticate,
    require,
    revoke,
    session_from_request,
    start_session,
)
from haplane.api.deps import ApiDeps
from haplane.api.rendering import render_registry
from haplane.api.routes._util import body_doc, changed, json_body, object_body
from haplane.errors import Forbidden, HaplaneError, NotFound, TooManyAttempts, Unauthorized, ValidationError

_SAFE_DIR = re.compile(r"/[A-Za-z0-9_./@+-]*")

GENERATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "table": {"type": "string", "description": "the table (one set of services) this payload updates"},
        "running": {"type": "array", "items": {"type": "object"},
                    "description": "running containers: {serviceName, id, ip}"},
        "candidates": {"type": "array", "items": {"type": "object"},
                       "description": "services to add or update: {serviceName, port, configMode, predicate, "
                                      "cookie, containers: [{id, ip}]}"},
    },
}


def router(deps: ApiDeps) -> APIRouter:
    r = APIRouter()
    read = Depends(require(deps.settings, "read"))
    write = Depends(require(deps.settings, "write"))

    @r.get("/health", tags=["system"], summary="Is the registry up (200 ok / 503 unavailable: its store answers). "
                                              "With a read token or session: the version, the store and the "
                                              "agent's status too")
    async def health(request: Request) -> JSONResponse:
        status, body = 200, {"status": "ok"}
        detail: dict[str, Any] = {"version": __version__}
        try:
            detail["store"] = {"url": _redact(deps.registry.store.url),
                               "revision": await deps.registry.store.revision()}
        except HaplaneError as exc:
            status, body = 503, {"status": "unavailable"}
            detail["store"] = {"error": str(exc)}
        if deps.agent is not None:
            detail["agent"] = deps.agent.status()
        if await _may_read(request):
            body.update(detail)
        return JSONResponse(body, status_code=status)

    async def _may_read(request: Request) -> bool:
        """The caller showed a credential of the read role (an open API counts); anyone else gets the status
        alone (the store's URL holds a file path or a host, the agent's status more)."""
        if not (request.headers.get("authorization") or request.cookies.get(COOKIE) or
                not deps.settings.all_tokens()):
            return False
        try:
            await authenticate(request, deps.settings)
        except (Unauthorized, Forbidden, TooManyAttempts):
            return False
        return True

    @r.post("/auth/login", tags=["auth"], summary="Exchange a token for a session cookie (for the web UI)",
            openapi_extra=body_doc({"type": "object", "required": ["token"],
                                    "properties": {"token": {"type": "string"}}}))
    async def login(request: Request) -> JSONResponse:
        d = object_body(await json_body(request))
        token = d.get("token")
        if not isinstance(token, str) or not token:
            raise ValidationError("token", token, "must be a non-empty string")
        cookie, sess = start_session(request, deps.settings, token)
        resp = JSONResponse({"role": sess.role, "csrf": sess.csrf, "expires": sess.expires})
        set_session_cookie(resp, deps, cookie)
        return resp

    @r.post("/auth/logout", tags=["auth"], summary="End the session: revoked for every server on this store, and "
                                                   "the cookie cleared")
    async def logout(request: Request) -> JSONResponse:
        await end_session(request, deps)
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @r.get("/auth/whoami", tags=["auth"], summary="The role of the caller's token or session")
    async def whoami(who: Principal = read) -> dict[str, Any]:
        return {"role": who.role, "via": who.via, "csrf": who.csrf}

    @r.get("/nodes", tags=["system"], summary="Every agent (HAProxy node) sharing this store: revision, lag, "
                                            "model hash, health, last error")
    async def nodes(_: Principal = read) -> list[dict[str, Any]]:
        from haplane.agent.nodes import read_nodes

        return await read_nodes(deps.registry.store)

    @r.post("/generate", tags=["lambda-registry"], response_class=PlainTextResponse,
            summary="Lambda-Registry's /generate: apply {table, running, candidates}, answer the haproxy.cfg "
                    "(Accept: application/json: as one JSON string literal, as API Gateway answered)",
            openapi_extra=body_doc(GENERATE_SCHEMA, {
                "table": "demo", "running": [{"serviceName": "web", "id": "c1", "ip": "127.0.0.2:8080"}],
                "candidates": [{"serviceName": "web", "port": 8080, "configMode": "host",
                                "predicate": "web.example.com", "containers": [{"id": "c1", "ip": "127.0.0.2"}]}]}))
    async def generate(request: Request, bind: str = "*:80", _: Principal = write) -> Response:
        from haplane.compose import compose_table
        from haplane.model import values
        from haplane.model.haproxy import Bind
        from haplane.render import render

        b = Bind(*values.ip_or_wildcard_bind(bind, "bind"))
        data = await json_body(request)
        services, changes, rev = await deps.registry.apply_payload(data)
        if changes:
            changed(request, f"generate: {len(changes)} change(s) at revision {rev}")
        text = render(compose_table(services, (b,)))
        if _wants_json(request.headers.get("accept", "")):
            # Lambda-Registry answered through API Gateway: the config as one JSON string literal
            return JSONResponse(text, headers={"ETag": f'"{rev}"'})
        return PlainTextResponse(text, headers={"ETag": f'"{rev}"'})

    @r.get("/haproxy/config", tags=["haproxy"], response_class=PlainTextResponse,
           summary="The config the registry renders now, one HAProxy accepts as it is (?applied=1: the one the "
                   "local agent applied; ?map_dir=DIR: host routes through a map file under DIR, fetched from "
                   "/haproxy/maps/{name})")
    async def haproxy_config(applied: bool = False, map_dir: str | None = None, _: Principal = read) -> Response:
        if applied:
            text = deps.agent.applied_config() if deps.agent is not None else None
            if text is None:
                raise ValidationError("applied", applied, "needs an agent in this process that has applied a "
                                                          "config (haplane up)")
            return PlainTextResponse(text)
        if map_dir is not None and not _SAFE_DIR.fullmatch(map_dir):
            raise ValidationError("map_dir", map_dir, "must be an absolute path of A-Z a-z 0-9 _ . / @ + - only")
        snapshot = await deps.registry.snapshot()
        # the agent's map files exist only beside an agent: elsewhere the host routes are inlined as ACLs, so the
        # text passes `haproxy -c` wherever it is saved (the same routing; the map makes a host change a runtime
        # `set map` instead of a reload)
        inline = map_dir is None and deps.agent is None
        rendered = render_registry(snapshot, deps.settings, map_dir=map_dir, inline_maps=inline)
        headers = {"ETag": f'"{snapshot.revision}"',
                   "X-Haplane-Maps": "inline" if inline else ",".join(sorted(rendered.maps)) or "none"}
        return PlainTextResponse(rendered.text, headers=headers)

    admin = Depends(require(deps.settings, "admin"))

    @r.get("/export", tags=["system"], summary="The whole registry as one JSON document (admin; holds private "
                                              "keys of certificates)")
    async def export(_: Principal = admin) -> JSONResponse:
        from haplane.registry.transfer import export_document

        doc = await export_document(deps.registry.store)
        return JSONResponse(doc, headers={"ETag": f'"{doc["revision"]}"', "Cache-Control": "no-store"})

    @r.post("/import", tags=["system"],
            summary="Replace the registry with a document from /export, or read Thalassa's persistence file: whole "
                    "or not at all (admin; ?dry_run=1 shows what would change)",
            openapi_extra=body_doc({"type": "object", "description": "a haplane export ({\"haplane\": 1, ...}) or "
                                    "Thalassa's persistence file ({\"version\": 1, \"frontends\", \"backends\"})"}))
    async def import_(request: Request, dry_run: bool = False, _: Principal = admin) -> dict[str, Any]:
        from haplane.errors import ConfigCheckFailed
        from haplane.model.records import Registry
        from haplane.registry.transfer import import_document
        from haplane.transfer import parse_document

        doc = parse_document(await json_body(request))

        async def check(registry: Registry) -> None:
            result = await deps.check(render_registry(registry, deps.settings, inline_maps=True))
            if not result.ok:
                raise ConfigCheckFailed(result.messages, result.lines)

        result = await import_document(deps.registry.store, doc, dry_run=dry_run, check=check)
        if result.applied:
            changed(request, f"import ({doc.origin}): {len(result.plan.changes)} change(s) at revision "
                             f"{result.revision}")
        return {"origin": doc.origin, "dry_run": dry_run, "applied": result.applied, "revision": result.revision,
                "changes": list(result.plan.changes), "notes": list(result.notes)}

    @r.get("/haproxy/maps/{name}", tags=["haproxy"], response_class=PlainTextResponse,
           summary="A map file the config names (hosts.map: one 'host backend' line per host route; "
                   "paths.map: one 'prefix/ backend' line per path-prefix route)")
    async def haproxy_map(name: str, _: Principal = read) -> Response:
        snapshot = await deps.registry.snapshot()
        for path, content in render_registry(snapshot, deps.settings).maps.items():
            if path.rsplit("/", 1)[-1] == name:
                return PlainTextResponse(content, headers={"ETag": f'"{snapshot.revision}"'})
        raise NotFound("map", name)

    return r


def _wants_json(accept: str) -> bool:
    """``Accept`` asks for JSON before plain text (``application/json``, or it ranks higher by q)."""
    ranks: dict[str, float] = {}
    for part in accept.split(","):
        kind, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        ranks[kind.lower()] = max(q, ranks.get(kind.lower(), 0.0))
    json_q = ranks.get("application/json", 0.0)
    return json_q > 0 and json_q >= max(ranks.get("text/plain", 0.0), ranks.get("text/*", 0.0))


async def end_session(request: Request, deps: ApiDeps) -> None:
    """Revoke the caller's session in the store (a forged or expired cookie has nothing to revoke)."""
    sess = session_from_request(request, deps.settings)
    if sess is not None:
        await revoke(deps.registry.store, sess)


def set_session_cookie(resp: Response, deps: ApiDeps, cookie: str) -> None:
    resp.set_cookie(COOKIE, cookie, max_age=int(deps.settings.session_ttl), httponly=True, samesite="strict",
                    secure=bool(deps.settings.tls_cert), path="/")


def _redact(url: str) -> str:
    """A store URL without credentials."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
