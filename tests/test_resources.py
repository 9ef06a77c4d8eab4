"""The resources file: what it may declare, and how documents are checked against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from realtime_app.data.resources import DEFAULT_RESOURCES, MAX_SORTABLE, ResourceFileError, Resources, default_resources
from realtime_app.errors import InvalidDocument, UnknownCollection


def collection(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "things", "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def parse(*entries: dict[str, Any]) -> Resources:
    return Resources.from_dict({"collections": list(entries)})


def test_the_default_set() -> None:
    resources = default_resources()
    assert resources.names == ["services", "incidents"]
    services = resources.get("services")
    assert services.may_read({"viewer"}) and not services.may_write({"viewer"}) and services.may_write({"editor"})
    assert services.may_read({"admin"}) and services.may_write({"admin"})
    assert services.public({"viewer"})["permissions"] == {"read": ["admin", "editor", "viewer"], "write": ["admin", "editor"]}
    assert (services.public({"viewer"})["may_write"], services.public({"editor"})["may_write"]) == (False, True)
    assert resources.get("incidents").public({"viewer"})["references"] == {"service_id": "services"}
    assert services.public({"viewer"})["references"] == {}
    with pytest.raises(UnknownCollection):
        resources.get("realtime_users")
    assert DEFAULT_RESOURCES["collections"][0]["schema"].get("additionalProperties") is None  # parsing never mutates the input


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "resources.json"
    path.write_text(json.dumps({"collections": [collection(permissions={"read": ["editor"], "write": []}, sortable=["name"])]}))
    things = Resources.from_file(path).get("things")
    assert (things.read_roles, things.write_roles, things.sortable) == ({"editor"}, frozenset(), ("name",))
    assert not things.may_write({"editor"}) and things.may_write({"admin"})
    path.write_text("{not json")
    with pytest.raises(ResourceFileError, match="cannot read"):
        Resources.from_file(path)
    with pytest.raises(ResourceFileError, match="cannot read"):
        Resources.from_file(tmp_path / "missing.json")


@pytest.mark.parametrize(("data", "message"), [
    ({}, "at least one"),
    ({"collections": []}, "at least one"),
    ({"collections": [collection(), collection()]}, "unique"),
    ({"collections": ["things"]}, "each collection"),
    ({"collections": [collection(name="Things")]}, "lower-case"),
    ({"collections": [collection(name="auth")]}, "lower-case"),
    ({"collections": [collection(name="realtime_users")]}, "lower-case"),
    ({"collections": [collection(schema={"type": "array"})]}, "type object"),
    ({"collections": [collection(schema={"type": "object", "properties": {"tenant": {}}})]}, "server-owned"),
    ({"collections": [collection(schema={"type": "object", "properties": {"$x": {}}})]}, "invalid field names"),
    ({"collections": [collection(schema={"type": "object", "properties": {"a.b": {}}})]}, "invalid field names"),
    ({"collections": [collection(schema={"type": "object", "properties": {"n": {"type": "nope"}}})]}, "invalid JSON Schema"),
    ({"collections": [collection(permissions={"read": ["root"]})]}, "unknown roles"),
    ({"collections": [collection(permissions=["viewer"])]}, "permissions is an object"),
    ({"collections": [collection(permissions={"read": "viewer"})]}, "permissions is an object"),
    ({"collections": [collection(permissions={"write": [{"role": "editor"}]})]}, "permissions is an object"),
    ({"collections": [collection(sortable=["missing"])]}, "not declared"),
    ({"collections": [collection(sortable="name")]}, "list of field names"),
    ({"collections": [collection(sortable=[{"name": 1}])]}, "list of field names"),
    ({"collections": [collection(references=["name"])]}, "references is an object"),
    ({"collections": [collection(references={"name": 1})]}, "references is an object"),
    ({"collections": [collection(references={"owner": "things"})]}, "'owner' is not a declared property"),
    ({"collections": [collection(schema={"type": "object", "properties": {"n": {"type": "integer"}}}, references={"n": "things"})]},
     "'n' must have type string"),
    ({"collections": [collection(schema={"type": "object", "properties": {"n": {}}}, references={"n": "things"})]},
     "'n' must have type string"),
    ({"collections": [collection(references={"name": "people"})]}, "not declared: \\['people'\\]"),
])
def test_malformed_files_are_refused_with_a_reason(data: Any, message: str) -> None:
    with pytest.raises(ResourceFileError, match=message):
        Resources.from_dict(data)


def test_references_name_string_fields_of_declared_collections() -> None:
    people = {"name": "people", "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}
    things = collection(schema={"type": "object", "properties": {
        "owner": {"type": "string"}, "parent": {"type": ["string", "null"]}, "name": {"type": "string"}}},
        references={"owner": "people", "parent": "things"})
    resources = parse(things, people)  # a reference may point forward in the file, or at its own collection
    assert resources.get("things").references == {"owner": "people", "parent": "things"}
    assert resources.get("people").references == {}


def test_sortable_fields_are_bounded_by_mongodb_index_limit() -> None:
    properties = {f"f{i}": {"type": "integer"} for i in range(MAX_SORTABLE + 1)}
    schema = {"type": "object", "properties": properties}
    parse(collection(schema=schema, sortable=list(properties)[:MAX_SORTABLE]))
    with pytest.raises(ResourceFileError, match="sortable"):
        parse(collection(schema=schema, sortable=list(properties)))


def test_check_document_names_each_bad_field() -> None:
    things = parse(collection(schema={"type": "object", "properties": {
        "name": {"type": "string"}, "size": {"type": "integer"}, "meta": {"type": "object", "properties": {"k": {"type": "string"}},
                                                                          "additionalProperties": False},
    }, "required": ["name"]})).get("things")
    things.check_document({"name": "x", "size": 2**63 - 1, "meta": {"k": "v"}})

    def fields(document: dict[str, Any]) -> list[str]:
        with pytest.raises(InvalidDocument) as raised:
            things.check_document(document)
        return [error.field for error in raised.value.errors]

    assert sorted(fields({"size": "big"})) == ["name", "size"]
    assert sorted(fields({"name": "x", "a": 1, "b": 2, 'say "hi"': 3, "it's": 4})) == sorted(["a", "b", 'say "hi"', "it's"])
    assert fields({"name": "x", "meta": {"k": "v", "extra": 1, "more": 2}}) == ["meta.extra", "meta.more"]
    assert sorted(fields({"name": "x", "$set": 1, "meta": {"a.b": 1}})) == ["$set", "meta.a.b"]
    assert fields({"name": "x", "size": 2**64}) == ["size"]
    with pytest.raises(InvalidDocument) as raised:
        things.check_field_names({"$unset": None, "ok": None})
    assert [error.field for error in raised.value.errors] == ["$unset"]
