"""All reads and writes of served documents, with server-owned fields and tenant isolation.

Documents are stored as `{_id: ObjectId, tenant, version, created_at, updated_at, ...fields}`
and returned in API form (`id` as a string, times as ISO 8601 UTC). Every query carries the
caller's tenant unless the caller is an admin, so a viewer or editor cannot read, write or
learn of another tenant's documents: those answer 404 like documents that do not exist.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from bson import ObjectId

from realtime_app import jsoncodec
from realtime_app.data.db import Database, Document, DuplicateKeyError, ResultTooLarge, make_indexes, snapshot_find
from realtime_app.data.filters import INT64_MAX, INT64_MIN, Filter
from realtime_app.data.principal import Principal
from realtime_app.data.resources import SERVER_FIELDS, Resource, Resources
from realtime_app.errors import BadFilter, BadRequest, Conflict, FieldError, InvalidDocument, NotFound, PreconditionFailed

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# ASCII digits only: str.isdigit() also accepts '²' and '٣', and int() of thousands of digits raises.
SMALL_NATURAL = re.compile(r"^[0-9]{1,18}$")
TIME_FIELDS = ("created_at", "updated_at")
# Writes without If-Match retry a read-modify-write this many times before answering 409.
MAX_WRITE_ATTEMPTS = 10

FieldsUpdate = Callable[[dict[str, Any]], dict[str, Any]]


def now() -> dt.datetime:
    """UTC now at MongoDB's millisecond precision, so stored and returned times agree."""
    moment = dt.datetime.now(dt.UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _version(raw: Document) -> int:
    """A stored document's version; 0 for one another program wrote without it."""
    version = raw.get("version")
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


def to_api(raw: Document) -> dict[str, Any]:
    """A stored document in the form clients see."""
    doc: dict[str, Any] = {
        "id": str(raw["_id"]), "tenant": raw.get("tenant"), "version": _version(raw),
        "created_at": iso(raw["created_at"]) if "created_at" in raw else None,
        "updated_at": iso(raw["updated_at"]) if "updated_at" in raw else None,
    }
    for key, value in raw.items():
        if key not in doc and key != "_id":
            doc[key] = iso(value) if isinstance(value, dt.datetime) else value
    return doc


def client_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in SERVER_FIELDS and k != "_id"}


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(header: str | None) -> set[int] | None:
    """Versions an If-Match header accepts; None when absent or `*` (any existing version)."""
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            continue  # If-Match uses strong comparison: a weak tag never matches
        if len(tag) < 3 or tag[0] != '"' or tag[-1] != '"' or not SMALL_NATURAL.match(tag[1:-1]):
            raise BadRequest(f'If-Match must hold entity tags such as "3" (from ETag), got {tag[:40]!r}')
        versions.add(int(tag[1:-1]))
    return versions


def parse_id(raw: str) -> ObjectId:
    if not ObjectId.is_valid(raw):
        raise BadRequest(f"malformed id {raw[:40]!r}: ids are 24 hexadecimal characters")
    return ObjectId(raw)


class Page:
    """Decoded list parameters: filter, sort, limit and the keyset cursor."""

    def __init__(self, resource: Resource, *, filter_json: str | None, sort: str | None, limit: str | None,
                 after: str | None, default_limit: int, max_limit: int, max_filter_depth: int, max_filter_cost: int):
        spec = jsoncodec.loads(filter_json, "filter") if filter_json else {}
        self.filter = Filter(spec, resource.filterable, max_filter_depth, max_filter_cost)
        self.sort_field, self.direction = self._parse_sort(resource, sort)
        self.limit = self._parse_limit(limit, default_limit, max_limit)
        self.after = self._parse_cursor(after) if after else None

    @staticmethod
    def _parse_sort(resource: Resource, sort: str | None) -> tuple[str, int]:
        if not sort:
            return "_id", 1
        direction = -1 if sort.startswith("-") else 1
        field = sort.lstrip("-+")
        if field == "id":
            return "_id", direction
        if field not in resource.sortable:
            raise BadRequest(f"cannot sort on {field[:80]!r}; sortable fields: id, {', '.join(resource.sortable)}")
        return field, direction

    @staticmethod
    def _parse_limit(limit: str | None, default: int, maximum: int) -> int:
        if limit is None or limit == "":
            return default
        if not SMALL_NATURAL.match(limit) or not 1 <= int(limit) <= maximum:
            raise BadRequest(f"limit must be an integer from 1 to {maximum}")
        return int(limit)

    def cursor_for(self, raw: Document) -> str:
        value = raw.get(self.sort_field) if self.sort_field != "_id" else None
        if isinstance(value, dt.datetime):
            value = iso(value)
        payload = jsoncodec.dumps([self.sort_field, self.direction, value, str(raw["_id"])])
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    def _parse_cursor(self, cursor: str) -> tuple[Any, ObjectId]:
        try:
            decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            field, direction, value, oid = jsoncodec.loads(decoded, "cursor")
        except (BadRequest, ValueError, TypeError, binascii.Error):
            raise BadRequest("malformed cursor: pass back the 'next' value of the previous page unchanged") from None
        if field != self.sort_field or direction != self.direction or not isinstance(oid, str) or not ObjectId.is_valid(oid):
            raise BadRequest("this cursor belongs to another sort order; start again without 'after'")
        if not _is_cursor_value(value):
            raise BadRequest("malformed cursor: pass back the 'next' value of the previous page unchanged")
        if field in TIME_FIELDS and isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest("malformed cursor") from None
        return value, ObjectId(oid)

    def query(self, scope: dict[str, Any]) -> dict[str, Any]:
        parts = [scope] if scope else []
        if self.filter.mongo:
            parts.append(self.filter.mongo)
        if self.after is not None:
            parts.append(self._after_condition(*self.after))
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def _after_condition(self, value: Any, oid: ObjectId) -> dict[str, Any]:
        """Keyset condition for rows after (value, oid) in this sort, nulls sorting lowest."""
        id_cmp = "$gt" if self.direction == 1 else "$lt"
        if self.sort_field == "_id":
            return {"_id": {id_cmp: oid}}
        field = self.sort_field
        same = {field: value, "_id": {id_cmp: oid}}
        if self.direction == 1:
            beyond = {field: {"$ne": None}} if value is None else {field: {"$gt": value}}
            return {"$or": [beyond, same]}
        if value is None:
            return same
        return {"$or": [{field: {"$lt": value}}, same, {field: None}]}

    @property
    def mongo_sort(self) -> list[tuple[str, int]]:
        if self.sort_field == "_id":
            return [("_id", self.direction)]
        return [(self.sort_field, self.direction), ("_id", self.direction)]


class DocumentStore:
    """CRUD over the served collections for one principal at a time."""

    def __init__(self, db: Database, resources: Resources, *, default_limit: int, max_limit: int, max_filter_depth: int,
                 max_filter_cost: int):
        self.db = db
        self.resources = resources
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.max_filter_depth = max_filter_depth
        self.max_filter_cost = max_filter_cost

    async def prepare(self, names: list[str] | None = None) -> None:
        """Create the served collections (all, or `names`) with change images and indexes."""
        for resource in self.resources:
            if names is None or resource.name in names:
                await self.db.prepare_collection(resource.name, make_indexes(list(resource.sortable)))

    def readable(self, principal: Principal, name: str) -> Resource:
        resource = self.resources.get(name)
        principal.require_read(resource)
        return resource

    def writable(self, principal: Principal, name: str) -> Resource:
        resource = self.resources.get(name)
        principal.require_write(resource)
        return resource

    @staticmethod
    def _scope(principal: Principal) -> dict[str, Any]:
        tenant = principal.tenant_scope
        return {} if tenant is None else {"tenant": tenant}

    def page(self, resource: Resource, *, filter_json: str | None = None, sort: str | None = None,
             limit: str | None = None, after: str | None = None) -> Page:
        return Page(resource, filter_json=filter_json, sort=sort, limit=limit, after=after, default_limit=self.default_limit,
                    max_limit=self.max_limit, max_filter_depth=self.max_filter_depth, max_filter_cost=self.max_filter_cost)

    async def list_page(self, principal: Principal, name: str, **params: str | None) -> tuple[list[dict[str, Any]], str | None]:
        resource = self.readable(principal, name)
        page = self.page(resource, **params)
        cursor = self.db.collection(name).find(page.query(self._scope(principal)), sort=page.mongo_sort, limit=page.limit + 1)
        raws = await cursor.to_list(length=page.limit + 1)
        more = len(raws) > page.limit
        raws = raws[: page.limit]
        return [to_api(raw) for raw in raws], page.cursor_for(raws[-1]) if more else None

    async def snapshot(self, principal: Principal, resource: Resource, query: Filter, max_docs: int,
                       max_bytes: int | None = None) -> tuple[list[dict[str, Any]], Any]:
        """A live query's documents in id order, read at one cluster time, and that time."""
        parts = [part for part in (self._scope(principal), query.mongo) if part]
        mongo_query = {"$and": parts} if len(parts) > 1 else (parts[0] if parts else {})
        try:
            raws, at = await snapshot_find(self.db.collection(resource.name), mongo_query, max_docs + 1, max_bytes)
        except ResultTooLarge:
            raise BadFilter(f"the query's documents weigh more than {max_bytes} bytes; narrow the filter") from None
        if len(raws) > max_docs:
            raise BadFilter(f"the query matches more than {max_docs} documents; narrow the filter")
        return [to_api(raw) for raw in raws], at

    async def get(self, principal: Principal, name: str, doc_id: str) -> dict[str, Any]:
        resource = self.readable(principal, name)
        return to_api(await self._find(principal, resource, parse_id(doc_id)))

    async def _find(self, principal: Principal, resource: Resource, oid: ObjectId) -> Document:
        raw = await self.db.collection(resource.name).find_one({"_id": oid, **self._scope(principal)})
        if raw is None:
            raise NotFound(f"no {resource.name} document with id {oid}")
        return raw

    async def create(self, principal: Principal, name: str, body: Any) -> dict[str, Any]:
        resource = self.writable(principal, name)
        fields = _require_object(body)
        tenant = principal.tenant
        if "tenant" in fields and principal.is_admin:
            tenant = fields.pop("tenant")
            if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
                raise InvalidDocument("invalid tenant", [FieldError("tenant", "1-64 letters, digits, '_', '.' or '-'")])
        _reject_server_fields(fields)
        resource.check_document(fields)
        moment = now()
        raw = {**fields, "tenant": tenant, "version": 1, "created_at": moment, "updated_at": moment}
        try:
            result = await self.db.collection(name).insert_one(raw)
        except DuplicateKeyError as exc:
            raise Conflict(f"a {name} document with these values already exists: {exc.details}") from None
        raw["_id"] = result.inserted_id
        return to_api(raw)

    async def replace(self, principal: Principal, name: str, doc_id: str, body: Any, if_match: set[int] | None) -> dict[str, Any]:
        self.writable(principal, name)
        fields = _require_object(body)
        _reject_server_fields(fields)
        return await self._update(principal, name, doc_id, if_match, lambda current: fields)

    async def patch(self, principal: Principal, name: str, doc_id: str, body: Any, if_match: set[int] | None) -> dict[str, Any]:
        resource = self.writable(principal, name)
        patch = _require_object(body)
        _reject_server_fields(patch)
        resource.check_field_names(patch)
        return await self._update(principal, name, doc_id, if_match, lambda current: merge_patch(current, patch), partial=True)

    async def _update(self, principal: Principal, name: str, doc_id: str, if_match: set[int] | None,
                      new_fields: FieldsUpdate, partial: bool = False) -> dict[str, Any]:
        """Read, compute, write guarded by the version read; lost races retry unless If-Match pinned one.

        A `partial` write sends only what changed ($set/$unset), so change streams report an
        update; otherwise the document is replaced.
        """
        resource = self.writable(principal, name)
        oid = parse_id(doc_id)
        collection = self.db.collection(name)
        for _ in range(MAX_WRITE_ATTEMPTS):
            current = await self._find(principal, resource, oid)
            _check_precondition(if_match, _version(current))
            fields = new_fields(client_fields(current))
            resource.check_document(fields)
            kept = {key: current[key] for key in ("tenant", "created_at") if key in current}
            replacement = {**fields, **kept, "version": _version(current) + 1, "updated_at": now()}
            guard = {"_id": oid, "version": current.get("version")}
            if partial:
                result = await collection.update_one(guard, _set_and_unset(client_fields(current), replacement))
            else:
                result = await collection.replace_one(guard, replacement)
            if result.matched_count:
                replacement["_id"] = oid
                return to_api(replacement)
            if if_match is not None:
                raise PreconditionFailed("the document changed since the version named in If-Match")
        raise Conflict("the document is changing too fast to update; try again")

    async def delete(self, principal: Principal, name: str, doc_id: str, if_match: set[int] | None) -> None:
        resource = self.writable(principal, name)
        oid = parse_id(doc_id)
        current = await self._find(principal, resource, oid)
        _check_precondition(if_match, _version(current))
        guard = {"version": current.get("version")} if if_match is not None else {}
        result = await self.db.collection(name).delete_one({"_id": oid, **self._scope(principal), **guard})
        if not result.deleted_count:
            if if_match is not None:
                raise PreconditionFailed("the document changed since the version named in If-Match")
            raise NotFound(f"no {name} document with id {oid}")


def _is_cursor_value(value: Any) -> bool:
    """What cursor_for can write: a JSON scalar MongoDB can hold, never an operator object."""
    if isinstance(value, int) and not isinstance(value, bool):
        return INT64_MIN <= value <= INT64_MAX
    return value is None or isinstance(value, (str, float, bool))


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return dict(body)


def _reject_server_fields(fields: dict[str, Any]) -> None:
    owned = [FieldError(name, "is set by the server and cannot be written") for name in SERVER_FIELDS if name in fields]
    if owned:
        raise InvalidDocument("the body names server-owned fields", owned)


def _set_and_unset(current: dict[str, Any], replacement: dict[str, Any]) -> dict[str, Any]:
    changed = {key: value for key, value in replacement.items() if key in SERVER_FIELDS or current.get(key, _MISSING) != value}
    removed = {key: "" for key in current if key not in replacement}
    return {"$set": changed, **({"$unset": removed} if removed else {})}


_MISSING = object()


def _check_precondition(if_match: set[int] | None, version: int) -> None:
    if if_match is not None and version not in if_match:
        raise PreconditionFailed(f"If-Match does not match the current version (ETag {etag(version)})")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
