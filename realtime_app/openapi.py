"""The OpenAPI 3.1 description of /api/v1, built from the served resources' schemas."""

from __future__ import annotations

import copy
from typing import Any

from realtime_app import __version__
from realtime_app.data.resources import Resource, Resources

PROBLEM = {"$ref": "#/components/schemas/Problem"}
JSON = "application/json"
OBJECT_ID = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}
# A created document's id, for the operations on it (OpenAPI links; schemathesis follows them).
CREATED_ID = "$response.body#/id"


def _problem_responses(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Malformed request", 401: "Missing or invalid token", 403: "Not allowed for your roles",
        404: "Not found", 409: "Conflict", 412: "If-Match does not match", 413: "Body too large",
        422: "Invalid document", 429: "Rate limited", 503: "Database unavailable",
    }
    return {str(s): {"description": reasons[s], "content": {"application/problem+json": {"schema": PROBLEM}}} for s in statuses}


def _document_schema(resource: Resource) -> dict[str, Any]:
    schema = copy.deepcopy(resource.schema)
    schema["additionalProperties"] = False
    schema["properties"] = {
        "id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
        "tenant": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        **schema["properties"],
    }
    schema["required"] = sorted(set(schema.get("required", [])) | {"id", "tenant", "version", "created_at", "updated_at"})
    return schema


def _patch_schema(resource: Resource) -> dict[str, Any]:
    properties = {name: {"anyOf": [spec, {"type": "null"}]} for name, spec in resource.fields.items()}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _collection_paths(resource: Resource, max_limit: int) -> dict[str, Any]:
    name = resource.name
    doc_ref = {"$ref": f"#/components/schemas/{name}"}
    input_ref = {"$ref": f"#/components/schemas/{name}_input"}
    doc_id = {"name": "id", "in": "path", "required": True, "schema": OBJECT_ID,
              "description": "the document's id: 24 hexadecimal characters (anything else is a 400)"}
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "an ETag from a previous response; 412 when the document has changed since"}
    one_doc: dict[str, Any] = {"description": "The document", "headers": {"ETag": {"schema": {"type": "string"}}},
                               "content": {JSON: {"schema": doc_ref}}}
    created = {**one_doc, "description": "Created",
               "headers": {**one_doc["headers"], "Location": {"schema": {"type": "string"}, "description": "the new document's URL"}},
               "links": {verb: {"operationId": f"{verb}_{name}", "parameters": {"id": CREATED_ID}}
                         for verb in ("get", "replace", "patch", "delete")}}
    sortable = ["id", *resource.sortable]
    return {
        f"/api/v1/{name}": {
            "get": {
                "summary": f"List {name}", "operationId": f"list_{name}", "tags": [name],
                "parameters": [
                    {"name": "filter", "in": "query", "schema": {"type": "string"},
                     "description": "JSON filter with $eq $ne $gt $gte $lt $lte $in $nin $exists $and $or $not"},
                    {"name": "sort", "in": "query", "schema": {"type": "string", "enum": sortable + [f"-{f}" for f in sortable]}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": max_limit}},
                    {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "the `next` cursor of the previous page"},
                ],
                "responses": {
                    "200": {"description": "A page", "content": {JSON: {"schema": {
                        "type": "object", "required": ["items", "next"],
                        "properties": {"items": {"type": "array", "items": doc_ref}, "next": {"type": ["string", "null"]}},
                    }}}},
                    **_problem_responses(400, 401, 403, 503),
                },
            },
            "post": {
                "summary": f"Create a {name} document", "operationId": f"create_{name}", "tags": [name],
                "requestBody": {"required": True, "content": {JSON: {"schema": input_ref}}},
                "responses": {"201": created, **_problem_responses(400, 401, 403, 409, 413, 422, 503)},
            },
        },
        f"/api/v1/{name}/{{id}}": {
            "parameters": [doc_id],
            "get": {"summary": f"Read a {name} document", "operationId": f"get_{name}", "tags": [name],
                    "responses": {"200": one_doc, **_problem_responses(400, 401, 403, 404, 503)}},
            "put": {"summary": f"Replace a {name} document", "operationId": f"replace_{name}", "tags": [name],
                    "parameters": [if_match],
                    "requestBody": {"required": True, "content": {JSON: {"schema": input_ref}}},
                    "responses": {"200": one_doc, **_problem_responses(400, 401, 403, 404, 409, 412, 413, 422, 503)}},
            "patch": {"summary": f"Merge-patch a {name} document (RFC 7396)", "operationId": f"patch_{name}", "tags": [name],
                      "parameters": [if_match],
                      "requestBody": {"required": True, "content": {"application/merge-patch+json": {"schema": {"$ref": f"#/components/schemas/{name}_patch"}},
                                                                     JSON: {"schema": {"$ref": f"#/components/schemas/{name}_patch"}}}},
                      "responses": {"200": one_doc, **_problem_responses(400, 401, 403, 404, 409, 412, 413, 422, 503)}},
            "delete": {"summary": f"Delete a {name} document", "operationId": f"delete_{name}", "tags": [name],
                       "parameters": [if_match],
                       "responses": {"204": {"description": "Deleted"}, **_problem_responses(400, 401, 403, 404, 412, 503)}},
        },
    }


def _operations_paths() -> dict[str, Any]:
    """The server's own figures and this document."""
    return {
        "/api/v1/stats": {"get": {"summary": "The server's figures (admins)", "operationId": "stats", "responses": {
            "200": {"description": "Figures", "content": {JSON: {"schema": {"type": "object"}}}},
            **_problem_responses(401, 403)}}},
        "/metrics": {"get": {"summary": "The same figures in Prometheus text format (admins, unless metrics_public)",
                             "operationId": "metrics", "responses": {
                                 "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
                                 **_problem_responses(401, 403)}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [], "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}}}},
    }


def openapi_document(resources: Resources, max_limit: int = 500) -> dict[str, Any]:
    """The description of /api/v1; `max_limit` is the largest page a list serves (list_max_limit)."""
    token_pair = {"type": "object", "required": ["access_token", "refresh_token", "token_type", "expires_in"],
                  "properties": {"access_token": {"type": "string"}, "refresh_token": {"type": "string"},
                                 "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"}}}
    refresh_body = {"required": True, "content": {JSON: {"schema": {
        "type": "object", "required": ["refresh_token"], "properties": {"refresh_token": {"type": "string"}}}}}}
    paths: dict[str, Any] = {
        "/api/v1/health": {"get": {"summary": "Liveness", "operationId": "health", "security": [], "responses": {
            "200": {"description": "Alive", "content": {JSON: {"schema": {"type": "object", "properties": {"status": {"const": "ok"}}}}}}}}},
        "/api/v1/ready": {"get": {"summary": "Readiness", "operationId": "ready", "security": [], "responses": {
            "200": {"description": "Ready", "content": {JSON: {"schema": {"type": "object"}}}},
            "503": {"description": "Not ready, with reasons", "content": {JSON: {"schema": {"type": "object"}}}}}}},
        "/api/v1/auth/login": {"post": {
            "summary": "Log in", "operationId": "login", "security": [],
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "object", "required": ["username", "password"],
                "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
            "responses": {"200": {"description": "Tokens", "content": {JSON: {"schema": token_pair}}},
                          **_problem_responses(400, 401, 413, 429, 503)}}},
        "/api/v1/auth/refresh": {"post": {
            "summary": "Exchange a refresh token for a new pair; the refresh token is used up (a second use ends its session)",
            "operationId": "refresh", "security": [],
            "requestBody": refresh_body,
            "responses": {"200": {"description": "Tokens", "content": {JSON: {"schema": token_pair}}},
                          **_problem_responses(400, 401, 413, 503)}}},
        "/api/v1/auth/logout": {"post": {
            "summary": "End the login session of a refresh token: it and the session's access tokens stop working",
            "operationId": "logout", "security": [],
            "requestBody": refresh_body,
            "responses": {"204": {"description": "Signed out (also when the session had already ended)"},
                          **_problem_responses(400, 401, 413, 503)}}},
        "/api/v1/collections": {"get": {"summary": "Collections you may read", "operationId": "collections", "responses": {
            "200": {"description": "Collections", "content": {JSON: {"schema": {
                "type": "object", "required": ["items"],
                "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Collection"}}}}}}},
            **_problem_responses(401)}}},
    }
    names = {"type": "array", "items": {"type": "string"}}
    schemas: dict[str, Any] = {
        "Collection": {
            "type": "object", "required": ["name", "schema", "permissions", "may_write", "sortable", "references"],
            "properties": {
                "name": {"type": "string"},
                "schema": {"type": "object", "description": "the JSON Schema (2020-12) of the fields a client writes"},
                "permissions": {"type": "object", "required": ["read", "write"], "properties": {"read": names, "write": names}},
                "may_write": {"type": "boolean", "description": "whether your token's roles may create, change and delete"},
                "sortable": names | {"description": "fields that sort= accepts"},
                "references": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "field name to the collection whose document ids it holds"}}},
        "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"],
                                                   "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}},
    }
    paths.update(_operations_paths())
    for resource in resources:
        paths.update(_collection_paths(resource, max_limit))
        schemas[resource.name] = _document_schema(resource)
        schemas[f"{resource.name}_input"] = copy.deepcopy(resource.schema)
        schemas[f"{resource.name}_patch"] = _patch_schema(resource)
    return {
        "openapi": "3.1.0",
        "info": {"title": "realtime-app", "version": __version__,
                 "description": "REST CRUD over MongoDB; live updates of the same documents at the SockJS endpoint /realtime."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"bearer": []}],
    }
