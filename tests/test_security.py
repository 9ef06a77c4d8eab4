"""Security over the socket and REST: the JWT attack set on the socket, tenant isolation under
fuzzed filters and roles, filter injection refused before MongoDB, callback names, security
headers on every response, and the origin policy through the app's setting.

The REST side of the JWT attacks is tests/test_auth.py; the SockJS layer's callback-name
and origin checks in isolation are tests/test_sockjs.py (test_unsafe_callbacks_are_refused,
test_websocket_origin_policy, test_cors_origin_policy). Here they are proved through the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jwt
import pytest
from bson import ObjectId
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import websocket_connect

from realtime_app.client import RealtimeClient
from realtime_app.data.filters import Filter
from realtime_app.data.resources import default_resources
from realtime_app.errors import BadFilter
from tests.background import BackgroundServer, background_server
from tests.helpers import TEST_JWT_SECRET, ApiClient
from tests.test_auth import b64, claims, forge, key_files, private_pem, public_pem

SERVICES = "/api/v1/services"
WAIT_S = 10.0


# -- (a) the JWT attack set, over the socket ------------------------------------------------


async def socket_auth(api: ApiClient, token: Any) -> list[dict[str, Any]]:
    """Open a session, send `token` as the first auth frame: every frame up to the close (or
    up to auth_ok, when the token is accepted)."""
    client = RealtimeClient(api.base, "unused", reconnect=False)
    await client.connect(authenticate=False)
    await client.send({"type": "auth", "token": token})
    frames = []
    try:
        while True:
            frame = await client.next_frame(timeout=WAIT_S)
            frames.append(frame)
            if frame["type"] in ("_closed", "auth_ok"):
                return frames
    finally:
        await client.close()


async def socket_refuses(api: ApiClient, token: Any, code: str = "auth_failed") -> str:
    frames = await socket_auth(api, token)
    kinds = [frame["type"] for frame in frames]
    assert "auth_ok" not in kinds, frames
    errors = [frame for frame in frames if frame["type"] == "error"]
    assert [error["code"] for error in errors] == [code], frames
    assert frames[-1]["type"] == "_closed" and frames[-1]["code"] == 4001, frames
    return str(errors[0]["message"])


async def socket_accepts(api: ApiClient, token: str) -> dict[str, Any]:
    frames = await socket_auth(api, token)
    assert frames[-1]["type"] == "auth_ok", frames
    return frames[-1]


async def test_socket_accepts_a_correctly_signed_forgery_the_control(api: ApiClient) -> None:
    auth_ok = await socket_accepts(api, forge({"alg": "HS256", "typ": "JWT"}, claims(), TEST_JWT_SECRET.encode()))
    assert auth_ok["user"] == "mallory" and auth_ok["roles"] == ["admin"]


async def test_socket_refuses_alg_none(api: ApiClient) -> None:
    for alg in ("none", "None", "NONE", ""):
        await socket_refuses(api, forge({"alg": alg, "typ": "JWT"}, claims()))
        await socket_refuses(api, forge({"alg": alg}, claims())[:-1] + "x")


async def test_socket_refuses_a_wrong_key_or_another_algorithm(api: ApiClient) -> None:
    await socket_refuses(api, jwt.encode(claims(), "another secret that is long enough to pass 32", algorithm="HS256"))
    await socket_refuses(api, jwt.encode(claims(), TEST_JWT_SECRET, algorithm="HS512"))
    await socket_refuses(api, forge({"alg": "HS256"}, claims(), b""))


async def test_socket_refuses_expired_tokens(api: ApiClient) -> None:
    message = await socket_refuses(api, jwt.encode(claims(exp=int(time.time()) - 60), TEST_JWT_SECRET, algorithm="HS256"), "token_expired")
    assert "expired" in message
    await socket_refuses(api, api.token(ttl_s=-60), "token_expired")
    await socket_refuses(api, jwt.encode(claims(nbf=int(time.time()) + 600), TEST_JWT_SECRET, algorithm="HS256"))


async def test_socket_refuses_a_tampered_payload(api: ApiClient) -> None:
    token = api.token("eve", "acme", ("viewer",))
    header, payload, signature = token.split(".")
    decoded = json.loads(jwt.utils.base64url_decode(payload))
    for change in ({"roles": ["admin"]}, {"tenant": "globex"}, {"exp": decoded["exp"] + 3600}, {"sub": "root"}):
        await socket_refuses(api, f"{header}.{b64(json.dumps({**decoded, **change}).encode())}.{signature}")
    await socket_refuses(api, f"{header}.{payload}.{signature[:-2]}AA")
    await socket_accepts(api, token)


async def test_socket_refuses_refresh_tokens_malformed_tokens_and_claims(api: ApiClient) -> None:
    await socket_refuses(api, api.token(use="refresh"))
    for token in ("", "abc", "a.b.c", "\u00e9.\u00e9.\u00e9", "x" * 9000, None, 42, ["a"], {"token": "x"}):
        await socket_refuses(api, token)
    for changes in ({"roles": ["root"]}, {"tenant": ""}, {"tenant": {"$ne": ""}}, {"exp": None}, {"sub": None}):
        await socket_refuses(api, jwt.encode(claims(**changes), TEST_JWT_SECRET, algorithm="HS256"))


@pytest.fixture
def aud_api(start_server: Any) -> ApiClient:
    return ApiClient(start_server(jwt_audience="realtime-api", jwt_issuer="https://issuer.test"))


async def test_socket_checks_audience_and_issuer(aud_api: ApiClient) -> None:
    good = {"aud": "realtime-api", "iss": "https://issuer.test"}
    await socket_accepts(aud_api, jwt.encode(claims(**good), TEST_JWT_SECRET, algorithm="HS256"))
    for changes in ({"aud": "other-api"}, {"aud": None}, {"aud": ["other"]}, {"iss": "https://evil.test"}, {"iss": None}):
        await socket_refuses(aud_api, jwt.encode(claims(**{**good, **changes}), TEST_JWT_SECRET, algorithm="HS256"))


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def rs256_api(start_server: Any, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> ApiClient:
    return ApiClient(start_server(jwt_algorithms="RS256", jwt_secret="", **key_files(tmp_path, rsa_key)))


async def test_socket_on_an_rs256_server_refuses_the_public_key_as_an_hmac_secret(rs256_api: ApiClient, rsa_key: rsa.RSAPrivateKey) -> None:
    api = rs256_api
    await socket_accepts(api, jwt.encode(claims(), private_pem(rsa_key), algorithm="RS256"))
    public = public_pem(rsa_key)
    for key in (public, public.strip(), public.replace(b"\n", b"")):
        await socket_refuses(api, forge({"alg": "HS256", "typ": "JWT"}, claims(), key))
    await socket_refuses(api, forge({"alg": "none"}, claims()))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await socket_refuses(api, jwt.encode(claims(), private_pem(other), algorithm="RS256"))
    await socket_refuses(api, jwt.encode(claims(), TEST_JWT_SECRET, algorithm="HS256"))


async def test_a_forged_refresh_on_an_open_socket_changes_nothing(api: ApiClient) -> None:
    """A refresh that fails is an error frame, not a close; the session keeps its old rights."""
    other_tenant = await api.post(SERVICES, {"name": "globex-only", "status": "up"}, token=api.token("g", "globex"))
    client = RealtimeClient(api.base, api.token("eve", "acme", ("viewer",)), reconnect=False)
    await client.connect()
    header, payload, signature = api.token("eve", "acme", ("viewer",)).split(".")
    decoded = json.loads(jwt.utils.base64url_decode(payload))
    forged = f"{header}.{b64(json.dumps({**decoded, 'roles': ['admin']}).encode())}.{signature}"
    for token in (forged, forge({"alg": "none"}, claims(sub="eve", tenant="acme")), "garbage"):
        await client.send({"type": "auth", "token": token})
        assert (await client.next_frame("error"))["code"] == "auth_failed"
    view = await client.subscribe("services", sub_id="all")
    assert view.snapshots == 1 and other_tenant.body["id"] not in view.docs
    assert client.closed is None
    await client.close()


# -- (b) tenant isolation, fuzzed --------------------------------------------------------------

TENANTS = ["t1", "t2", "other"]
tenant_values = st.sampled_from([*TENANTS, "", "T1", "t1 ", "nobody"])
tenant_conditions = st.one_of(
    tenant_values,
    st.builds(lambda v: {"$eq": v}, tenant_values),
    st.builds(lambda v: {"$ne": v}, tenant_values),
    st.builds(lambda vs: {"$in": vs}, st.lists(tenant_values, max_size=4)),
    st.builds(lambda vs: {"$nin": vs}, st.lists(tenant_values, max_size=4)),
    st.builds(lambda v: {"$gt": v}, tenant_values),
    st.builds(lambda v: {"$lte": v}, tenant_values),
    st.builds(lambda b: {"$exists": b}, st.booleans()),
    st.builds(lambda v: {"$not": {"$eq": v}}, tenant_values),
)
field_conditions = st.one_of(
    st.fixed_dictionaries({"tenant": tenant_conditions}),
    st.fixed_dictionaries({"status": st.sampled_from(["up", "down", "degraded"])}),
    st.fixed_dictionaries({"name": st.one_of(st.sampled_from(["alpha", "beta"]), st.builds(lambda v: {"$gte": v}, st.sampled_from(["a", "m"])))}),
    st.fixed_dictionaries({"tenant": tenant_conditions, "status": st.sampled_from(["up", "down"])}),
    st.just({}),
)
isolation_filters = st.recursive(
    field_conditions,
    lambda children: st.one_of(
        st.builds(lambda items: {"$or": items}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda items: {"$and": items}, st.lists(children, min_size=1, max_size=3)),
    ),
    max_leaves=6,
)
principals = st.tuples(st.sampled_from(["viewer", "editor", "admin"]), st.sampled_from([*TENANTS, "nobody"]))


@pytest.fixture(scope="module")
def tenants(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    with background_server(mongo_uri, tmp_path_factory.mktemp("tenants"), max_connections_per_user=1000) as bg:
        bg.run(_seed(bg))
        yield bg


async def _seed(bg: BackgroundServer) -> None:
    api = ApiClient(bg.server)
    root = bg.token("root", "t1", ("admin",))
    for tenant in TENANTS:
        for name, status in (("alpha", "up"), ("beta", "down"), ("gamma", "degraded"), ("zeta", "up")):
            created = await api.post(SERVICES, {"name": name, "status": status, "tenant": tenant}, token=root)
            assert created.status == 201, created.body


async def listed(api: ApiClient, token: str, spec: dict[str, Any]) -> list[dict[str, Any]] | None:
    reply = await api.get(f"{SERVICES}?{urlencode({'filter': json.dumps(spec), 'limit': 500})}", token=token)
    if reply.status == 400:
        return None
    assert reply.status == 200 and reply.body["next"] is None, reply.body
    return list(reply.body["items"])


def test_rest_lists_never_cross_tenants(tenants: BackgroundServer) -> None:
    async def compare(role: str, tenant: str, spec: dict[str, Any]) -> None:
        api = ApiClient(tenants.server)
        mine = await listed(api, tenants.token("u", tenant, (role,)), spec)
        everything = await listed(api, tenants.token("root", "t1", ("admin",)), spec)
        assert (mine is None) == (everything is None)
        if mine is None or everything is None:
            return
        expected = everything if role == "admin" else [doc for doc in everything if doc["tenant"] == tenant]
        assert sorted(doc["id"] for doc in mine) == sorted(doc["id"] for doc in expected), (role, tenant, spec)
        if role != "admin":
            assert all(doc["tenant"] == tenant for doc in mine)

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(principal=principals, spec=isolation_filters)
    def check(principal: tuple[str, str], spec: dict[str, Any]) -> None:
        tenants.run(compare(*principal, spec))

    check()
    # The fuzzing meant something: an admin's unfiltered list spans every tenant.
    everything = tenants.run(listed(ApiClient(tenants.server), tenants.token("root", "t1", ("admin",)), {}))
    assert everything is not None and {doc["tenant"] for doc in everything} >= set(TENANTS)


async def live_isolation(bg: BackgroundServer, role: str, tenant: str, spec: dict[str, Any]) -> None:
    """Subscribe with `spec`; write in another tenant, then in the subscriber's; the barrier
    subscription sees the second write after the fuzzed one would have seen the first."""
    api = ApiClient(bg.server)
    root = bg.token("root", "t1", ("admin",))
    client = RealtimeClient(bg.base, bg.token("u", tenant, (role,)), reconnect=False)
    await client.connect()
    try:
        fuzzed = await client.subscribe("services", spec, sub_id="fuzzed")
        if fuzzed.error is not None:
            assert fuzzed.error["code"] == "bad_filter", fuzzed.error
            return
        barrier = await client.subscribe("services", sub_id="barrier")
        if role != "admin":
            assert all(doc["tenant"] == tenant for doc in fuzzed.docs.values()), fuzzed.docs
        intruder = next(t for t in TENANTS if t != tenant)
        for status in ("up", "down"):
            await api.post(SERVICES, {"name": "alpha", "status": status, "tenant": intruder}, token=root)
        own = await api.post(SERVICES, {"name": "alpha", "status": "up", "tenant": tenant}, token=root)
        marker = own.body["id"]
        await barrier.wait_for(lambda view: marker in view.docs, WAIT_S)
        for change in fuzzed.changes:
            if change["op"] == "removed":
                assert "doc" not in change, change
            elif role != "admin":
                assert change["doc"]["tenant"] == tenant, (role, tenant, spec, change)
        if role != "admin":
            assert all(doc["tenant"] == tenant for doc in fuzzed.docs.values()), fuzzed.docs
    finally:
        await client.close()


def test_live_subscriptions_never_cross_tenants(tenants: BackgroundServer) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(principal=principals.filter(lambda p: p[1] != "nobody"), spec=isolation_filters)
    def check(principal: tuple[str, str], spec: dict[str, Any]) -> None:
        tenants.run(live_isolation(tenants, *principal, spec))

    check()


async def test_a_document_moved_to_another_tenant_leaves_as_removed(api: ApiClient) -> None:
    """Another program rewrites `tenant` in the database: the old tenant's subscribers get a
    `removed` without the document, the new tenant's get it `added`."""
    t1 = RealtimeClient(api.base, api.token("a", "t1", ("viewer",)), reconnect=False)
    t2 = RealtimeClient(api.base, api.token("b", "t2", ("viewer",)), reconnect=False)
    for client in (t1, t2):
        await client.connect()
    moving = (await api.post(SERVICES, {"name": "mover", "status": "up"}, token=api.token(tenant="t1"))).body
    t1_view, t2_view = await t1.subscribe("services", sub_id="v"), await t2.subscribe("services", sub_id="v")
    assert moving["id"] in t1_view.docs and moving["id"] not in t2_view.docs
    await api.context.db.collection("services").update_one({"_id": ObjectId(moving["id"])}, {"$set": {"tenant": "t2"}})
    await t1_view.wait_for(lambda view: moving["id"] not in view.docs, WAIT_S)
    await t2_view.wait_for(lambda view: moving["id"] in view.docs, WAIT_S)
    removed = [change for change in t1_view.changes if change["id"] == moving["id"]]
    assert [change["op"] for change in removed] == ["removed"] and "doc" not in removed[0]
    for client in (t1, t2):
        await client.close()


# -- (c) filter injection, refused before MongoDB --------------------------------------------

HOSTILE_FILTERS: list[Any] = [
    {"$where": "sleep(1000) || true"},
    {"name": {"$where": "1"}},
    {"$function": {"body": "function() { return true }", "args": [], "lang": "js"}},
    {"name": {"$eq": {"$function": {"body": "return true", "args": [], "lang": "js"}}}},
    {"$expr": {"$eq": ["$name", "$status"]}},
    {"$expr": {"$function": {"body": "return true", "args": [], "lang": "js"}}},
    {"$accumulator": {"init": "function() {}", "lang": "js"}},
    {"name": {"$regex": ".*"}},
    {"name": {"$regex": "^a", "$options": "i"}},
    {"name": {"$not": {"$regex": "x"}}},
    {"name": {"$in": [{"$regex": "x"}]}},
    {"name": {"$in": [["$where"]]}},
    {"name": {"$nin": [{"$gt": ""}]}},
    {"name": {"$eq": {"$gt": ""}}},
    {"name": {"$ne": ["$where"]}},
    {"name": {"$exists": {"$where": "1"}}},
    {"name": {"$gt": {"$function": {}}}},
    {"$and": [{"name": "x"}, {"status": {"$regex": "u"}}]},
    {"$or": [{"name": "x"}, {"$where": "1"}]},
    {"$or": [{"$and": [{"$or": [{"name": {"$not": {"$where": "1"}}}]}]}]},
    {"$nor": [{"name": "x"}]},
    {"$text": {"$search": "x"}},
    {"$comment": "x"},
    {"$jsonSchema": {}},
    {"name": {"$elemMatch": {"$gt": ""}}},
    {"name": {"$type": "string"}},
    {"name": {"$mod": [2, 0]}},
    {"name": {"$size": 1}},
    {"name": {"$all": ["x"]}},
    {"$name": 1},
    {"na.me": 1},
    {"details.x": 1},
    {"name.$": 1},
    {"": 1},
    {"name\x00": 1},
    {"_id": {"$gt": ""}},
    {"$and": {"name": "x"}},
    {"$or": []},
    [{"name": "x"}],
    "name",
]


@pytest.mark.parametrize("spec", HOSTILE_FILTERS, ids=lambda spec: json.dumps(spec)[:60])
def test_hostile_filters_raise_before_any_query(spec: Any) -> None:
    """`Filter` is built from the spec alone, with no database at hand: refusing here is
    refusing before MongoDB. The handlers and the socket build it before any query (below)."""
    with pytest.raises(BadFilter):
        Filter(spec, default_resources().get("services").filterable)


class CollectionSpy:
    """Records every collection the store asks the database for."""

    def __init__(self, api: ApiClient, monkeypatch: pytest.MonkeyPatch):
        self.names: list[str] = []
        original = api.context.db.collection

        def collection(name: str) -> Any:
            self.names.append(name)
            return original(name)

        monkeypatch.setattr(api.context.db, "collection", collection)


async def test_hostile_filters_get_400_and_bad_filter_without_a_query(spawn_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api = ApiClient(await spawn_server(frames_per_second=1000.0, frame_burst=1000))  # one frame per hostile filter
    client = RealtimeClient(api.base, api.token(), reconnect=False)
    await client.connect()
    spy = CollectionSpy(api, monkeypatch)
    for number, spec in enumerate(HOSTILE_FILTERS):
        reply = await api.get(f"{SERVICES}?filter={quote(json.dumps(spec))}", token=api.token())
        assert reply.status == 400 and reply.problem["type"].endswith("/bad_filter"), (spec, reply.body)
        await client.send({"type": "subscribe", "id": f"h{number}", "collection": "services", "filter": spec})
        error = await client.next_frame("error")
        assert (error["code"], error["ref"]) == ("bad_filter", f"h{number}"), (spec, error)
    assert spy.names == [], spy.names
    assert not api.server.realtime.hub.counts()  # type: ignore[union-attr]
    # The control: an allowed filter does reach the database, so the spy sees queries.
    assert (await api.get(f"{SERVICES}?filter={quote(json.dumps({'name': {'$in': ['a']}}))}", token=api.token())).status == 200
    await client.subscribe("services", {"status": {"$ne": "up"}}, sub_id="ok")
    assert spy.names == ["services", "services"]
    await client.close()


# -- (d) JSONP and htmlfile callback names, through the app ------------------------------------


async def fetch(api: ApiClient, path: str, method: str = "GET", body: str | None = None, **headers: str) -> HTTPResponse:
    request = HTTPRequest(api.base + path, method=method, body=body if body is not None or method != "POST" else "", headers=headers,
                          allow_nonstandard_methods=True, follow_redirects=False, request_timeout=WAIT_S)
    return await AsyncHTTPClient().fetch(request, raise_error=False)


async def test_callback_names_are_validated_on_the_app_endpoint(api: ApiClient) -> None:
    for transport in ("jsonp", "htmlfile"):
        for bad in ("alert(1)//", "a%3Cb", "x" * 65, "a-b", "parent.location%3D1"):
            reply = await fetch(api, f"/realtime/000/{secrets.token_hex(4)}/{transport}?c={bad}")
            assert reply.code == 500 and reply.headers["Content-Type"] == "text/plain; charset=UTF-8", (transport, bad)
            assert reply.body == b'invalid "callback" parameter'
    good = await fetch(api, f"/realtime/000/{secrets.token_hex(4)}/jsonp?c=_jp.a1b2c3")
    assert good.code == 200 and good.body.startswith(b'/**/_jp.a1b2c3("o");')
    realtime = api.server.realtime
    assert realtime is not None and len(realtime.connections) <= 1


async def test_a_session_polled_by_several_transports_closes_cleanly(spawn_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Opened by xhr, polled by jsonp and xhr_streaming: it still expires after the disconnect
    delay, leaves no count behind, and the server still shuts down (it crashed before)."""
    api = ApiClient(await spawn_server(sockjs_disconnect_delay_s=0.2))
    realtime = api.server.realtime
    assert realtime is not None and realtime.router is not None
    for number in range(3):
        session = f"/realtime/000/mixed{number}"
        assert (await fetch(api, f"{session}/xhr", "POST")).body == b"o\n"
        await fetch(api, f"{session}/jsonp?c=cb")
        await fetch(api, f"{session}/xhr_send", "POST", '["{\\"type\\":\\"ping\\"}"]')
    assert len(realtime.connections) == 3
    deadline = time.monotonic() + WAIT_S
    while (realtime.connections or realtime.router.sessions_by_transport()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not realtime.connections and realtime.router.sessions_by_transport() == {}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert (await fetch(api, "/realtime/000/last/xhr", "POST")).body == b"o\n"
    await fetch(api, "/realtime/000/last/jsonp?c=cb")  # open at shutdown, which must still succeed


# -- (e) security headers on every response ----------------------------------------------------


def assert_common_headers(reply: HTTPResponse, what: str) -> None:
    assert reply.headers.get("X-Content-Type-Options") == "nosniff", (what, reply.code, dict(reply.headers))
    assert reply.headers.get("Referrer-Policy") == "no-referrer", (what, dict(reply.headers))


def kinds_of_response(session: str) -> list[tuple[str, str, str | None]]:
    """(method, path, body) of every kind of handler that no page may frame: API, static,
    vendor, SockJS transports, errors."""
    return [
        ("GET", "/api/v1/health", None), ("GET", "/api/v1/openapi.json", None), ("GET", SERVICES, None),
        ("GET", "/api/v1/nothing-here", None), ("GET", "/nothing-here", None), ("POST", "/api/v1/auth/login", "{"),
        ("GET", "/", None), ("GET", "/vendor/sockjs.min.js", None), ("GET", "/static/missing.js", None),
        ("GET", "/realtime", None), ("GET", "/realtime/info", None), ("OPTIONS", f"{session}/xhr", None),
        ("POST", f"{session}/xhr", None), ("POST", f"{session}/xhr_send", '["{\\"type\\":\\"ping\\"}"]'),
        ("POST", "/realtime/000/nosuchsession/xhr_send", "[]"), ("GET", f"{session}/jsonp?c=cb", None),
        ("GET", f"{session}/jsonp?c=a(", None), ("GET", f"{session}/websocket", None), ("POST", f"{session}/websocket", None),
        ("GET", "/realtime/websocket", None),
    ]


# Pages that are framed (the SockJS iframe) or carry a policy of their own (the dashboard).
OTHER_PAGES: list[tuple[str, str, str | None]] = [("GET", "/static/index.html", None), ("GET", "/realtime/iframe.html", None)]


async def upgraded_headers(api: ApiClient) -> Any:
    """The headers of a websocket handshake's 101 answer."""
    ws = await websocket_connect(HTTPRequest(api.base.replace("http", "ws") + "/realtime/websocket", headers={"Origin": api.base}))
    try:
        return ws.headers
    finally:
        ws.close()


async def test_no_response_names_the_server_software(api: ApiClient) -> None:
    replies = [await fetch(api, path, method, body)
               for method, path, body in kinds_of_response(f"/realtime/000/{secrets.token_hex(4)}") + OTHER_PAGES]
    replies.append(await htmlfile_head(api, f"/realtime/000/{secrets.token_hex(4)}/htmlfile?c=_jp.x"))
    for reply in replies:
        assert "Server" not in reply.headers, (reply.request.url, reply.headers.get("Server"))
        assert "Strict-Transport-Security" not in reply.headers, reply.request.url  # plain HTTP, no TLS proxy said
    assert "Server" not in await upgraded_headers(api)


async def test_strict_transport_security_behind_a_tls_proxy(spawn_server: Any) -> None:
    api = ApiClient(await spawn_server(behind_tls_proxy=True))
    replies = [await fetch(api, path, method, body)
               for method, path, body in kinds_of_response(f"/realtime/000/{secrets.token_hex(4)}") + OTHER_PAGES]
    replies.append(await htmlfile_head(api, f"/realtime/000/{secrets.token_hex(4)}/htmlfile?c=_jp.x"))
    for reply in replies:
        assert reply.headers.get("Strict-Transport-Security") == "max-age=31536000", reply.request.url
    assert (await upgraded_headers(api)).get("Strict-Transport-Security") == "max-age=31536000"


async def test_security_headers_on_every_kind_of_response(api: ApiClient) -> None:
    denied = kinds_of_response(f"/realtime/000/{secrets.token_hex(4)}")
    for method, path, body in denied:
        reply = await fetch(api, path, method, body)
        assert_common_headers(reply, path)
        assert reply.headers.get("X-Frame-Options") == "DENY", (path, dict(reply.headers))
    for path in ("/static/index.html", "/static/dashboard.js", "/static/dashboard.css", "/static/realtime-client.js"):
        reply = await fetch(api, path)
        assert reply.code == 200, path
        assert_common_headers(reply, path)
        assert reply.headers["X-Frame-Options"] == "DENY"
        directives = {part.split()[0]: part.split()[1:] for part in reply.headers["Content-Security-Policy"].split("; ")}
        host = f"127.0.0.1:{api.server.port}"
        assert directives["default-src"] == ["'self'"] and directives["script-src"] == ["'self'"]
        assert directives["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
        assert directives["frame-src"] == ["'self'"] and directives["object-src"] == ["'none'"]
        assert directives["base-uri"] == ["'self'"] and directives["frame-ancestors"] == ["'none'"]
    host_injection = await fetch(api, "/static/index.html", Host="evil.example; script-src *")
    assert "script-src *" not in host_injection.headers.get("Content-Security-Policy", "")


async def framing_headers(api: ApiClient) -> list[tuple[str | None, str | None]]:
    """(X-Frame-Options, CSP) of the two pages sockjs-client puts in frames."""
    pages = ["/realtime/iframe.html", f"/realtime/000/{secrets.token_hex(4)}/htmlfile?c=_jp.x"]
    found = []
    for path in pages:
        if "htmlfile" in path:
            reply = await htmlfile_head(api, path)
        else:
            reply = await fetch(api, path)
        assert_common_headers(reply, path)
        found.append((reply.headers.get("X-Frame-Options"), reply.headers.get("Content-Security-Policy")))
    return found


async def htmlfile_head(api: ApiClient, path: str) -> HTTPResponse:
    """The htmlfile response streams until the session ends: its headers are what matter."""
    headers: list[str] = []
    request = HTTPRequest(api.base + path, header_callback=headers.append, streaming_callback=lambda _: None, request_timeout=1)
    with contextlib.suppress(HTTPClientError):  # the timeout that ends the stream
        await AsyncHTTPClient().fetch(request)
    parsed = HTTPResponse(request, 200)
    for line in headers[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            parsed.headers.add(name.strip(), value.strip())
    return parsed


async def test_framed_sockjs_pages_allow_the_same_origin_only(api: ApiClient) -> None:
    for frame_options, policy in await framing_headers(api):
        assert frame_options == "SAMEORIGIN" and policy == "frame-ancestors 'self'"


@pytest.mark.slow
async def test_framed_sockjs_pages_follow_allowed_origins(spawn_server: Any) -> None:
    listed = ApiClient(await spawn_server(allowed_origins="https://app.example"))
    for frame_options, policy in await framing_headers(listed):
        assert frame_options is None and policy == "frame-ancestors 'self' https://app.example"
    anyone = ApiClient(await spawn_server(allowed_origins="*"))
    for frame_options, policy in await framing_headers(anyone):
        assert frame_options is None and policy is None


# -- (f) the origin policy, through the app's setting ------------------------------------------


async def websocket_status(api: ApiClient, origin: str) -> int:
    url = f"ws://127.0.0.1:{api.server.port}/realtime/000/{secrets.token_hex(4)}/websocket"
    try:
        connection = await websocket_connect(HTTPRequest(url, headers={"Origin": origin}, request_timeout=WAIT_S))
    except HTTPClientError as exc:
        return exc.code
    assert await connection.read_message() == "o"
    connection.close()
    return 101


async def xhr_status(api: ApiClient, origin: str) -> tuple[int, str | None]:
    reply = await fetch(api, f"/realtime/000/{secrets.token_hex(4)}/xhr", "POST", Origin=origin)
    return reply.code, reply.headers.get("Access-Control-Allow-Origin")


async def test_origin_policy_from_the_allowed_origins_setting(spawn_server: Any) -> None:
    same_only = ApiClient(await spawn_server())
    own = same_only.base
    assert await websocket_status(same_only, own) == 101
    assert await websocket_status(same_only, "https://app.example") == 403
    assert await websocket_status(same_only, "null") == 403
    assert await xhr_status(same_only, own) == (200, own)
    assert (await xhr_status(same_only, "https://evil.example"))[0] == 403

    listed = ApiClient(await spawn_server(allowed_origins="https://app.example, http://localhost:3000"))
    assert await websocket_status(listed, "https://app.example") == 101
    assert await websocket_status(listed, "http://localhost:3000") == 101
    assert await websocket_status(listed, "https://evil.example") == 403
    assert await xhr_status(listed, "https://app.example") == (200, "https://app.example")
    assert (await xhr_status(listed, "https://app.example.evil.test"))[0] == 403
    info = await fetch(listed, "/realtime/info", Origin="https://evil.example")
    assert info.code == 403 and "Access-Control-Allow-Origin" not in info.headers

    anyone = ApiClient(await spawn_server(allowed_origins="*"))
    assert await websocket_status(anyone, "https://evil.example") == 101
    assert await xhr_status(anyone, "https://evil.example") == (200, "https://evil.example")
