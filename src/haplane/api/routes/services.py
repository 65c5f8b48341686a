"""haplane's own shape: services, their instances (with TTLs), and source-owned instance sets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from haplane.api.auth import Principal, require
from haplane.api.deps import ApiDeps
from haplane.api.routes._util import (
    body_doc,
    changed,
    if_match,
    json_body,
    object_body,
    reject_fields,
    same_name,
    set_etag,
)
from haplane.api.schemas import NAME_PATTERN
from haplane.errors import Invalid, TooLarge, ValidationError
from haplane.model import values
from haplane.model.records import Instance, Service

NAME = f"^{NAME_PATTERN}$"
HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object", "description": "HTTP health check (Thalassa's defaults)",
    "properties": {"method": {"type": "string", "default": "GET"}, "uri": {"type": "string", "default": "/"},
                   "httpVersion": {"type": "string", "enum": ["HTTP/1.0", "HTTP/1.1"]},
                   "host": {"type": "string"}, "interval": {"type": "integer", "default": 2000}},
}
SERVICE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME, "description": "the name in the URL (may be left out)"},
        "mode": {"type": "string", "enum": ["host", "path"], "default": "host"},
        "predicate": {"type": "string", "description": "host name (host mode) or path prefix (path mode)"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "instances' default port"},
        "cookie": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$", "description": "sticky-session cookie name"},
        "balance": {"type": "string", "enum": list(values.BALANCE_ALGORITHMS), "default": "roundrobin"},
        "health": HEALTH_SCHEMA,
        "tls": {"type": "string", "enum": ["off", "on", "redirect", "auto"], "default": "on",
                "description": "HTTPS for this host: off (plain HTTP only), on (both), redirect (plain HTTP answers "
                               "308 to HTTPS, ACME challenges excepted), auto (a certificate ordered from the ACME "
                               "directory, then redirect)"},
        "hsts": {"type": ["integer", "null"], "description": "Strict-Transport-Security max-age (seconds) sent on "
                                                             "HTTPS answers for this host"},
    },
}
INSTANCE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["address"], "additionalProperties": False,
    "properties": {
        "address": {"type": "string", "description": "IPv4, IPv6 or DNS name, optionally with :port"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "weight": {"type": "integer", "minimum": 0, "maximum": 256, "default": 10},
        "version": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"},
        "zone": {"type": "string", "pattern": NAME}, "group": {"type": "string", "pattern": NAME},
        "state": {"type": "string", "enum": ["ready", "drain", "maint"],
                  "description": "the operator's; a source re-sending the instance keeps it"},
        "weight_override": {"type": ["integer", "null"], "minimum": 0, "maximum": 256,
                            "description": "a weight the operator pins: a source's pushes keep it; null hands "
                                           "the weight back to the source"},
        "ttl": {"type": "number", "minimum": 1, "maximum": 86400,
                "description": "seconds; renew with POST .../heartbeat, or it expires"},
    },
}
SOURCE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["instances"],
    "properties": {
        "instances": {"type": "array", "items": {**INSTANCE_SCHEMA, "required": ["service", "id", "address"],
                                                 "properties": {**INSTANCE_SCHEMA["properties"],
                                                                "service": {"type": "string", "pattern": NAME},
                                                                "id": {"type": "string", "pattern": NAME}}}},
        "ttl": {"type": "number", "description": "the whole set expires unless sent again within ttl"},
    },
}
SERVER_OWNED = ("slot", "lease", "source", "registered", "updated")
PUT_DOC = """\
**PUT replaces.** The body is the whole record: a field left out takes its default (an instance PUT without
`version`, `zone` or `state` has none and is `ready`). What the registry owns is kept: an instance's `slot`
(unless its address or port changed: then it takes a new slot and the old one drains), its `lease` (while the
`ttl` stays), its `source` and its `registered` time. To change some fields and keep the others (to drain an
instance: `{"state": "drain"}`), use PATCH. With `If-Match` the write applies only to that revision (412
otherwise); without it the last writer wins, and a race with another writer is retried by the server (never a
409)."""
PATCH_DOC = """\
**PATCH merges.** The body holds only the fields to change; every other field keeps its stored value (`null`
clears an optional one, e.g. `{"weight_override": null}` hands the weight back to the source). The merged record
is validated as a whole, and the answer is the record as stored. `slot`, `lease`, `source`, `registered` and
`updated` cannot be set. With `If-Match` the change applies only to that revision (412 otherwise); without it a
change that raced another writer is merged into the newer record."""
HEARTBEATS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["instances"],
    "properties": {"instances": {"type": "array", "items": {
        "type": "object", "required": ["service", "id"],
        "properties": {"service": {"type": "string"}, "id": {"type": "string"}}}}},
}
HEARTBEATS_DOC = """\
Renews the lease of every instance listed (registered with a `ttl`), in one read and one renewal: nothing is
rewritten and no agent wakes. **Applied item by item**: each instance gets its own outcome in `results`
(`renewed`, `not-found`, `no-ttl`, `expired`), and one that cannot be renewed never stops the others; the answer
is 200 with `renewed` counting the renewed ones. A request with a malformed item (not an object, a bad name, an
unknown field) is refused whole with 422, naming every bad item in `errors`; more than `max_heartbeat_batch`
items (setting, default 10,000) is refused with 413 naming the limit and the setting."""


def _instance(inst: Instance, rev: int) -> dict[str, Any]:
    return {**inst.to_dict(), "revision": rev}


def _service(svc: Service, rev: int) -> dict[str, Any]:
    return {**svc.to_dict(), "revision": rev}


def router(deps: ApiDeps) -> APIRouter:
    r = APIRouter(tags=["services"])
    read = Depends(require(deps.settings, "read"))
    write = Depends(require(deps.settings, "write"))
    reg = deps.registry

    @r.get("/services", summary="Every service")
    async def list_services(_: Principal = read) -> list[dict[str, Any]]:
        return [_service(s, rev) for s, rev in await reg.list_services()]

    @r.get("/services/{name}", summary="One service")
    async def get_service(name: str, response: Response, _: Principal = read) -> dict[str, Any]:
        svc, rev = await reg.get_service(name)
        set_etag(response, rev)
        return _service(svc, rev)

    @r.put("/services/{name}", summary="Create or replace a service", openapi_extra={**body_doc(
        SERVICE_SCHEMA, {"mode": "host", "predicate": "web.example.com", "port": 8080}), "description": PUT_DOC})
    async def put_service(name: str, request: Request, response: Response, _: Principal = write
                          ) -> dict[str, Any]:
        d = object_body(await json_body(request))
        same_name(d, "name", name)
        svc = Service.from_dict(d, "", name=name)
        rev, created = await reg.put_service(svc, if_match(request))
        changed(request, f"service {name} {'created' if created else 'replaced'} at revision {rev}")
        response.status_code = 201 if created else 200
        set_etag(response, rev)
        return _service(svc, rev)

    @r.patch("/services/{name}", summary="Change some fields of a service, keeping the others",
             openapi_extra={**body_doc(SERVICE_SCHEMA, {"port": 9090}), "description": PATCH_DOC})
    async def patch_service(name: str, request: Request, response: Response, _: Principal = write
                            ) -> dict[str, Any]:
        changes = object_body(await json_body(request))
        svc, rev = await reg.patch_service(name, changes, if_match(request))
        changed(request, f"service {name} changed ({', '.join(sorted(changes))}) at revision {rev}")
        set_etag(response, rev)
        return _service(svc, rev)

    @r.delete("/services/{name}", summary="Delete a service and all its instances")
    async def delete_service(name: str, request: Request, _: Principal = write) -> dict[str, Any]:
        rev = await reg.delete_service(name, if_match(request))
        changed(request, f"service {name} deleted at revision {rev}")
        return {"deleted": name, "revision": rev}

    @r.get("/services/{name}/instances", summary="A service's instances, filtered by version and zone")
    async def list_instances(name: str, version: str | None = None, zone: str | None = None,
                             _: Principal = read) -> list[dict[str, Any]]:
        await reg.get_service(name)  # 404 for an unknown service
        return [_instance(i, rev) for i, rev in await reg.list_instances(name)
                if (version is None or i.version == version) and (zone is None or i.zone == zone)]

    @r.get("/services/{name}/instances/{iid}", summary="One instance")
    async def get_instance(name: str, iid: str, response: Response, _: Principal = read) -> dict[str, Any]:
        inst, rev = await reg.get_instance(name, iid)
        set_etag(response, rev)
        return _instance(inst, rev)

    @r.put("/services/{name}/instances/{iid}", summary="Register or replace an instance",
           openapi_extra={**body_doc(INSTANCE_SCHEMA, {"address": "127.0.0.2", "port": 8080, "ttl": 30}),
                          "description": PUT_DOC})
    async def put_instance(name: str, iid: str, request: Request, response: Response, _: Principal = write
                           ) -> dict[str, Any]:
        d = object_body(await json_body(request))
        reject_fields(d, SERVER_OWNED, "is set by the registry, not by the caller")
        same_name(d, "service", name)
        same_name(d, "id", iid)
        inst = Instance.from_dict(d, "", service=name, id=iid, default_port=await reg.service_port(name))
        new, rev, created = await reg.put_instance(inst, if_match(request))
        changed(request, f"instance {name}/{iid} ({new.endpoint}, slot {new.slot}) "
                         f"{'registered' if created else 'updated'} at revision {rev}")
        response.status_code = 201 if created else 200
        set_etag(response, rev)
        return _instance(new, rev)

    @r.patch("/services/{name}/instances/{iid}", summary="Change some fields of an instance (drain it, ...)",
             openapi_extra={**body_doc({**INSTANCE_SCHEMA, "required": []}, {"state": "drain"}),
                            "description": PATCH_DOC})
    async def patch_instance(name: str, iid: str, request: Request, response: Response, _: Principal = write
                             ) -> dict[str, Any]:
        changes = object_body(await json_body(request))
        new, rev = await reg.patch_instance(name, iid, changes, if_match(request))
        changed(request, f"instance {name}/{iid} changed ({', '.join(f'{k}={v}' for k, v in changes.items())}) "
                         f"at revision {rev}")
        set_etag(response, rev)
        return _instance(new, rev)

    @r.delete("/services/{name}/instances/{iid}", summary="Deregister an instance (it is drained first)")
    async def delete_instance(name: str, iid: str, request: Request, _: Principal = write) -> dict[str, Any]:
        rev = await reg.delete_instance(name, iid, if_match(request))
        changed(request, f"instance {name}/{iid} deregistered at revision {rev}")
        return {"deleted": f"{name}/{iid}", "revision": rev}

    @r.post("/services/{name}/instances/{iid}/heartbeat", summary="Renew an instance's TTL")
    async def heartbeat(name: str, iid: str, _: Principal = write) -> dict[str, Any]:
        renewal = await reg.heartbeat(name, iid)
        return {"id": renewal.id, "service": renewal.service, "ttl": renewal.ttl}

    @r.post("/heartbeats", summary="Renew the TTLs of many instances at once (a watcher or sidecar)",
            openapi_extra={**body_doc(HEARTBEATS_SCHEMA, {"instances": [{"service": "web", "id": "i1"},
                                                                      {"service": "web", "id": "i2"}]}),
                           "description": HEARTBEATS_DOC})
    async def heartbeats(request: Request, _: Principal = write) -> dict[str, Any]:
        d = object_body(await json_body(request))
        reject_fields(d, tuple(k for k in d if k != "instances"), "is not a field of a heartbeat batch")
        raw = d.get("instances")
        if not isinstance(raw, list):
            raise ValidationError("instances", raw, "must be a list of {service, id}")
        limit = deps.settings.max_heartbeat_batch
        if len(raw) > limit:
            raise TooLarge("instances", len(raw), limit, "max_heartbeat_batch")
        targets: list[tuple[str, str]] = []
        bad: list[ValidationError] = []
        for i, item in enumerate(raw):
            try:
                if not isinstance(item, dict):
                    raise ValidationError(f"instances[{i}]", item, "must be an object {service, id}")
                extra = sorted(set(item) - {"service", "id"})
                if extra:
                    raise ValidationError(f"instances[{i}].{extra[0]}", item[extra[0]],
                                          "is not a field of a heartbeat (service, id)")
                targets.append((values.name(item.get("service"), f"instances[{i}].service"),
                                values.name(item.get("id"), f"instances[{i}].id")))
            except ValidationError as exc:
                bad.append(exc)
        if bad:
            raise Invalid(bad, "heartbeats")
        renewals = await reg.heartbeat_many(targets)
        return {"renewed": sum(1 for x in renewals if x.status == "renewed"),
                "results": [x.to_dict() for x in renewals]}

    @r.put("/sources/{source}/instances", tags=["sources"],
           summary="Replace every instance one source owns, in one transaction",
           description="The set is applied whole or not at all: one transaction. A set with bad items is refused "
                       "whole (422) naming every bad item in `errors` (and an instance listed twice); more than "
                       "`max_source_instances` items (setting, default 50,000) is refused with 413 naming the "
                       "limit and the setting.",
           openapi_extra=body_doc(SOURCE_SCHEMA, {"ttl": 30, "instances": [
               {"service": "web", "id": "c1", "address": "127.0.0.2", "port": 8080}]}))
    async def put_source(source: str, request: Request, _: Principal = write) -> dict[str, Any]:
        d = object_body(await json_body(request))
        reject_fields(d, tuple(k for k in d if k not in ("instances", "ttl")), "is not a field of a source set")
        raw = d.get("instances")
        if not isinstance(raw, list):
            raise ValidationError("instances", raw, "must be a list of instances")
        limit = deps.settings.max_source_instances
        if len(raw) > limit:
            raise TooLarge("instances", len(raw), limit, "max_source_instances")
        ports = {s.name: s.port for s, _ in await reg.list_services()}
        instances = []
        bad: list[ValidationError] = []
        for i, item in enumerate(raw):
            where = f"instances[{i}]"
            try:
                if isinstance(item, dict):
                    for f in SERVER_OWNED:
                        if f in item:
                            raise ValidationError(f"{where}.{f}", item[f], "is set by the registry, not by the caller")
                    if isinstance(item.get("ttl"), int | float):
                        raise ValidationError(f"{where}.ttl", item["ttl"],
                                              "is set for the whole set (the top-level ttl)")
                svc_name = item.get("service") if isinstance(item, dict) else None
                instances.append(Instance.from_dict(item, where, default_port=ports.get(svc_name)
                                                    if isinstance(svc_name, str) else None))
            except ValidationError as exc:
                bad.append(exc)
        if bad:
            raise Invalid(bad, "instances")
        ttl = d.get("ttl")
        rev, changes = await reg.replace_source(source, instances, ttl=ttl)
        if changes:
            changed(request, f"source {source}: {len(changes)} change(s) at revision {rev}")
        from haplane.overview import waiting_message

        undefined: dict[str, int] = {}
        followed: set[str] = set()
        if any(inst.service not in ports for inst in instances):
            followed = await reg.followed_services()  # dynamic backends follow services without a record
        for inst in instances:
            if inst.service not in ports and inst.service not in followed:
                undefined[inst.service] = undefined.get(inst.service, 0) + 1
        return {"source": source, "revision": rev, "instances": len(instances),
                "changes": [c.to_dict() for c in changes],
                "waiting": [waiting_message(svc, n) for svc, n in sorted(undefined.items())]}

    return r
