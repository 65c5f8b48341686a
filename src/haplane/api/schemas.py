"""The API's wire shapes as the OpenAPI document declares them, apart from the model, and ``install_contract``:
operation ids a client generator can use, a typed answer for every route, the error shape as it really is, the
bearer scheme declared.

Routes keep building their answers from the model's ``to_dict()``; these classes describe those answers (they
allow extra fields, so a field added later never breaks a client), and the tests hold the two together:
schemathesis checks every answer against the document (``response_schema_conformance``), not only the absence
of 5xx.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorItem(BaseModel):
    """One bad item of a refused batch."""

    model_config = ConfigDict(extra="forbid")
    field: str | None = Field(examples=["instances[3].address"])
    detail: str


class ErrorBody(BaseModel):
    """Every error: what kind, which field (a dotted path, or null), and a sentence saying the rule broken. A
    refused batch adds ``errors`` (every bad item); a batch past its limit (413) adds ``limit`` and ``setting``; a
    name another record holds (409 NameTaken) adds ``holder``."""

    model_config = ConfigDict(extra="forbid")
    error: str = Field(examples=["ValidationError"])
    field: str | None = Field(examples=["instances[0].port"])
    detail: str = Field(examples=["instances[0].port: 70000 must be a port (1-65535)"])
    errors: list[ErrorItem] | None = None
    limit: int | None = None
    setting: str | None = None
    holder: str | None = Field(None, examples=["service:web"])


class HealthCheckOut(_Out):
    method: str
    path: str
    http_version: str
    host: str | None = None
    interval_ms: int
    rise: int
    fall: int


class ServiceOut(_Out):
    name: str
    mode: Literal["host", "path"]
    predicate: str | None
    port: int | None
    cookie: str | None
    balance: str
    health: HealthCheckOut | None
    revision: int = Field(description="the store revision of this record (also in ETag)")


class InstanceOut(_Out):
    id: str
    service: str
    address: str
    port: int
    weight: int
    version: str | None
    zone: str | None
    group: str | None
    source: str | None
    slot: int | None = Field(description="the server slot the registry gave it (s<slot> in HAProxy)")
    state: Literal["ready", "drain", "maint"]
    healthy: bool
    ttl: float | None
    lease: str | int | None
    weight_override: int | None
    revision: int


class Deleted(_Out):
    deleted: str
    revision: int


class Heartbeat(_Out):
    id: str
    service: str
    ttl: float | None


class RenewalOut(_Out):
    service: str
    id: str
    status: Literal["renewed", "not-found", "no-ttl", "expired"]
    ttl: float | None


class HeartbeatsOut(_Out):
    renewed: int
    results: list[RenewalOut]


class ChangeOut(_Out):
    kind: str
    subject: str
    reason: str
    detail: dict[str, Any]


class SourceSetOut(_Out):
    source: str
    revision: int
    instances: int
    changes: list[ChangeOut]


class RuleOut(_Out):
    type: str
    operation: str
    value: str
    backend: str
    header: str | None = None


class FrontendOut(_Out):
    id: str
    type_: Literal["frontend"] = Field(alias="_type")
    name: str
    bind: str
    backend: str | None
    mode: Literal["http", "tcp"]
    keepalive: str
    rules: list[RuleOut]
    natives: list[str]
    tls: bool = Field(False, description="every bind terminates TLS with the certificates haplane serves "
                                         "(present only when true)")


class MemberOut(_Out):
    host: str
    port: int


class BackendOut(_Out):
    id: str
    type_: Literal["backend"] = Field(alias="_type")
    key: str
    type: Literal["static", "dynamic"]
    name: str | None
    version: str | None
    balance: str
    host: str | None
    health: dict[str, Any] | None
    mode: Literal["http", "tcp"]
    natives: list[str]
    members: list[dict[str, Any]]


class StoreState(_Out):
    url: str | None = None
    revision: int | None = None
    error: str | None = None


class HealthOut(_Out):
    """The status to anyone; the version, the store and the agent's status to a caller with the read role."""

    status: Literal["ok", "unavailable"]
    version: str | None = None
    store: StoreState | None = None
    agent: dict[str, Any] | None = None


class LoginOut(_Out):
    role: Literal["read", "write", "admin"]
    csrf: str
    expires: float


class LogoutOut(_Out):
    ok: bool


class WhoamiOut(_Out):
    role: Literal["read", "write", "admin"]
    via: Literal["bearer", "session", "open"]
    csrf: str | None


class NodeOut(_Out):
    node: str


class CertificateOut(_Out):
    name: str
    revision: int


class AcmeOrderOut(_Out):
    pass


# operation id -> (success status codes, answer); "text" for text/plain answers
TEXT = "text"
SUCCESS: dict[str, tuple[tuple[int, ...], Any]] = {
    "health": ((200, 503), HealthOut),
    "login": ((200,), LoginOut),
    "logout": ((200,), LogoutOut),
    "whoami": ((200,), WhoamiOut),
    "nodes": ((200,), list[NodeOut]),
    "generate": ((200,), TEXT),
    "haproxyConfig": ((200,), TEXT),
    "listServices": ((200,), list[ServiceOut]),
    "getService": ((200,), ServiceOut),
    "putService": ((200, 201), ServiceOut),
    "deleteService": ((200,), Deleted),
    "listInstances": ((200,), list[InstanceOut]),
    "getInstance": ((200,), InstanceOut),
    "putInstance": ((200, 201), InstanceOut),
    "deleteInstance": ((200,), Deleted),
    "heartbeat": ((200,), Heartbeat),
    "heartbeats": ((200,), HeartbeatsOut),
    "patchService": ((200,), ServiceOut),
    "patchInstance": ((200,), InstanceOut),
    "putSource": ((200,), SourceSetOut),
    "listFrontends": ((200,), list[FrontendOut]),
    "getFrontend": ((200,), FrontendOut),
    "putFrontend": ((200,), FrontendOut),  # Thalassa's shape: 200 whether created or replaced (its clients)
    "deleteFrontend": ((200,), Deleted),
    "listBackends": ((200,), list[BackendOut]),
    "getBackend": ((200,), BackendOut),
    "getMembers": ((200,), list[dict[str, Any]]),
    "putBackend": ((200,), BackendOut),
    "switchVersion": ((200,), BackendOut),
    "deleteBackend": ((200,), Deleted),
    "getMetrics": ((200,), TEXT),
    "listCertificates": ((200,), list[CertificateOut]),
    "getCertificate": ((200,), CertificateOut),
    "putCertificate": ((200, 201), CertificateOut),
    "deleteCertificate": ((200,), Deleted),
    "acmeOrders": ((200,), list[AcmeOrderOut]),
}
OPEN = frozenset({"health", "login", "logout"})  # no token needed
ERRORS = {400: "the body is not JSON, or not an object", 401: "no token, or an unknown one",
          403: "the token's role may not do this (or a session change without X-CSRF-Token)",
          404: "no such record", 409: "a conflicting record exists", 412: "If-Match names a stale revision",
          422: "a field breaks a rule (the field and the rule are named)",
          429: "too many wrong tokens from this address: wait Retry-After seconds (setting login_failures_allowed)",
          503: "the store (or HAProxy) does not answer"}
WRITE_ONLY_ERRORS = (409, 412)
BATCHES = frozenset({"heartbeats", "putSource"})  # may answer 413: more items than a setting allows
TOO_LARGE = ("a body larger than max_body_bytes (max_bulk_body_bytes on bulk writes), or more items than the "
             "limit (the limit and the setting that raises it are named)")
SESSION_COOKIE = "haplane_session"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"  # haplane.model.values.name (a test holds the two together)


def operation_id(route: APIRoute) -> str:
    """The route function's name in camelCase: ``list_services`` → ``listServices`` (stable, unique)."""
    head, *rest = route.name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _schema_of(answer: Any, components: dict[str, Any]) -> dict[str, Any]:
    from pydantic import TypeAdapter

    schema = TypeAdapter(answer).json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    if "title" in schema and "$ref" not in schema and schema.get("type") == "array":
        schema.pop("title")
    if schema.get("type") == "object" and "properties" in schema and "title" in schema:
        name = schema["title"]
        components.setdefault(name, schema)
        return {"$ref": f"#/components/schemas/{name}"}
    return schema


def contract(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app`` with the answers, errors and security of ``SUCCESS`` / ``ERRORS``."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                      tags=app.openapi_tags)
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["ErrorBody"] = ErrorBody.model_json_schema()
    doc["components"]["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer",
                       "description": "a token of role read, write or admin (HAPLANE_TOKEN, HAPLANE_TOKENS)"},
        "sessionCookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                          "description": "the web UI's session (POST /auth/login); changes also need the "
                                         "X-CSRF-Token header"},
    }
    doc["security"] = [{"bearerAuth": []}, {"sessionCookie": []}]
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for _path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            oid = op.get("operationId", "")
            for param in op.get("parameters", ()):
                if param.get("in") == "path" and param.get("schema", {}).get("type") == "string":
                    # every name in a path is a record's name: the rule the model holds it to (values.name)
                    param["schema"]["pattern"] = f"^{NAME_PATTERN}$"
            responses: dict[str, Any] = {}
            codes, answer = SUCCESS.get(oid, ((200,), None))
            for code in codes:
                if answer == TEXT:
                    content: dict[str, Any] = {"text/plain": {"schema": {"type": "string"}}}
                elif answer is None:
                    content = op.get("responses", {}).get("200", {}).get("content", {})
                else:
                    content = {"application/json": {"schema": _schema_of(answer, components)}}
                responses[str(code)] = {"description": "created" if code == 201 else (
                    "the store does not answer" if code == 503 else "OK"), "content": content}
            for code, why in ERRORS.items():
                if str(code) in responses:
                    continue
                if (oid in OPEN and code == 403) or (oid in OPEN - {"login"} and code in (401, 429)):
                    continue  # open to all (login answers 401 for a token it does not know)
                if method == "get" and code in WRITE_ONLY_ERRORS:
                    continue
                responses[str(code)] = {"description": why, "content": error_ref}
            if oid in BATCHES or "requestBody" in op:
                responses["413"] = {"description": TOO_LARGE, "content": error_ref}
            if method in ("put", "post", "patch", "delete") and oid not in OPEN:
                responses.setdefault("405", {"description": "method not allowed", "content": error_ref})
            op["responses"] = responses
            if oid in OPEN:
                op["security"] = []
    return doc


def install_contract(app: FastAPI) -> None:
    """The document above as ``/openapi.json`` (built once); operation ids come from ``operation_id``, given to
    ``FastAPI(generate_unique_id_function=...)``."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "doc" not in cache:
            cache["doc"] = contract(app)
        doc: dict[str, Any] = cache["doc"]
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
