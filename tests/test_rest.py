"""The REST API over a real server and MongoDB: every endpoint and role, tenant isolation,
every error path as problem+json, list filters/sort/pagination, versions and If-Match.

The tests share one server per resource set (`fresh_server`), each starting from an empty
database; those that need other settings, or change the server, start their own."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from openapi_spec_validator import validate as validate_openapi
from tornado.httpclient import AsyncHTTPClient

from realtime_app.app import Server
from realtime_app.readiness import NotReady
from tests.background import BackgroundServer, background_server
from tests.helpers import ApiClient, Reply

SERVICES = "/api/v1/services"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MISSING_ID = "0123456789abcdef01234567"

# A second resource set: nullable sort values, a free number field, a collection viewers may not read.
CUSTOM_RESOURCES = {
    "collections": [
        {
            "name": "readings",
            "schema": {"type": "object", "properties": {
                "label": {"type": "string"}, "value": {"type": ["integer", "null"]}, "score": {"type": "number"},
                "extra": {"type": "object"},
            }},
            "permissions": {"read": ["viewer", "editor"], "write": ["editor"]},
            "sortable": ["label", "value"],
        },
        {
            "name": "secrets",
            "schema": {"type": "object", "properties": {"note": {"type": "string"}}},
            "permissions": {"read": ["editor"], "write": ["editor"]},
        },
    ]
}


class CheckedClient(ApiClient):
    """An ApiClient that fails the test on any 500: bad input must never crash a handler."""

    async def request(self, *args: Any, **kwargs: Any) -> Reply:
        reply = await super().request(*args, **kwargs)
        assert reply.status != 500, (args, reply.body)
        return reply


@pytest.fixture
def api(fresh_server: Server) -> ApiClient:
    return CheckedClient(fresh_server)


@pytest.fixture
def own_api(server: Server) -> ApiClient:
    """A server of the test's own, for a test that changes it."""
    return CheckedClient(server)


@pytest.fixture(scope="module")
def custom_server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    path = tmp_path_factory.mktemp("custom") / "resources.json"
    path.write_text(json.dumps(CUSTOM_RESOURCES))
    with background_server(mongo_uri, path.parent, resources_file=str(path)) as shared:
        yield shared


@pytest.fixture
def custom_api(custom_server: BackgroundServer) -> ApiClient:
    custom_server.empty_collections()
    return CheckedClient(custom_server.server)


pytestmark = pytest.mark.usefixtures("errors_fail_the_test")


def editor(api: ApiClient, tenant: str = "acme") -> str:
    return api.token(f"{tenant}-editor", tenant, ("editor",))


def viewer(api: ApiClient, tenant: str = "acme") -> str:
    return api.token(f"{tenant}-viewer", tenant, ("viewer",))


def admin(api: ApiClient) -> str:
    return api.token("root", "acme", ("admin",))


def query(**params: Any) -> str:
    encoded = {k: json.dumps(v) if k == "filter" and not isinstance(v, str) else str(v) for k, v in params.items()}
    return "?" + urllib.parse.urlencode(encoded)


def cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


async def create(api: ApiClient, token: str, path: str = SERVICES, **fields: Any) -> dict[str, Any]:
    body = fields or {"name": "svc", "status": "up"}
    reply = await api.post(path, body, token=token)
    assert reply.status == 201, reply.body
    return reply.body  # type: ignore[no-any-return]


def problem(reply: Reply, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status == status, reply.body
    body = reply.problem
    if code is not None:
        assert body["type"].endswith("/" + code), body
    return body


def error_fields(reply: Reply) -> set[str]:
    return {error["field"] for error in problem(reply, 422, "invalid_document")["errors"]}


async def names(api: ApiClient, token: str, path: str = SERVICES, **params: Any) -> list[str]:
    reply = await api.get(path + query(**params), token=token)
    assert reply.status == 200, reply.body
    return [item["name"] for item in reply.body["items"]]


# -- public endpoints --------------------------------------------------------------------------


async def test_health_and_ready_need_no_token(api: ApiClient) -> None:
    health = await api.get("/api/v1/health")
    assert (health.status, health.body) == (200, {"status": "ok"})
    ready = await api.get("/api/v1/ready")
    assert (ready.status, ready.body) == (200, {"status": "ready"})


async def test_ready_is_503_with_the_reason_when_a_check_fails(own_api: ApiClient) -> None:
    async def change_feed_stopped() -> NotReady | None:
        return NotReady("the change feed is not running", "ServerSelectionTimeoutError: db-7.internal:27017")

    own_api.context.readiness_checks.append(change_feed_stopped)
    reply = await own_api.get("/api/v1/ready")
    assert reply.status == 503
    assert reply.body["reasons"] == ["the change feed is not running"]
    detailed = await own_api.get("/api/v1/ready", token=admin(own_api))
    assert detailed.body["reasons"] == ["the change feed is not running (ServerSelectionTimeoutError: db-7.internal:27017)"]
    for not_admin in (editor(own_api), "not-a-token"):
        assert (await own_api.get("/api/v1/ready", token=not_admin)).body["reasons"] == ["the change feed is not running"]


async def test_openapi_is_valid_and_describes_every_collection_route(custom_api: ApiClient) -> None:
    api = custom_api
    reply = await api.get("/api/v1/openapi.json")
    assert reply.status == 200
    document = reply.body
    validate_openapi(document)
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    for name in ("readings", "secrets"):
        assert set(paths[f"/api/v1/{name}"]) >= {"get", "post"}
        assert set(paths[f"/api/v1/{name}/{{id}}"]) >= {"get", "put", "patch", "delete"}
        assert {name, f"{name}_input", f"{name}_patch"} <= set(document["components"]["schemas"])
    for path in ("/api/v1/health", "/api/v1/ready", "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout",
                 "/api/v1/collections"):
        assert path in paths
    # Every described operation exists at the real server and answers with a status the description lists.
    doc = await create(api, admin(api), "/api/v1/readings", label="x")
    for path, operations in paths.items():
        for method in ("get", "post", "put", "patch", "delete"):
            if method in operations:
                body = {} if method in ("post", "put", "patch") else None
                real = await api.request(method.upper(), path.replace("{id}", doc["id"]), body, token=admin(api))
                assert str(real.status) in operations[method]["responses"], (method, path, real.status, real.body)


async def test_collections_lists_only_what_the_roles_may_read(custom_api: ApiClient) -> None:
    api = custom_api
    for token, expected in [(viewer(api), ["readings"]), (editor(api), ["readings", "secrets"]), (admin(api), ["readings", "secrets"])]:
        reply = await api.get("/api/v1/collections", token=token)
        assert reply.status == 200
        assert [item["name"] for item in reply.body["items"]] == expected
        assert all(item["schema"]["type"] == "object" for item in reply.body["items"])
    assert (await api.get("/api/v1/secrets", token=viewer(api))).status == 403


async def test_every_protected_endpoint_needs_a_bearer_token(api: ApiClient) -> None:
    doc_path = f"{SERVICES}/{MISSING_ID}"
    requests = [("GET", "/api/v1/collections"), ("GET", SERVICES), ("POST", SERVICES), ("GET", doc_path),
                ("PUT", doc_path), ("PATCH", doc_path), ("DELETE", doc_path), ("GET", "/api/v1/nope")]
    for method, path in requests:
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
            reply = await api.request(method, path, {"name": "x", "status": "up"} if method in ("POST", "PUT", "PATCH") else None,
                                      headers=headers)
            problem(reply, 401, "auth_failed")
            assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer")


# -- CRUD and roles --------------------------------------------------------------------------


async def test_create_read_replace_patch_delete(api: ApiClient) -> None:
    token = editor(api)
    created = await api.post(SERVICES, {"name": "api", "status": "up", "response_time_ms": 12, "details": "fine"}, token=token)
    assert created.status == 201
    doc = created.body
    assert created.headers["Location"] == f"{SERVICES}/{doc['id']}"
    assert created.headers["ETag"] == '"1"'
    assert re.fullmatch(r"[0-9a-f]{24}", doc["id"])
    assert (doc["tenant"], doc["version"]) == ("acme", 1)
    assert ISO_UTC.match(doc["created_at"]) and doc["created_at"] == doc["updated_at"]
    assert {k: doc[k] for k in ("name", "status", "response_time_ms", "details")} == {
        "name": "api", "status": "up", "response_time_ms": 12, "details": "fine"}

    fetched = await api.get(f"{SERVICES}/{doc['id']}", token=token)
    assert (fetched.status, fetched.headers["ETag"], fetched.body) == (200, '"1"', doc)

    replaced = await api.put(f"{SERVICES}/{doc['id']}", {"name": "api", "status": "down"}, token=token)
    assert (replaced.status, replaced.headers["ETag"]) == (200, '"2"')
    assert replaced.body["version"] == 2 and "details" not in replaced.body and "response_time_ms" not in replaced.body
    assert replaced.body["created_at"] == doc["created_at"] and replaced.body["updated_at"] >= doc["updated_at"]

    patched = await api.patch(f"{SERVICES}/{doc['id']}", {"details": "slow", "status": "degraded", "name": None, "nope": None},
                              token=token)
    # Merge patch: null deletes; here it deletes a required field, which the schema then refuses.
    assert error_fields(patched) == {"name"}
    patched = await api.patch(f"{SERVICES}/{doc['id']}", {"details": "slow", "status": "degraded"}, token=token)
    assert (patched.status, patched.headers["ETag"]) == (200, '"3"')
    patched = await api.patch(f"{SERVICES}/{doc['id']}", {"details": None, "response_time_ms": 7}, token=token,
                              headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status == 200
    assert {k: v for k, v in patched.body.items() if k not in ("id", "created_at", "updated_at")} == {
        "tenant": "acme", "version": 4, "name": "api", "status": "degraded", "response_time_ms": 7}
    assert (await api.get(f"{SERVICES}/{doc['id']}", token=token)).body == patched.body

    deleted = await api.delete(f"{SERVICES}/{doc['id']}", token=token)
    assert (deleted.status, deleted.body) == (204, "")
    problem(await api.get(f"{SERVICES}/{doc['id']}", token=token), 404, "not_found")
    problem(await api.delete(f"{SERVICES}/{doc['id']}", token=token), 404, "not_found")
    problem(await api.patch(f"{SERVICES}/{doc['id']}", {"details": "x"}, token=token), 404, "not_found")


async def test_documents_other_programs_wrote_without_server_fields(api: ApiClient, mongo_uri: str) -> None:
    """Another writer of the database may leave out version and times: such a document reads as
    version 0 and can be patched, replaced and deleted like any other, never a 500."""
    token = editor(api)
    with pymongo.MongoClient(mongo_uri) as client:
        collection = client[api.server.settings.mongo_db]["services"]
        bare = [str(collection.insert_one({"name": f"bare{n}", "status": "up", "tenant": "acme"}).inserted_id) for n in range(3)]
    fetched = await api.get(f"{SERVICES}/{bare[0]}", token=token)
    assert (fetched.status, fetched.headers["ETag"], fetched.body["version"], fetched.body["created_at"]) == (200, '"0"', 0, None)
    patched = await api.patch(f"{SERVICES}/{bare[0]}", {"status": "down"}, token=token, headers={"If-Match": '"0"'})
    assert (patched.status, patched.body["version"], patched.body["status"]) == (200, 1, "down")
    replaced = await api.put(f"{SERVICES}/{bare[1]}", {"name": "bare1", "status": "degraded"}, token=token)
    assert (replaced.status, replaced.body["version"]) == (200, 1)
    assert (await api.delete(f"{SERVICES}/{bare[2]}", token=token, headers={"If-Match": '"0"'})).status == 204


async def test_merge_patch_recurses_into_objects(custom_api: ApiClient) -> None:
    api = custom_api
    token = editor(api)
    doc = await create(api, token, "/api/v1/readings", label="x", extra={"a": 1, "c": {"d": 1, "e": 2}, "f": [1, 2]})
    path = f"/api/v1/readings/{doc['id']}"
    patched = await api.patch(path, {"extra": {"a": None, "b": 2, "c": {"d": None}, "f": [3]}, "score": 0.5}, token=token)
    assert patched.status == 200, patched.body
    assert (patched.body["extra"], patched.body["score"], patched.body["label"]) == ({"b": 2, "c": {"e": 2}, "f": [3]}, 0.5, "x")
    patched = await api.patch(path, {"extra": None, "label": None}, token=token)
    assert "extra" not in patched.body and "label" not in patched.body and patched.body["version"] == 3


async def test_viewer_reads_its_tenant_and_may_not_write(api: ApiClient) -> None:
    doc = await create(api, editor(api), name="a", status="up")
    token = viewer(api)
    assert (await api.get(f"{SERVICES}/{doc['id']}", token=token)).body == doc
    assert [item["id"] for item in (await api.get(SERVICES, token=token)).body["items"]] == [doc["id"]]
    path = f"{SERVICES}/{doc['id']}"
    for reply in [await api.post(SERVICES, {"name": "b", "status": "up"}, token=token),
                  await api.put(path, {"name": "b", "status": "up"}, token=token),
                  await api.patch(path, {"name": "b"}, token=token),
                  await api.patch(path, {"id": "x", "$bad": 1}, token=token),
                  await api.delete(path, token=token)]:
        problem(reply, 403, "forbidden")
    assert (await api.get(path, token=token)).body == doc


async def test_admin_reads_and_writes_every_tenant(api: ApiClient) -> None:
    acme = await create(api, editor(api, "acme"), name="a", status="up")
    globex = await create(api, editor(api, "globex"), name="g", status="up")
    token = admin(api)
    listed = (await api.get(SERVICES + query(sort="name"), token=token)).body["items"]
    assert [(item["name"], item["tenant"]) for item in listed] == [("a", "acme"), ("g", "globex")]
    assert (await api.get(f"{SERVICES}/{globex['id']}", token=token)).body == globex
    patched = await api.patch(f"{SERVICES}/{globex['id']}", {"status": "down"}, token=token)
    assert (patched.status, patched.body["tenant"], patched.body["version"]) == (200, "globex", 2)

    elsewhere = await api.post(SERVICES, {"name": "n", "status": "up", "tenant": "initech"}, token=token)
    assert (elsewhere.status, elsewhere.body["tenant"]) == (201, "initech")
    own = await create(api, token, name="o", status="up")
    assert own["tenant"] == "acme"
    for bad_tenant in ["", "has space", 7, None, "x" * 65]:
        assert error_fields(await api.post(SERVICES, {"name": "n", "status": "up", "tenant": bad_tenant}, token=token)) == {"tenant"}
    # The tenant stays server-owned after creation, even for an admin.
    assert error_fields(await api.put(f"{SERVICES}/{acme['id']}", {"name": "a", "status": "up", "tenant": "globex"}, token=token)) == {"tenant"}
    assert (await api.delete(f"{SERVICES}/{acme['id']}", token=token)).status == 204
    assert (await api.get(f"{SERVICES}/{elsewhere.body['id']}", token=editor(api, "initech"))).status == 200


async def test_editors_may_not_name_a_tenant(api: ApiClient) -> None:
    reply = await api.post(SERVICES, {"name": "n", "status": "up", "tenant": "globex"}, token=editor(api))
    assert error_fields(reply) == {"tenant"}
    reply = await api.post(SERVICES, {"name": "n", "status": "up", "tenant": "acme"}, token=editor(api))
    assert error_fields(reply) == {"tenant"}


async def test_tenant_isolation(api: ApiClient) -> None:
    theirs = await create(api, editor(api, "globex"), name="theirs", status="up", details="secret")
    ours = await create(api, editor(api, "acme"), name="ours", status="up")
    path = f"{SERVICES}/{theirs['id']}"
    missing = await api.get(f"{SERVICES}/{MISSING_ID}", token=editor(api))
    for token in (editor(api), viewer(api)):
        reply = await api.get(path, token=token)
        # Indistinguishable from a document that does not exist.
        assert problem(reply, 404, "not_found")["detail"] == missing.body["detail"].replace(MISSING_ID, theirs["id"])
        filters: list[Any] = [
            {}, {"tenant": "globex"}, {"id": theirs["id"]}, {"tenant": {"$ne": "acme"}}, {"name": "theirs"},
            {"$or": [{"tenant": "globex"}, {"tenant": "acme"}]}, {"tenant": {"$in": ["globex", "acme"]}},
            {"details": {"$exists": True}},
        ]
        for spec in filters:
            items = (await api.get(SERVICES + query(filter=spec), token=token)).body["items"]
            assert theirs["id"] not in [item["id"] for item in items], spec
        assert [item["id"] for item in (await api.get(SERVICES, token=token)).body["items"]] == [ours["id"]]
    token = editor(api)
    for headers in ({}, {"If-Match": '"1"'}, {"If-Match": '"9"'}, {"If-Match": "*"}):
        problem(await api.put(path, {"name": "x", "status": "down"}, token=token, headers=headers), 404, "not_found")
        problem(await api.patch(path, {"status": "down"}, token=token, headers=headers), 404, "not_found")
        problem(await api.delete(path, token=token, headers=headers), 404, "not_found")
    assert (await api.get(path, token=admin(api))).body == theirs


# -- error paths ------------------------------------------------------------------------------


async def test_malformed_json_empty_body_and_wrong_content_type(api: ApiClient) -> None:
    token = editor(api)
    doc = await create(api, token)
    doc_path = f"{SERVICES}/{doc['id']}"
    for method, path in [("POST", SERVICES), ("PUT", doc_path), ("PATCH", doc_path)]:
        for raw in ['{"name": ', "{'name': 'x'}", '{"name": "x",}', "\xff", '{"a": 1} trailing']:
            problem(await api.request(method, path, raw_body=raw.encode("latin-1"), token=token), 400, "bad_request")
        problem(await api.request(method, path, raw_body=b"", token=token), 400, "bad_request")
        for body in ("null", "[]", "3", '"text"'):
            problem(await api.request(method, path, raw_body=body, token=token), 400, "bad_request")
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            reply = await api.request(method, path, {"name": "x", "status": "up"}, token=token, headers={"Content-Type": content_type})
            problem(reply, 400, "bad_request")
    ok = await api.post(SERVICES, {"name": "x", "status": "up"}, token=token, headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status == 201
    assert (await api.get(doc_path, token=token)).body == doc


async def test_non_finite_numbers_and_lone_surrogates_are_malformed(custom_api: ApiClient) -> None:
    api = custom_api
    token = editor(api)
    for raw in ['{"score": NaN}', '{"score": Infinity}', '{"score": -Infinity}', '{"score": 1e400}',
                '{"label": "\\ud800"}', '{"\\udfff": 1}']:
        problem(await api.post("/api/v1/readings", raw_body=raw, token=token), 400, "bad_request")
    for spec in ['{"score": 1e400}', '{"label": "\\ud800"}', '{"score": NaN}']:
        problem(await api.get("/api/v1/readings" + query(filter=spec), token=token), 400)
    assert (await api.post("/api/v1/readings", raw_body='{"score": 1.5e300, "label": "\\ud83d\\ude00"}', token=token)).status == 201


async def test_deeply_nested_bodies_are_refused(api: ApiClient) -> None:
    token = editor(api)
    for depth in (200, 900, 990, 5000):
        for raw in ['{"name": "x", "status": "up", "details": ' + "[" * depth + "]" * depth + "}",
                    '{"name": "x", "status": "up", "extra": ' + '{"a": ' * depth + "1" + "}" * depth + "}"]:
            reply = await api.post(SERVICES, raw_body=raw, token=token)
            assert reply.status in (400, 422), reply.body
            assert reply.problem


async def test_nesting_mongodb_would_refuse_is_a_400(custom_api: ApiClient) -> None:
    api = custom_api
    token = editor(api)

    def nested(depth: int) -> dict[str, Any]:
        value: dict[str, Any] = {"leaf": 1}
        for _ in range(depth - 1):
            value = {"a": value}
        return value

    problem(await api.post("/api/v1/readings", {"extra": nested(190)}, token=token), 400, "bad_request")
    created = await create(api, token, "/api/v1/readings", extra=nested(60))
    assert (await api.get(f"/api/v1/readings/{created['id']}", token=token)).body["extra"] == nested(60)


async def test_unknown_collections_and_endpoints(api: ApiClient) -> None:
    token = admin(api)
    for name in ("nope", "realtime_users", "Services"):
        for method, path in [("GET", f"/api/v1/{name}"), ("POST", f"/api/v1/{name}"), ("GET", f"/api/v1/{name}/{MISSING_ID}"),
                             ("PUT", f"/api/v1/{name}/{MISSING_ID}"), ("PATCH", f"/api/v1/{name}/{MISSING_ID}"),
                             ("DELETE", f"/api/v1/{name}/{MISSING_ID}")]:
            reply = await api.request(method, path, {"name": "x"} if method in ("POST", "PUT", "PATCH") else None, token=token)
            problem(reply, 404, "unknown_collection")
    for path in ["/nope", "/api/v2/services", f"{SERVICES}/{MISSING_ID}/more", "/api/v1/"]:
        problem(await api.get(path, token=token), 404)
    problem(await api.post(f"{SERVICES}/{MISSING_ID}", {"name": "x"}, token=token), 405)


async def test_malformed_ids(api: ApiClient) -> None:
    token = editor(api)
    for bad in ["123", "z" * 24, "0" * 25, "0" * 23, "%20" * 8, "..", "0123456789abcdef0123456%C3%A9"]:
        path = f"{SERVICES}/{bad}"
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            reply = await api.request(method, path, {"name": "x", "status": "up"} if method in ("PUT", "PATCH") else None, token=token)
            problem(reply, 400, "bad_request")


@pytest.fixture
def small_body_api(start_server: Any) -> ApiClient:
    return CheckedClient(start_server(max_body_bytes=1024))


@pytest.fixture
def small_page_api(start_server: Any) -> ApiClient:
    return CheckedClient(start_server(list_default_limit=2, list_max_limit=3))


async def test_bodies_over_the_limit_are_413(small_body_api: ApiClient) -> None:
    api = small_body_api
    token = editor(api)
    big = json.dumps({"name": "x", "status": "up", "details": "d" * 1500})
    doc = await create(api, token)
    for method, path in [("POST", SERVICES), ("PUT", f"{SERVICES}/{doc['id']}"), ("PATCH", f"{SERVICES}/{doc['id']}"),
                         ("POST", "/api/v1/auth/login")]:
        problem(await api.request(method, path, raw_body=big, token=token), 413, "too_large")

    async def chunks(write: Any) -> None:
        for start in range(0, len(big), 300):
            await write(big[start:start + 300].encode())

    response = await AsyncHTTPClient().fetch(
        api.base + SERVICES, method="POST", body_producer=chunks, raise_error=False,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    small = json.dumps({"name": "x", "status": "up", "details": "d" * 900})
    assert len(small) <= 1024 and (await api.post(SERVICES, raw_body=small, token=token)).status == 201


async def test_field_names_mongodb_would_misread(api: ApiClient) -> None:
    token = editor(api)
    doc = await create(api, token)
    body = {"name": "x", "status": "up", "$set": {"name": "y"}, "a.b": 1, "": 2, "details": "x", "n\x00ul": 3}
    assert error_fields(await api.post(SERVICES, body, token=token)) == {"$set", "a.b", "", "n\x00ul"}
    assert error_fields(await api.put(f"{SERVICES}/{doc['id']}", body, token=token)) == {"$set", "a.b", "", "n\x00ul"}
    assert error_fields(await api.patch(f"{SERVICES}/{doc['id']}", {"$set": {"name": "y"}, "x.y": 1}, token=token)) == {"$set", "x.y"}
    # Even as a deletion (null) a `$` or dotted name is refused rather than silently ignored.
    assert error_fields(await api.patch(f"{SERVICES}/{doc['id']}", {"$unset": None, "a.b": None}, token=token)) == {"$unset", "a.b"}
    assert (await api.get(f"{SERVICES}/{doc['id']}", token=token)).body == doc


async def test_unknown_and_server_owned_fields_are_named(api: ApiClient) -> None:
    token = editor(api)
    doc = await create(api, token)
    unknown = {"name": "x", "status": "up", "colour": "red", "size": 3, "it's": 1}
    assert error_fields(await api.post(SERVICES, unknown, token=token)) == {"colour", "size", "it's"}
    assert error_fields(await api.put(f"{SERVICES}/{doc['id']}", unknown, token=token)) == {"colour", "size", "it's"}
    assert error_fields(await api.patch(f"{SERVICES}/{doc['id']}", {"colour": "red", "size": 3}, token=token)) == {"colour", "size"}
    owned = {"name": "x", "status": "up", "id": MISSING_ID, "version": 9, "created_at": "2020-01-01T00:00:00.000Z",
             "updated_at": "2020-01-01T00:00:00.000Z"}
    expected = {"id", "version", "created_at", "updated_at"}
    assert error_fields(await api.post(SERVICES, owned, token=token)) == expected
    assert error_fields(await api.put(f"{SERVICES}/{doc['id']}", owned, token=token)) == expected
    assert error_fields(await api.patch(f"{SERVICES}/{doc['id']}", {"version": None, "tenant": "x"}, token=token)) == {"version", "tenant"}
    assert (await api.get(f"{SERVICES}/{doc['id']}", token=token)).body == doc


async def test_schema_violations_name_each_field(api: ApiClient) -> None:
    token = editor(api)
    reply = await api.post(SERVICES, {"name": "", "status": "sideways", "response_time_ms": -1, "details": 5}, token=token)
    assert error_fields(reply) == {"name", "status", "response_time_ms", "details"}
    assert all(error["message"] for error in reply.body["errors"])
    assert error_fields(await api.post(SERVICES, {"details": "only"}, token=token)) == {"name", "status"}
    assert error_fields(await api.post(SERVICES, {"name": "x", "status": "up", "response_time_ms": 1.5}, token=token)) == {"response_time_ms"}
    doc = await create(api, token)
    assert error_fields(await api.patch(f"{SERVICES}/{doc['id']}", {"status": "sideways", "response_time_ms": "fast"}, token=token)) == {
        "status", "response_time_ms"}
    assert error_fields(await api.put(f"{SERVICES}/{doc['id']}", {"name": "x"}, token=token)) == {"status"}


async def test_integers_beyond_64_bits(custom_api: ApiClient) -> None:
    api = custom_api
    token = editor(api)
    for value in (2**63, -(2**63) - 1, 10**30):
        assert error_fields(await api.post("/api/v1/readings", {"value": value}, token=token)) == {"value"}
        problem(await api.get("/api/v1/readings" + query(filter={"value": value}), token=token), 400, "bad_filter")
    for value in (2**63 - 1, -(2**63)):
        created = await create(api, token, "/api/v1/readings", value=value)
        assert created["value"] == value
        assert (await api.get(f"/api/v1/readings/{created['id']}", token=token)).body["value"] == value


# -- lists ------------------------------------------------------------------------------------


async def test_filters_with_each_allowed_operator(api: ApiClient) -> None:
    token = editor(api)
    docs = {}
    for name, status, rt in [("a", "up", 10), ("b", "down", 20), ("c", "degraded", 30), ("d", "up", None)]:
        fields: dict[str, Any] = {"name": name, "status": status}
        if rt is not None:
            fields["response_time_ms"] = rt
        docs[name] = await create(api, token, **fields)
    await create(api, editor(api, "globex"), name="a", status="up", response_time_ms=10)
    cases: list[tuple[Any, str]] = [
        ({}, "abcd"),
        ({"status": "up"}, "ad"),
        ({"status": {"$eq": "down"}}, "b"),
        ({"status": {"$ne": "up"}}, "bc"),
        ({"response_time_ms": {"$gt": 10}}, "bc"),
        ({"response_time_ms": {"$gte": 20}}, "bc"),
        ({"response_time_ms": {"$lt": 20}}, "a"),
        ({"response_time_ms": {"$lte": 20}}, "ab"),
        ({"response_time_ms": {"$gt": 5, "$lt": 25}}, "ab"),
        ({"status": {"$in": ["down", "degraded"]}}, "bc"),
        ({"status": {"$nin": ["down", "degraded"]}}, "ad"),
        ({"response_time_ms": {"$exists": False}}, "d"),
        ({"response_time_ms": {"$exists": True}}, "abc"),
        ({"response_time_ms": None}, "d"),
        ({"response_time_ms": {"$ne": None}}, "abc"),
        ({"$and": [{"status": "up"}, {"response_time_ms": {"$exists": True}}]}, "a"),
        ({"$or": [{"name": "a"}, {"name": "c"}]}, "ac"),
        ({"response_time_ms": {"$not": {"$gt": 15}}}, "ad"),
        ({"id": docs["b"]["id"]}, "b"),
        ({"id": docs["b"]["id"].upper()}, "b"),
        ({"id": {"$in": [docs["a"]["id"], docs["c"]["id"]]}}, "ac"),
        ({"version": 1, "tenant": "acme"}, "abcd"),
        ({"name": {"$gt": "b"}}, "cd"),
        ({"response_time_ms": {"$gt": "10"}}, ""),
    ]
    for spec, expected in cases:
        assert "".join(await names(api, token, filter=spec, sort="name")) == expected, spec


async def test_rejected_filters(api: ApiClient) -> None:
    token = editor(api)
    deep: Any = {"name": "x"}
    for _ in range(10):
        deep = {"$and": [deep]}
    rejected: list[Any] = [
        {"$where": "sleep(1000)"}, {"name": {"$regex": "^a"}}, {"$expr": {"$eq": ["$name", "a"]}},
        {"$and": [{"$where": "1"}]}, {"$or": [{"name": {"$regex": "a"}}]}, {"name": {"$not": {"$regex": "a"}}},
        {"$and": [{"$or": [{"name": {"$where": "1"}}]}]}, {"name": {"$elemMatch": {"$eq": 1}}},
        {"$text": {"$search": "a"}}, {"$comment": "x"}, {"$nor": [{"name": "a"}]}, {"name": {"$size": 1}},
        {"name": {"first": "x"}}, {"name": {"$eq": {"$gt": ""}}}, {"name": {"$in": "a"}}, {"name": {"$in": [{"$gt": ""}]}},
        {"name": {"$exists": 1}}, {"name": {"$gt": None}}, {"name": {"$lt": True}}, {"name": {}}, {"$and": []},
        {"$or": {"name": "a"}}, {"undeclared": 1}, {"created_at": {"$gt": "2020"}}, {"name.first": "x"},
        {"id": "not-an-id"}, {"id": {"$gt": 5}}, {"name": {"$not": "a"}}, deep, [{"name": "a"}], "text", 5,
    ]
    for spec in rejected:
        problem(await api.get(SERVICES + query(filter=json.dumps(spec)), token=token), 400, "bad_filter")
    for raw in ["{", "{'name': 'a'}", "NaN"]:
        problem(await api.get(SERVICES + query(filter=raw), token=token), 400, "bad_request")


async def test_sort_on_declared_fields(api: ApiClient) -> None:
    token = editor(api)
    for name, rt in [("b", 20), ("a", 30), ("c", 10)]:
        await create(api, token, name=name, status="up", response_time_ms=rt)
    assert await names(api, token, sort="name") == ["a", "b", "c"]
    assert await names(api, token, sort="-name") == ["c", "b", "a"]
    assert await names(api, token, sort="response_time_ms") == ["c", "b", "a"]
    assert await names(api, token, sort="-response_time_ms") == ["a", "b", "c"]
    assert await names(api, token, sort="id") == ["b", "a", "c"]
    assert await names(api, token, sort="-id") == ["c", "a", "b"]
    assert await names(api, token) == ["b", "a", "c"]
    for bad in ("details", "bogus", "-", "tenant", "created_at", "$natural"):
        problem(await api.get(SERVICES + query(sort=bad), token=token), 400, "bad_request")


async def _walk(api: ApiClient, token: str, path: str, sort: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(100):
        params: dict[str, Any] = {"sort": sort, "limit": limit}
        if after:
            params["after"] = after
        reply = await api.get(path + query(**params), token=token)
        assert reply.status == 200, reply.body
        assert len(reply.body["items"]) <= limit
        seen.extend(reply.body["items"])
        after = reply.body["next"]
        if after is None:
            return seen
    raise AssertionError("pagination did not end")


async def test_pagination_visits_every_document_once_with_duplicates_and_nulls(custom_api: ApiClient) -> None:
    api = custom_api
    token = editor(api)
    ours = []
    for index, value in enumerate([3, 1, None, 3, "missing", 2, 3, None, 1, "missing", 2, 0, 3, -(2**63), 2**63 - 1]):
        fields: dict[str, Any] = {"label": "same" if index % 3 else f"l{index % 5}"}
        if value != "missing":
            fields["value"] = value
        ours.append(await create(api, token, "/api/v1/readings", **fields))
        await create(api, editor(api, "globex"), "/api/v1/readings", label="same", value=2)
    for field in ("value", "label"):
        ascending = sorted(ours, key=lambda d: ((0,) if d.get(field) is None else (1, d[field]), d["id"]))  # noqa: B023
        for limit in (1, 2, 4, 15, 50):
            up = await _walk(api, token, "/api/v1/readings", field, limit)
            assert [d["id"] for d in up] == [d["id"] for d in ascending], (field, limit)
            down = await _walk(api, token, "/api/v1/readings", f"-{field}", limit)
            assert [d["id"] for d in down] == [d["id"] for d in reversed(ascending)], (field, limit)


async def test_pagination_over_times_ids_and_a_filter(api: ApiClient) -> None:
    token = editor(api)
    docs = [await create(api, token, name=f"s{i}", status="up" if i % 2 else "down") for i in range(9)]
    by_time = sorted(docs, key=lambda d: (d["updated_at"], d["id"]))
    assert [d["id"] for d in await _walk(api, token, SERVICES, "updated_at", 2)] == [d["id"] for d in by_time]
    assert [d["id"] for d in await _walk(api, token, SERVICES, "-updated_at", 4)] == [d["id"] for d in reversed(by_time)]
    assert [d["id"] for d in await _walk(api, token, SERVICES, "-id", 2)] == sorted((d["id"] for d in docs), reverse=True)
    up = [d["id"] for d in docs if d["status"] == "up"]
    page = await api.get(SERVICES + query(filter={"status": "up"}, limit=3), token=token)
    rest = await api.get(SERVICES + query(filter={"status": "up"}, limit=3, after=page.body["next"]), token=token)
    assert [d["id"] for d in page.body["items"] + rest.body["items"]] == up and rest.body["next"] is None


async def test_default_and_capped_limit(small_page_api: ApiClient) -> None:
    api = small_page_api
    token = editor(api)
    for i in range(4):
        await create(api, token, name=f"s{i}", status="up")
    first = await api.get(SERVICES, token=token)
    assert len(first.body["items"]) == 2 and first.body["next"]
    assert len((await api.get(SERVICES + query(limit=3), token=token)).body["items"]) == 3
    for bad in ("4", "0", "-1", "abc", "1.5", "\u00b2", "\u0663", "9" * 5000, "+2"):
        problem(await api.get(SERVICES + query(limit=bad), token=token), 400, "bad_request")


async def test_malformed_cursors(api: ApiClient) -> None:
    token = editor(api)
    docs = [await create(api, token, name=f"s{i}", status="up") for i in range(3)]
    good = (await api.get(SERVICES + query(sort="name", limit=1), token=token)).body["next"]
    bad = [
        "!!!", "", "e30", cursor("name", 1), cursor("name", 1, "s0", "nope"), cursor("status", 1, "up", docs[0]["id"]),
        cursor("name", -1, "s0", docs[0]["id"]), cursor("name", 1, {"$gt": ""}, docs[0]["id"]),
        cursor("name", 1, {"$where": "1"}, docs[0]["id"]), cursor("name", 1, 2**70, docs[0]["id"]),
        cursor("name", 1, ["s0"], docs[0]["id"]), cursor("name", 1, "s0", docs[0]["id"], "extra"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(), good[:-3],
    ]
    for after in bad:
        if not after:
            continue
        problem(await api.get(SERVICES + query(sort="name", after=after), token=token), 400, "bad_request")
    problem(await api.get(SERVICES + query(sort="-name", after=good), token=token), 400, "bad_request")
    assert (await api.get(SERVICES + query(sort="name", after=good), token=token)).status == 200


# -- versions, ETags, If-Match ----------------------------------------------------------------


async def test_if_match(api: ApiClient) -> None:
    token = editor(api)
    doc = await create(api, token)
    path = f"{SERVICES}/{doc['id']}"
    ok = await api.patch(path, {"details": "1"}, token=token, headers={"If-Match": '"1"'})
    assert (ok.status, ok.headers["ETag"]) == (200, '"2"')
    stale = await api.patch(path, {"details": "2"}, token=token, headers={"If-Match": '"1"'})
    problem(stale, 412, "precondition_failed")
    assert "ETag" not in stale.headers
    problem(await api.put(path, {"name": "x", "status": "up"}, token=token, headers={"If-Match": '"1"'}), 412)
    problem(await api.patch(path, {"details": "2"}, token=token, headers={"If-Match": 'W/"2"'}), 412)
    assert (await api.patch(path, {"details": "3"}, token=token, headers={"If-Match": '"7", "2"'})).headers["ETag"] == '"3"'
    assert (await api.put(path, {"name": "x", "status": "up"}, token=token, headers={"If-Match": "*"})).headers["ETag"] == '"4"'
    for malformed in ("4", '"four"', '"4', '"\u00b2"', '"' + "9" * 5000 + '"', '"-1"', '""'):
        problem(await api.patch(path, {"details": "x"}, token=token, headers={"If-Match": malformed}), 400, "bad_request")
    problem(await api.delete(path, token=token, headers={"If-Match": '"3"'}), 412)
    assert (await api.get(path, token=token)).body["version"] == 4
    assert (await api.delete(path, token=token, headers={"If-Match": '"4"'})).status == 204


async def test_concurrent_patches_with_the_same_if_match_one_wins(api: ApiClient) -> None:
    token = editor(api)
    for round_ in range(5):
        doc = await create(api, token, name=f"r{round_}", status="up")
        path = f"{SERVICES}/{doc['id']}"
        first, second = await asyncio.gather(
            api.patch(path, {"details": "first"}, token=token, headers={"If-Match": '"1"'}),
            api.patch(path, {"details": "second"}, token=token, headers={"If-Match": '"1"'}),
        )
        assert sorted([first.status, second.status]) == [200, 412]
        winner, loser = (first, second) if first.status == 200 else (second, first)
        problem(loser, 412, "precondition_failed")
        final = (await api.get(path, token=token)).body
        assert final["version"] == 2 and final["details"] == winner.body["details"]


async def test_concurrent_patches_without_if_match_all_apply(api: ApiClient) -> None:
    token = editor(api)
    doc = await create(api, token, name="n", status="up")
    path = f"{SERVICES}/{doc['id']}"
    patches = [{"name": "renamed"}, {"status": "down"}, {"details": "d"}, {"response_time_ms": 5}]
    replies = await asyncio.gather(*(api.patch(path, body, token=token) for body in patches))
    assert [reply.status for reply in replies] == [200] * 4
    assert sorted(reply.body["version"] for reply in replies) == [2, 3, 4, 5]
    final = (await api.get(path, token=token)).body
    assert (final["version"], final["name"], final["status"], final["details"], final["response_time_ms"]) == (5, "renamed", "down", "d", 5)
