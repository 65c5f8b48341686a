"""The whole registry as one JSON document (``haplane export`` / ``import``, ``GET /export`` / ``POST /import``),
and Thalassa's ``--persistence`` file read as one. PURE: no I/O; the registry writes what ``plan_import`` says.

The document::

    {"haplane": 1, "revision": 42,
     "services": [Service...], "instances": [Instance... (with their slots)],
     "frontends": [FrontendSpec...], "backends": [BackendSpec...],
     "tables": {"TABLE": [{"service": ..., "containers": [...]}...]},
     "allocations": {"SERVICE": {"freed": {...}, "held": [...]}},
     "extra": {"KEY UNDER /haplane/": {...}}}

Each section present replaces that section of the registry (what the document does not list is deleted); a
section the document leaves out is left alone. A haplane export has every section; Thalassa's file
(``{"version": 1, "frontends": [...], "backends": [...]}``, rows carrying ``key``, ``_type`` and ``id``) has
frontends and backends only, so importing it leaves services, instances and tables as they are. A dynamic
backend's ``members`` in Thalassa's file are the registrations Thalassa last saw: they are not kept (they come
from the service's instances, as in Thalassa).

``parse_document`` validates every row and reports every bad one with its path
(``frontends[3].rules[0].operation: ...``), so an import either applies whole or changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from haplane.errors import HaplaneError, ValidationError
from haplane.model import values as v
from haplane.model.records import BackendSpec, FrontendSpec, Instance, Registry, Service
from haplane.registry.payload import table_service_from_dict, table_service_to_dict
from haplane.store import keys

FORMAT = 1
SECTIONS = ("services", "instances", "frontends", "backends", "tables", "allocations", "extra")


class DocumentInvalid(ValidationError):
    """A document with bad rows: every one of them, each with its path. Nothing was written."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        first_field, first_detail = problems[0]
        super().__init__(first_field, None, first_detail)
        self.args = ("; ".join(f"{p}: {d}" for p, d in problems),)

    def __str__(self) -> str:
        return f"{len(self.problems)} bad row(s): " + "; ".join(f"{p}: {d}" for p, d in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"error": "DocumentInvalid", "field": self.problems[0][0], "detail": str(self),
                "problems": [{"path": p, "detail": d} for p, d in self.problems]}


@dataclass(frozen=True)
class Document:
    """A parsed document: the sections it carries (None: not in the document, left alone on import)."""

    services: tuple[Service, ...] | None = None
    instances: tuple[Instance, ...] | None = None
    frontends: tuple[FrontendSpec, ...] | None = None
    backends: tuple[BackendSpec, ...] | None = None
    tables: dict[str, dict[str, dict[str, Any]]] | None = None  # table -> service -> stored row
    allocations: dict[str, dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None  # other records under the registry's root, by key relative to it
    origin: str = "haplane"  # or "thalassa"
    revision: int = 0
    notes: tuple[str, ...] = field(default=())


def _problem(exc: HaplaneError) -> tuple[str, str]:
    if isinstance(exc, ValidationError):
        return exc.field or "?", str(exc.detail) if hasattr(exc, "detail") else str(exc)
    return "?", str(exc)


def _rows(data: dict[str, Any], section: str, problems: list[tuple[str, str]]) -> list[Any] | None:
    if section not in data:
        return None
    raw = data[section]
    if not isinstance(raw, list):
        problems.append((section, f"must be a list, not {type(raw).__name__}"))
        return None
    return raw


def parse_document(data: Any) -> Document:
    """A haplane export or a Thalassa persistence file, validated whole. Raises ``DocumentInvalid`` listing every
    bad row, or a ``ValidationError`` for a document of neither shape."""
    if not isinstance(data, dict):
        raise ValidationError("document", type(data).__name__, "must be a JSON object (a haplane export or "
                                                               "Thalassa's persistence file)")
    if "haplane" in data:
        return _parse_haplane(data)
    if data.get("version") == 1 and ("frontends" in data or "backends" in data):
        return _parse_thalassa(data)
    raise ValidationError("document", sorted(data)[:6], "is neither a haplane export (\"haplane\": 1) nor "
                                                        "Thalassa's persistence file (\"version\": 1 with "
                                                        "frontends and backends)")


def _parse_haplane(data: dict[str, Any]) -> Document:
    problems: list[tuple[str, str]] = []
    if data.get("haplane") != FORMAT:
        raise ValidationError("haplane", data.get("haplane"), f"must be {FORMAT}: this haplane reads format {FORMAT}")
    for key in data:
        if key not in (*SECTIONS, "haplane", "revision"):
            problems.append((key, "is not a section of the document; sections: " + ", ".join(SECTIONS)))
    parsed: dict[str, Any] = {}
    for section, parse in (("services", lambda d, w: Service.from_dict(d, w)),
                           ("instances", lambda d, w: Instance.from_dict(d, w)),
                           ("frontends", lambda d, w: FrontendSpec.from_dict(d, w)),
                           ("backends", lambda d, w: BackendSpec.from_dict(d, w))):
        rows = _rows(data, section, problems)
        if rows is None:
            continue
        out = []
        for i, row in enumerate(rows):
            where = f"{section}[{i}]"
            try:
                out.append(parse(row, where))
            except HaplaneError as exc:
                problems.append(_problem(exc))
        parsed[section] = tuple(out)
    _duplicates(parsed, problems)
    if "tables" in data:
        parsed["tables"] = _tables(data["tables"], problems)
    for section in ("allocations", "extra"):
        if section in data:
            raw = data[section]
            if not isinstance(raw, dict) or not all(isinstance(val, dict) for val in raw.values()):
                problems.append((section, "must be an object of JSON objects"))
            else:
                if section == "extra":
                    for key in raw:
                        if not isinstance(key, str) or key.startswith("/") or ".." in key.split("/") or not key:
                            problems.append((f"extra[{key!r}]", "must be a key relative to the registry's root"))
                parsed[section] = dict(raw)
    if problems:
        raise DocumentInvalid(problems)
    revision = data.get("revision", 0)
    return Document(**parsed, origin="haplane", revision=revision if isinstance(revision, int) else 0)


def _tables(raw: Any, problems: list[tuple[str, str]]) -> dict[str, dict[str, dict[str, Any]]] | None:
    if not isinstance(raw, dict):
        problems.append(("tables", "must be an object: table -> list of stored services"))
        return None
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for table, rows in raw.items():
        try:
            v.name(table, f"tables[{table!r}]")
        except ValidationError as exc:
            problems.append(_problem(exc))
            continue
        if not isinstance(rows, list):
            problems.append((f"tables[{table!r}]", "must be a list of stored services"))
            continue
        out[table] = {}
        for i, row in enumerate(rows):
            where = f"tables[{table!r}][{i}]"
            try:
                ts = table_service_from_dict(row)
            except HaplaneError as exc:
                field_, detail = _problem(exc)
                problems.append((f"{where}.{field_}", detail))
                continue
            except (KeyError, TypeError, ValueError) as exc:
                problems.append((where, f"is not a stored service ({type(exc).__name__}: {exc})"))
                continue
            out[table][ts.service.name] = table_service_to_dict(ts)
    return out


def _duplicates(parsed: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    for section in ("services", "frontends", "backends"):
        seen: dict[str, int] = {}
        for i, rec in enumerate(parsed.get(section, ())):
            if rec.name in seen:
                problems.append((f"{section}[{i}].name", f"{rec.name!r} is also {section}[{seen[rec.name]}]"))
            seen.setdefault(rec.name, i)
    seen_i: dict[tuple[str, str], int] = {}
    for i, inst in enumerate(parsed.get("instances", ())):
        key = (inst.service, inst.id)
        if key in seen_i:
            problems.append((f"instances[{i}].id", f"{inst.id!r} of {inst.service!r} is also instances[{seen_i[key]}]"))
        seen_i.setdefault(key, i)
    services = {s.name for s in parsed.get("services", ())}
    if "services" in parsed:
        for i, inst in enumerate(parsed.get("instances", ())):
            if inst.service not in services:
                problems.append((f"instances[{i}].service", f"{inst.service!r} is not a service of the document"))


def _parse_thalassa(data: dict[str, Any]) -> Document:
    problems: list[tuple[str, str]] = []
    notes: list[str] = []
    frontends: list[FrontendSpec] = []
    backends: list[BackendSpec] = []
    for section, kind, out in (("frontends", "frontend", frontends), ("backends", "backend", backends)):
        rows = _rows(data, section, problems) or []
        for i, row in enumerate(rows):
            where = f"{section}[{i}]"
            if isinstance(row, dict) and row.get("_type", kind) != kind:
                problems.append((f"{where}._type", f"{row.get('_type')!r}: a {section} row has _type {kind!r}"))
                continue
            try:
                if kind == "frontend":
                    out.append(FrontendSpec.from_dict(row, where))  # type: ignore[arg-type]
                else:
                    if isinstance(row, dict) and row.get("type") == "dynamic" and row.get("members"):
                        notes.append(f"{where}: the {len(row['members'])} member(s) Thalassa last saw are not "
                                     f"kept; backend {row.get('key')!r} follows service {row.get('name')!r} "
                                     f"version {row.get('version')!r}")
                        row = {k: val for k, val in row.items() if k != "members"}
                    out.append(BackendSpec.from_dict(row, where))  # type: ignore[arg-type]
            except HaplaneError as exc:
                problems.append(_problem(exc))
    for key in data:
        if key not in ("version", "frontends", "backends"):
            problems.append((key, "is not part of Thalassa's persistence file (version, frontends, backends)"))
    parsed: dict[str, Any] = {"frontends": tuple(frontends), "backends": tuple(backends)}
    _duplicates(parsed, problems)
    if problems:
        raise DocumentInvalid(problems)
    return Document(frontends=tuple(frontends) if "frontends" in data else None,
                    backends=tuple(backends) if "backends" in data else None, origin="thalassa",
                    notes=tuple(notes))


def to_document(registry: Registry, tables: dict[str, dict[str, dict[str, Any]]],
                allocations: dict[str, dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """The export of a registry read at one revision: every section, rows sorted, so two exports of the same
    registry are the same text."""
    return {
        "haplane": FORMAT,
        "revision": registry.revision,
        "services": [s.to_dict() for s in sorted(registry.services, key=lambda s: s.name)],
        "instances": [{**i.to_dict(), "lease": 0} for i in sorted(registry.instances, key=lambda i: (i.service, i.id))],
        "frontends": [f.to_dict() for f in sorted(registry.frontends, key=lambda f: f.name)],
        "backends": [b.to_dict() for b in sorted(registry.backends, key=lambda b: b.name)],
        "tables": {t: [rows[s] for s in sorted(rows)] for t, rows in sorted(tables.items())},
        "allocations": dict(sorted(allocations.items())),
        "extra": dict(sorted(extra.items())),
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=False) + "\n"


# --- what an import writes ---------------------------------------------------------------------------------------

ROOT = keys.ROOT
# the document section of each kind of key (store.keys); another kind under the root (certificates, ACME state,
# a key of a newer haplane) is carried as "extra"
_SECTIONS: dict[str, str] = {"service": "services", "instance": "instances", "frontend": "frontends",
                             "backend": "backends", "table": "tables", "alloc": "allocations"}
_BARE_FOLDERS = frozenset({"services", "instances", "frontends", "backends", "tables", "alloc"})
NOT_PORTABLE = frozenset({"source"})  # source sets' leases: bound to the store that granted them


def section_of(key: str) -> str | None:
    """The document section a store key belongs to; None for keys outside the registry or not portable."""
    if not key.startswith(ROOT):
        return None
    what = keys.decode(key)
    if what is None:  # not a key haplane writes: carried as it is, unless it is a bare folder name
        return None if key[len(ROOT):] in _BARE_FOLDERS else "extra"
    if what.kind in NOT_PORTABLE:
        return None
    return _SECTIONS.get(what.kind, "extra")


def document_keys(doc: Document) -> dict[str, dict[str, Any]]:
    """section -> {store key: value} for every section the document carries."""
    out: dict[str, dict[str, Any]] = {}
    if doc.services is not None:
        out["services"] = {keys.service_key(s.name): s.to_dict() for s in doc.services}
    if doc.instances is not None:
        out["instances"] = {keys.instance_key(i.service, i.id): {**i.to_dict(), "lease": 0}
                            for i in doc.instances}
    if doc.frontends is not None:
        out["frontends"] = {keys.frontend_key(f.name): f.to_dict() for f in doc.frontends}
    if doc.backends is not None:
        out["backends"] = {keys.backend_key(b.name): b.to_dict() for b in doc.backends}
    if doc.tables is not None:
        out["tables"] = {keys.table_prefix(t) + s: row for t, rows in doc.tables.items() for s, row in rows.items()}
    if doc.allocations is not None:
        out["allocations"] = {keys.alloc_key(s): rec for s, rec in doc.allocations.items()}
    if doc.extra is not None:
        out["extra"] = {ROOT + rel: value for rel, value in doc.extra.items()}
    return out


@dataclass(frozen=True)
class ImportPlan:
    puts: dict[str, str]  # key -> value text
    deletes: tuple[str, ...]
    changes: tuple[str, ...]  # "+ frontends myapp", "~ backends live", "- services old", in key order

    @property
    def empty(self) -> bool:
        return not self.puts and not self.deletes


def plan_import(doc: Document, current: dict[str, str]) -> ImportPlan:
    """What to write so that every section the document carries holds exactly its rows. ``current``: the
    registry's keys and values now (every key under the root)."""
    wanted = document_keys(doc)
    puts: dict[str, str] = {}
    deletes: list[str] = []
    changes: list[tuple[str, str]] = []
    for section, rows in wanted.items():
        for key, value in rows.items():
            old = current.get(key)
            if old is not None and _same(old, value):
                continue
            puts[key] = json.dumps(value, separators=(",", ":"))
            changes.append((key, f"{'+' if old is None else '~'} {section} {_label(key)}"))
    for key in current:
        kind = section_of(key)
        if kind is not None and kind in wanted and key not in wanted[kind]:
            deletes.append(key)
            changes.append((key, f"- {kind} {_label(key)}"))
    return ImportPlan(puts, tuple(sorted(deletes)), tuple(text for _, text in sorted(changes)))


def _label(key: str) -> str:
    rel = key[len(ROOT):]
    return rel.split("/", 1)[1] if "/" in rel and section_of(key) != "extra" else rel


def _same(old_text: str, value: Any) -> bool:
    try:
        return bool(json.loads(old_text) == value)
    except ValueError:
        return False


def apply_to_registry(registry: Registry, doc: Document) -> Registry:
    """The records compose reads after importing ``doc`` into ``registry`` (to check the config before writing)."""
    from dataclasses import replace

    return replace(registry,
                   services=registry.services if doc.services is None else doc.services,
                   instances=registry.instances if doc.instances is None else doc.instances,
                   frontends=registry.frontends if doc.frontends is None else doc.frontends,
                   backends=registry.backends if doc.backends is None else doc.backends)
