"""Thalassa's frontends and backends (shapes of its REST API), with haplane's checks.

Natives (raw config lines) need the admin role, one directive per line, and are accepted only when the whole
config, rendered with the new record, passes ``haproxy -c``; every other frontend and backend write is
checked the same way, so the registry never holds a record the agents would have to quarantine.

A role below admin cannot change what it cannot write: its ``PUT`` keeps the natives an admin stored (left out
of the body, or sent back unchanged), its attempt to set, change or clear them is 403 naming ``natives``, and
so is its ``DELETE`` of a record that carries them. Such a write is conditional on the natives it read: an
admin's change in between makes it read again, never overwrite them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, Depends, Request, Response

from haplane.api.auth import Principal, require
from haplane.api.deps import ApiDeps
from haplane.api.rendering import render_registry, with_record
from haplane.api.routes._util import body_doc, changed, if_match, json_body, object_body, same_name, set_etag
from haplane.api.routes.services import HEALTH_SCHEMA
from haplane.errors import AdminOnly, ConfigCheckFailed, Conflict, NotFound, PreconditionFailed, ValidationError
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry
from haplane.store.keys import backend_key, frontend_key

T = TypeVar("T")


class _WithNatives(Protocol):
    @property
    def natives(self) -> tuple[str, ...]: ...


N = TypeVar("N", bound=_WithNatives)
ROLE_ROUNDS = 10  # reads a write below admin makes when an admin changes the record under it

RULE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "operation", "value", "backend"],
    "properties": {"type": {"type": "string", "enum": ["path", "url", "header"]},
                   "header": {"type": "string"}, "operation": {"type": "string"},
                   "value": {"type": "string"}, "backend": {"type": "string"}},
}
FRONTEND_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["bind"],
    "properties": {
        "key": {"type": "string", "description": "Thalassa's name of the frontend (must match the URL's)"},
        "bind": {"type": "string", "description": "ADDRESS:PORT[,ADDRESS:PORT...], address * for any"},
        "backend": {"type": "string", "description": "default backend (must exist)"},
        "mode": {"type": "string", "enum": ["http", "tcp"]},
        "keepalive": {"type": "string", "enum": ["default", "close", "server-close"]},
        "rules": {"type": "array", "items": RULE_SCHEMA},
        "natives": {"type": "array", "items": {"type": "string"}, "description": "raw config lines (admin)"},
        "tls": {"type": "boolean", "description": "haplane: every bind terminates TLS with the certificates the "
                                                  "agent serves (default false; left out on an agent without HTTPS)"},
    },
}
BACKEND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["static", "dynamic"]},
        "name": {"type": "string", "description": "dynamic: the service followed"},
        "version": {"type": "string", "description": "dynamic: the version followed"},
        "balance": {"type": "string"}, "host": {"type": "string", "description": "Host header sent"},
        "health": HEALTH_SCHEMA, "mode": {"type": "string", "enum": ["http", "tcp"]},
        "natives": {"type": "array", "items": {"type": "string"}},
        "members": {"type": "array", "items": {"type": "object", "properties": {
            "host": {"type": "string"}, "port": {"type": ["integer", "string"],
                                                 "description": "a string is answered back as a string"}}}},
    },
}


def members_of(spec: BackendSpec, instances: list[Instance]) -> list[dict[str, Any]]:
    if spec.type != "dynamic":
        return [m.to_dict() for m in spec.members]
    # Thalassa's registration shape: lastKnown and meta {hostname, pid, registered}, then haplane's own fields
    return [{"name": i.service, "version": i.version, "host": i.address, "port": i.port,
             "lastKnown": (i.updated or i.registered) or None,
             "meta": {"hostname": i.hostname or i.address, "pid": i.pid, "registered": i.registered or None,
                      "instance": i.id, "zone": i.zone, "state": i.state, "weight": i.weight},
             "id": f"/{i.service}/{i.version}/{i.address}/{i.port}"}
            for i in sorted(instances, key=lambda i: i.id) if i.service == spec.service and i.version == spec.version]


def router(deps: ApiDeps) -> APIRouter:
    r = APIRouter(tags=["thalassa"])
    read = Depends(require(deps.settings, "read"))
    write = Depends(require(deps.settings, "write"))
    reg = deps.registry

    async def check_with(snapshot: Registry, kind: str, record: FrontendSpec | BackendSpec) -> None:
        result = await deps.check(render_registry(with_record(snapshot, kind, record), deps.settings))
        if not result.ok:
            raise ConfigCheckFailed(result.messages, result.lines)

    async def stored(get: Callable[[str], Awaitable[tuple[T, int]]], name: str) -> tuple[T | None, int]:
        """The record as stored and its revision; (None, 0) when there is none."""
        try:
            return await get(name)
        except NotFound:
            return None, 0

    async def stored_for(who: Principal, get: Callable[[str], Awaitable[tuple[T, int]]], name: str
                         ) -> tuple[T | None, int]:
        """``stored``; a record stored before today's rules (it no longer passes them: an older haplane's
        native, say) is, for an admin, as if absent, so an admin can write over it or delete it; below admin
        its error stands (it may carry natives)."""
        try:
            return await stored(get, name)
        except ValidationError:
            if who.role != "admin":
                raise
            return None, 0

    def keep_admin_fields(who: Principal, d: dict[str, Any], natives: tuple[str, ...]) -> dict[str, Any]:
        """The body as ``who`` may write it: below admin, natives left out keep the stored ones."""
        if who.role == "admin" or d.get("natives") is not None:
            return d
        return {**d, "natives": list(natives)}

    def need_admin_for_natives(who: Principal, natives: tuple[str, ...], stored_natives: tuple[str, ...]) -> None:
        if who.role == "admin" or natives == stored_natives:
            return
        raise AdminOnly("natives", who.role, "set natives (raw config lines)" if not stored_natives else
                        "change or remove the natives an admin set (leave natives out of the body to keep them)")

    def condition(who: Principal, request: Request, rev: int) -> int | None:
        """Below admin, a write kept the admin's fields of what it read at ``rev``: it applies only to that."""
        return None if who.role == "admin" or if_match(request) is not None else rev

    async def delete_guarded(kind: str, key: str, name: str, request: Request, who: Principal,
                             get: Callable[[str], Awaitable[tuple[N, int]]],
                             delete: Callable[[str, int | None], Awaitable[int]]) -> dict[str, Any]:
        """Delete the ``kind`` (frontend or backend) ``name``: below admin, never one that carries natives, and
        only as it was read (an admin's change in between makes it read again)."""
        for _ in range(ROLE_ROUNDS):
            current, current_rev = await stored_for(who, get, name)
            if current is not None and current.natives and who.role != "admin":
                raise AdminOnly("natives", who.role, f"delete a {kind} that carries natives (raw config lines)")
            since = condition(who, request, current_rev) if current is not None else None
            try:
                rev = await delete(name, if_match(request) or since)
            except PreconditionFailed:
                if since is None:
                    raise
                continue
            break
        else:
            raise Conflict(key)
        changed(request, f"{kind} {name} deleted at revision {rev}")
        return {"deleted": name, "revision": rev}

    def backend_names(snapshot: Registry) -> set[str]:
        return {b.name for b in snapshot.backends} | {s.name for s in snapshot.services}

    # --- frontends ---------------------------------------------------------------------------------------

    @r.get("/frontends", summary="Every frontend")
    async def list_frontends(_: Principal = read) -> list[dict[str, Any]]:
        return [f.to_dict() for f in (await reg.snapshot()).frontends]

    @r.get("/frontends/{name}", summary="One frontend (200, or 404)")
    async def get_frontend(name: str, response: Response, _: Principal = read) -> dict[str, Any]:
        spec, rev = await reg.get_frontend(name)
        set_etag(response, rev)
        return spec.to_dict()

    @r.put("/frontends/{name}", summary="Create or update a frontend", openapi_extra=body_doc(
        FRONTEND_SCHEMA, {"bind": "127.0.0.1:8081", "backend": "live", "rules": [
            {"type": "header", "header": "host", "operation": "hdr_dom", "value": "staged.example.com",
             "backend": "staged"}]}))
    async def put_frontend(name: str, request: Request, response: Response, who: Principal = write
                           ) -> dict[str, Any]:
        d = object_body(await json_body(request))
        same_name(d, "name", name)
        same_name(d, "key", name)  # Thalassa's clients send the frontend's key in the body
        for _ in range(ROLE_ROUNDS):
            current, current_rev = await stored_for(who, reg.get_frontend, name)
            kept = current.natives if current is not None else ()
            spec = FrontendSpec.from_dict(keep_admin_fields(who, d, kept), "", name=name)
            need_admin_for_natives(who, spec.natives, kept)
            snapshot = await reg.snapshot()
            known = backend_names(snapshot)
            # As Thalassa did, a frontend may name a backend defined later (its clients put frontends first):
            # until then that route is left out of the config (no default backend: 503), and the answer says so.
            missing = [("backend", spec.backend)] if spec.backend is not None and spec.backend not in known else []
            missing += [(f"rules[{i}].backend", rule.backend) for i, rule in enumerate(spec.rules)
                        if rule.backend not in known]
            await check_with(snapshot, "frontend", spec)
            since = condition(who, request, current_rev)
            try:
                rev, created = await reg.put_frontend(spec, if_match(request), unchanged_since=since)
            except PreconditionFailed:
                if since is None:
                    raise
                continue  # changed since it was read: keep what it holds now
            break
        else:
            raise Conflict(frontend_key(name))
        changed(request, f"frontend {name} {'created' if created else 'updated'} at revision {rev}")
        set_etag(response, rev)
        warnings = [f"{field}: backend {b!r} is not defined yet; its requests get 503 until it is"
                    for field, b in missing]
        return {**spec.to_dict(), **({"warnings": warnings} if warnings else {})}

    @r.delete("/frontends/{name}", summary="Delete a frontend (200, or 404)")
    async def delete_frontend(name: str, request: Request, who: Principal = write) -> dict[str, Any]:
        return await delete_guarded("frontend", frontend_key(name), name, request, who, reg.get_frontend,
                                    reg.delete_frontend)

    # --- backends ----------------------------------------------------------------------------------------

    @r.get("/backends", summary="Every backend, with its members")
    async def list_backends(_: Principal = read) -> list[dict[str, Any]]:
        snap = await reg.snapshot()
        return [{**b.to_dict(), "members": members_of(b, list(snap.instances))} for b in snap.backends]

    @r.get("/backends/{name}", summary="One backend (200, or 404)")
    async def get_backend(name: str, response: Response, _: Principal = read) -> dict[str, Any]:
        spec, rev = await reg.get_backend(name)
        set_etag(response, rev)
        instances = [i for i, _ in await reg.list_instances(spec.service)] if spec.service else []
        return {**spec.to_dict(), "members": members_of(spec, instances)}

    @r.get("/backends/{name}/members", summary="The backend's members (dynamic: the followed instances)")
    async def get_members(name: str, _: Principal = read) -> list[dict[str, Any]]:
        spec, _rev = await reg.get_backend(name)
        instances = [i for i, _ in await reg.list_instances(spec.service)] if spec.service else []
        return members_of(spec, instances)

    @r.put("/backends/{name}", summary="Create or update a backend", openapi_extra=body_doc(
        BACKEND_SCHEMA, {"type": "dynamic", "name": "myapp", "version": "1.0.0", "balance": "roundrobin"}))
    async def put_backend(name: str, request: Request, response: Response, who: Principal = write
                          ) -> dict[str, Any]:
        d = object_body(await json_body(request))
        same_name(d, "key", name)
        for _ in range(ROLE_ROUNDS):
            current, current_rev = await stored_for(who, reg.get_backend, name)
            kept = current.natives if current is not None else ()
            spec = BackendSpec.from_dict(keep_admin_fields(who, d, kept), "", name=name)
            need_admin_for_natives(who, spec.natives, kept)
            snapshot = await reg.snapshot()
            await check_with(snapshot, "backend", spec)
            since = condition(who, request, current_rev)
            try:
                rev, created = await reg.put_backend(spec, if_match(request), unchanged_since=since)
            except PreconditionFailed:
                if since is None:
                    raise
                continue
            break
        else:
            raise Conflict(backend_key(name))
        changed(request, f"backend {name} {'created' if created else 'updated'} at revision {rev}")
        set_etag(response, rev)
        return spec.to_dict()

    @r.post("/backends/{name}", summary="Switch a dynamic backend to another version (and service)",
            openapi_extra=body_doc({"type": "object", "required": ["version"], "properties": {
                "version": {"type": "string"}, "name": {"type": "string"}}}, {"version": "1.1.0"}))
    async def switch_version(name: str, request: Request, response: Response, _: Principal = write
                             ) -> dict[str, Any]:
        d = object_body(await json_body(request))
        for key in d:
            if key not in ("version", "name"):
                raise ValidationError(key, d[key], "is not a field of a version switch (version, name)")
        spec, rev = await reg.get_backend(name)
        if spec.type != "dynamic":
            raise ValidationError("type", spec.type, "must be dynamic to follow a version")
        doc = {**spec.to_dict(), "version": d.get("version"), "name": d.get("name", spec.service)}
        new = BackendSpec.from_dict(doc, "", name=name)
        new_rev, _created = await reg.put_backend(new, if_match(request) or rev)
        changed(request, f"backend {name} now follows {new.service} {new.version} (was {spec.service} "
                         f"{spec.version}) at revision {new_rev}")
        set_etag(response, new_rev)
        return new.to_dict()

    @r.delete("/backends/{name}", summary="Delete a backend (200, or 404)")
    async def delete_backend(name: str, request: Request, who: Principal = write) -> dict[str, Any]:
        snapshot = await reg.snapshot()
        users = [f.name for f in snapshot.frontends
                 if f.backend == name or any(rule.backend == name for rule in f.rules)]
        if users:
            raise ValidationError("name", name, f"is still used by frontend(s) {', '.join(sorted(users))}")
        return await delete_guarded("backend", backend_key(name), name, request, who, reg.get_backend,
                                    reg.delete_backend)

    return r
