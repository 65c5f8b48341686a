"""The registry as one document: Thalassa's persistence file read as it is; a partly invalid document names
every bad row with its path; an import plan touches exactly the sections the document carries."""

from __future__ import annotations

import copy
import json

import pytest
from tests.support.fixtures import load_json

from haplane.errors import ValidationError
from haplane.model.records import Instance, Registry, Service
from haplane.transfer import DocumentInvalid, parse_document, plan_import, to_document

THALASSA = load_json("thalassa", "persistence.json")


def test_thalassas_persistence_file_reads_as_it_is() -> None:
    doc = parse_document(copy.deepcopy(THALASSA))
    assert doc.origin == "thalassa"
    assert doc.services is None and doc.instances is None and doc.tables is None, "left alone on import"
    assert [f.name for f in doc.frontends or ()] == ["myapp"]
    fe = (doc.frontends or ())[0]
    assert fe.backend == "live" and [r.backend for r in fe.rules] == ["staged", "assets"]
    by_name = {b.name: b for b in doc.backends or ()}
    assert (by_name["live"].type, by_name["live"].service, by_name["live"].version) == ("dynamic", "myapp", "1.0.0")
    staged = by_name["staged"]
    assert staged.health is not None and staged.health.host == "staged.myapp.com", "the backend's host"
    assert [m.to_dict() for m in by_name["assets"].members] == [{"host": "10.10.240.174", "port": "8080"},
                                                                 {"host": "10.10.240.206", "port": "8080"}]
    assert len(doc.notes) == 1 and "backends[0]" in doc.notes[0] and "not kept" in doc.notes[0]


def test_a_partly_invalid_document_lists_every_bad_row_with_its_path() -> None:
    data = copy.deepcopy(THALASSA)
    data["frontends"] += [dict(copy.deepcopy(data["frontends"][0]), key=f"fe{i}", id=f"frontend/fe{i}")
                          for i in range(1, 4)]
    data["frontends"][3]["rules"][0]["operation"] = "hdr_sub"
    data["frontends"][1]["bind"] = "*:99999"
    data["backends"][2]["balance"] = "fastest"
    data["backends"][0]["id"] = "backend/other"
    with pytest.raises(DocumentInvalid) as err:
        parse_document(data)
    paths = [p for p, _ in err.value.problems]
    assert paths == ["frontends[1].bind[0]", "frontends[3].rules[0].operation", "backends[0].id",
                     "backends[2].balance"]
    assert "frontends[3].rules[0].operation" in str(err.value)
    assert err.value.to_dict()["problems"][1]["path"] == "frontends[3].rules[0].operation"


def test_neither_shape_is_refused_naming_both() -> None:
    with pytest.raises(ValidationError, match="neither a haplane export"):
        parse_document({"frontends": []})
    with pytest.raises(ValidationError, match="JSON object"):
        parse_document([])


def _registry() -> Registry:
    return Registry(services=(Service("web", "host", "web.example.com", 8080),),
                    instances=(Instance("i1", "web", "127.0.0.2", 8080, slot=3),))


def test_an_export_reads_back_and_plans_nothing_over_itself() -> None:
    exported = to_document(_registry(), {"astro": {}}, {"web": {"freed": {}, "held": [3]}}, {})
    text = json.dumps(exported)
    doc = parse_document(json.loads(text))
    current = {k: json.dumps(v) for section in _keys(doc).values() for k, v in section.items()}
    plan = plan_import(doc, current)
    assert plan.empty and plan.changes == ()
    assert (doc.instances or ())[0].slot == 3, "slots travel with their instances"


def _keys(doc: object) -> dict[str, dict[str, object]]:
    from haplane.transfer import document_keys

    return document_keys(doc)  # type: ignore[arg-type]


def test_a_plan_touches_only_the_sections_the_document_carries() -> None:
    current = {"/haplane/services/web": json.dumps(Service("web").to_dict()),
               "/haplane/frontends/old": "{}", "/haplane/sources/docker-a": "{}",
               "/haplane/backends/live": json.dumps({"x": 1})}
    plan = plan_import(parse_document(copy.deepcopy(THALASSA)), current)
    assert plan.deletes == ("/haplane/frontends/old",)
    assert set(plan.puts) == {"/haplane/frontends/myapp", "/haplane/backends/live", "/haplane/backends/staged",
                              "/haplane/backends/assets"}
    assert plan.changes == ("+ backends assets", "~ backends live", "+ backends staged", "+ frontends myapp",
                            "- frontends old")
