"""The served collections: each with a JSON Schema, per-role permissions, sortable fields and
references to other collections.

A resources file is JSON of this shape (see README, "Declaring collections"):

    {"collections": [{"name": "incidents",
                      "schema": {"type": "object", "properties": {...}, "required": [...]},
                      "permissions": {"read": ["viewer", "editor"], "write": ["editor"]},
                      "sortable": ["severity", "created_at"],
                      "references": {"service_id": "services"}}]}

Admins may always read and write. Documents may only hold declared properties. A reference
says which collection's document ids a string field holds, so clients can show that
document instead of its id; the server does not check that the document exists.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from realtime_app.errors import FieldError, InvalidDocument, UnknownCollection

ROLES = ("viewer", "editor", "admin")
SERVER_FIELDS = ("id", "tenant", "version", "created_at", "updated_at")
COLLECTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Names under /api/v1 that are routes of their own, and the users' collection.
RESERVED_NAMES = {"auth", "collections", "stats", "health", "ready", "openapi", "realtime_users"}
MAX_FIELD_NAME_LENGTH = 128
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SCALAR_TYPES = {"string", "number", "integer", "boolean", "null"}
# MongoDB allows 64 indexes per collection: _id's own, (tenant, _id), and two for each sortable field.
MAX_SORTABLE = 31


class ResourceFileError(ValueError):
    """The resources file is malformed; the message names the collection and the problem."""


@dataclass(frozen=True)
class Resource:
    name: str
    schema: dict[str, Any]
    read_roles: frozenset[str]
    write_roles: frozenset[str]
    sortable: tuple[str, ...]
    references: dict[str, str]

    @functools.cached_property
    def _validator(self) -> Draft202012Validator:
        return Draft202012Validator(self.schema)

    @property
    def fields(self) -> dict[str, dict[str, Any]]:
        return dict(self.schema.get("properties", {}))

    @property
    def filterable(self) -> set[str]:
        """Scalar fields only: filters compare whole values, never array elements."""
        scalar = {name for name, spec in self.fields.items() if _only_scalars(spec)}
        return scalar | {"id", "tenant", "version"}

    def may_read(self, roles: Iterable[str]) -> bool:
        return "admin" in roles or bool(self.read_roles & set(roles))

    def may_write(self, roles: Iterable[str]) -> bool:
        return "admin" in roles or bool(self.write_roles & set(roles))

    def check_document(self, fields: dict[str, Any]) -> None:
        """Raise InvalidDocument naming every bad field; `fields` excludes server-owned ones."""
        errors = list(_bad_names_or_values(fields, ""))
        if not errors:
            for error in sorted(self._validator.iter_errors(fields), key=lambda e: list(e.path)):
                errors.extend(_field_errors(error))
        if errors:
            raise InvalidDocument(f"the document does not match the {self.name} schema", errors)

    def check_field_names(self, patch: dict[str, Any]) -> None:
        """A merge patch's names, checked even where it deletes (null), which the merged document cannot show."""
        errors = list(_bad_names_or_values(patch, ""))
        if errors:
            raise InvalidDocument("the patch names fields MongoDB would misread", errors)

    def public(self, roles: Iterable[str]) -> dict[str, Any]:
        """The declaration as clients see it, with whether `roles` may write."""
        return {
            "name": self.name,
            "schema": self.schema,
            "permissions": {"read": sorted(self.read_roles | {"admin"}), "write": sorted(self.write_roles | {"admin"})},
            "may_write": self.may_write(roles),
            "sortable": list(self.sortable),
            "references": dict(self.references),
        }


def _only_scalars(spec: dict[str, Any]) -> bool:
    """Whether a property's schema admits scalars only; an untyped one may hold arrays, which MongoDB matches by element."""
    if "type" in spec:
        kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        return bool(kinds) and all(kind in SCALAR_TYPES for kind in kinds)
    options = spec["enum"] if "enum" in spec else [spec["const"]] if "const" in spec else None
    return options is not None and not any(isinstance(option, (dict, list)) for option in options)


def _field_errors(error: Any) -> list[FieldError]:
    path = [*map(str, error.path)]
    if error.validator == "additionalProperties" and error.validator_value is False and isinstance(error.instance, dict):
        # One entry per unexpected name; jsonschema's message lists them all and quotes them with repr().
        declared = error.schema.get("properties", {})
        patterns = list(error.schema.get("patternProperties", {}))
        unexpected = [key for key in error.instance if key not in declared and not any(re.search(p, key) for p in patterns)]
        return [FieldError(".".join([*path, key]), "is not a declared field") for key in unexpected]
    if error.validator == "required":
        match = re.match(r"'(.+)' is a required property", error.message)
        if match:
            return [FieldError(".".join([*path, match.group(1)]), error.message)]
    return [FieldError(".".join(path) or "(document)", error.message)]


def _bad_names_or_values(value: Any, prefix: str) -> Iterable[FieldError]:
    """Field names MongoDB would treat as operators or paths, anywhere in the document."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key or len(key) > MAX_FIELD_NAME_LENGTH:
                yield FieldError(path, "field names must be 1-128 characters, not start with '$' and not contain '.'")
            else:
                yield from _bad_names_or_values(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _bad_names_or_values(item, f"{prefix}.{index}")
    elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        yield FieldError(prefix, "integers must fit in 64 bits")


class Resources:
    """The collections this server serves, by name."""

    def __init__(self, resources: Iterable[Resource]):
        self._by_name = {r.name: r for r in resources}

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> Resource:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownCollection(f"no collection named {name[:80]!r}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> Resources:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ResourceFileError(f"cannot read resources file {path}: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Resources:
        if not isinstance(data, dict) or not isinstance(data.get("collections"), list) or not data["collections"]:
            raise ResourceFileError('a resources file is {"collections": [...]} with at least one collection')
        resources = [_parse_resource(entry) for entry in data["collections"]]
        names = [r.name for r in resources]
        if len(set(names)) != len(names):
            raise ResourceFileError("collection names must be unique")
        for resource in resources:
            unknown = sorted({target for target in resource.references.values() if target not in names})
            if unknown:
                raise ResourceFileError(f"{resource.name}: references name collections that are not declared: {unknown}")
        return cls(resources)


def _parse_resource(entry: Any) -> Resource:
    if not isinstance(entry, dict):
        raise ResourceFileError("each collection is an object with name, schema, permissions")
    name = entry.get("name")
    if not isinstance(name, str) or not COLLECTION_NAME.match(name) or name in RESERVED_NAMES:
        raise ResourceFileError(f"collection name {name!r}: use lower-case letters, digits and _ (not {sorted(RESERVED_NAMES)})")
    schema = copy.deepcopy(entry.get("schema"))
    if not isinstance(schema, dict) or schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise ResourceFileError(f"{name}: schema must be a JSON Schema with type object and properties")
    clash = set(schema["properties"]) & set(SERVER_FIELDS)
    if clash:
        raise ResourceFileError(f"{name}: {sorted(clash)} are server-owned and cannot be declared")
    bad = [field for field in schema["properties"] if list(_bad_names_or_values({field: None}, ""))]
    if bad:
        raise ResourceFileError(f"{name}: invalid field names {bad}")
    schema.setdefault("additionalProperties", False)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ResourceFileError(f"{name}: invalid JSON Schema: {exc.message}") from None
    permissions = entry.get("permissions", {})
    role_lists = [permissions.get(kind, []) for kind in ("read", "write")] if isinstance(permissions, dict) else [None]
    if not all(isinstance(roles, list) and all(isinstance(role, str) for role in roles) for roles in role_lists):
        raise ResourceFileError(f'{name}: permissions is an object such as {{"read": ["viewer"], "write": ["editor"]}}')
    read = frozenset(permissions.get("read", ["viewer", "editor"]))
    write = frozenset(permissions.get("write", ["editor"]))
    unknown_roles = (read | write) - set(ROLES)
    if unknown_roles:
        raise ResourceFileError(f"{name}: unknown roles {sorted(unknown_roles)}; roles are {ROLES}")
    sortable_list = entry.get("sortable", [])
    if not isinstance(sortable_list, list) or not all(isinstance(field, str) for field in sortable_list):
        raise ResourceFileError(f"{name}: sortable is a list of field names")
    sortable = tuple(sortable_list)
    undeclared = [f for f in sortable if f not in schema["properties"] and f not in ("created_at", "updated_at")]
    if undeclared:
        raise ResourceFileError(f"{name}: sortable fields {undeclared} are not declared properties")
    if len(set(sortable)) > MAX_SORTABLE:
        raise ResourceFileError(f"{name}: at most {MAX_SORTABLE} sortable fields (each needs two of MongoDB's 64 indexes)")
    return Resource(name, schema, read, write, sortable, _parse_references(name, entry.get("references", {}), schema))


def _parse_references(name: str, references: Any, schema: dict[str, Any]) -> dict[str, str]:
    """{field: collection}: each field a declared property that holds strings only (document ids)."""
    if not isinstance(references, dict) or not all(isinstance(v, str) for v in references.values()):
        raise ResourceFileError(f'{name}: references is an object of field to collection, such as {{"service_id": "services"}}')
    for source, target in references.items():
        spec = schema["properties"].get(source)
        if spec is None:
            raise ResourceFileError(f"{name}: reference field {source!r} is not a declared property")
        if not _holds_strings_only(spec):
            raise ResourceFileError(f"{name}: reference field {source!r} must have type string (it holds {target} ids)")
    return dict(references)


def _holds_strings_only(spec: Any) -> bool:
    kinds = spec.get("type") if isinstance(spec, dict) else None
    return kinds == "string" or (isinstance(kinds, list) and "string" in kinds and set(kinds) <= {"string", "null"})


DEFAULT_RESOURCES: dict[str, Any] = {
    "collections": [
        {
            "name": "services",
            "schema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "status": {"enum": ["up", "down", "degraded"]},
                    "response_time_ms": {"type": "integer", "minimum": 0, "maximum": 3600000},
                    "details": {"type": "string", "maxLength": 2000},
                },
                "required": ["name", "status"],
            },
            "permissions": {"read": ["viewer", "editor"], "write": ["editor"]},
            "sortable": ["name", "status", "response_time_ms", "updated_at"],
        },
        {
            "name": "incidents",
            "schema": {
                "type": "object",
                "properties": {
                    "service_id": {"type": "string", "maxLength": 64},
                    "severity": {"enum": ["low", "medium", "high", "critical"]},
                    "title": {"type": "string", "minLength": 1, "maxLength": 300},
                    "resolved": {"type": "boolean"},
                },
                "required": ["title", "severity", "resolved"],
            },
            "permissions": {"read": ["viewer", "editor"], "write": ["editor"]},
            "sortable": ["severity", "created_at", "updated_at"],
            "references": {"service_id": "services"},
        },
    ]
}


def default_resources() -> Resources:
    return Resources.from_dict(DEFAULT_RESOURCES)
