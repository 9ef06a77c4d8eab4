"""GET /api/v1/collections, which the dashboard builds its tables and forms from: each readable
collection's schema, whether the caller may write it, its sortable fields and its references,
as the OpenAPI description says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from realtime_app.app import Server
from tests.helpers import ApiClient

RESOURCES = {"collections": [
    {"name": "orders",
     "schema": {"type": "object", "properties": {"customer": {"type": "string"}, "warehouse_id": {"type": "string"}},
                "required": ["customer"]},
     "permissions": {"read": ["viewer", "editor"], "write": ["editor"]},
     "sortable": ["customer"],
     "references": {"warehouse_id": "warehouses"}},
    {"name": "warehouses",
     "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
     "permissions": {"read": ["viewer", "editor"], "write": []}},
]}


@pytest.fixture
def api(start_server: Any, tmp_path: Path) -> ApiClient:
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(RESOURCES))
    server: Server = start_server(resources_file=str(path))
    return ApiClient(server)


async def collections(api: ApiClient, roles: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    reply = await api.get("/api/v1/collections", token=api.token("someone", "acme", roles))
    assert reply.status == 200, reply.body
    openapi = (await api.get("/api/v1/openapi.json")).body
    jsonschema.validate(reply.body, {**openapi["paths"]["/api/v1/collections"]["get"]["responses"]["200"]["content"]
                                     ["application/json"]["schema"], "components": openapi["components"]})
    return {item["name"]: item for item in reply.body["items"]}


async def test_each_collection_says_whether_the_caller_may_write_it(api: ApiClient) -> None:
    as_viewer, as_editor, as_admin = [await collections(api, roles) for roles in (("viewer",), ("editor",), ("admin",))]
    assert {name: item["may_write"] for name, item in as_viewer.items()} == {"orders": False, "warehouses": False}
    assert {name: item["may_write"] for name, item in as_editor.items()} == {"orders": True, "warehouses": False}
    assert {name: item["may_write"] for name, item in as_admin.items()} == {"orders": True, "warehouses": True}


async def test_references_and_sortable_fields_are_listed(api: ApiClient) -> None:
    items = await collections(api, ("viewer",))
    assert items["orders"]["references"] == {"warehouse_id": "warehouses"}
    assert items["orders"]["sortable"] == ["customer"]
    assert items["orders"]["schema"]["required"] == ["customer"]
    assert items["warehouses"]["references"] == {}
