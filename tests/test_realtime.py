"""Live updates end to end: real mongod, real server on loopback, the Python client."""

from __future__ import annotations

import asyncio

import pytest

from realtime_app.app import Server
from realtime_app.client import RealtimeClient
from realtime_app.testing.rawsocket import sockjs_messages, sockjs_payload
from tests.helpers import ApiClient


def client_for(api: ApiClient, transport: str = "websocket", **token_args) -> RealtimeClient:
    return RealtimeClient(api.base, api.token(**token_args), transport=transport)


@pytest.mark.parametrize("transport", ["websocket", pytest.param("xhr-polling", marks=pytest.mark.slow)])
async def test_round_trip_on_each_transport(api: ApiClient, transport: str) -> None:
    token = api.token()
    client = client_for(api, transport)
    try:
        auth_ok = await client.connect()
        assert auth_ok["user"] == "ed" and auth_ok["tenant"] == "t1"
        view = await client.subscribe("services")
        assert view.docs == {}
        created = (await api.post("/api/v1/services", {"name": "a", "status": "up"}, token=token)).body
        await view.wait_for(lambda v: created["id"] in v.docs)
        assert view.changes[-1]["op"] == "added" and view.changes[-1]["cause"] == "insert"
        await api.patch(f"/api/v1/services/{created['id']}", {"status": "down"}, token=token)
        await view.wait_for(lambda v: v.docs[created["id"]]["status"] == "down")
        await api.delete(f"/api/v1/services/{created['id']}", token=token)
        await view.wait_for(lambda v: created["id"] not in v.docs)
        assert [c["op"] for c in view.changes] == ["added", "changed", "removed"]
        assert await client.ping() < 5
    finally:
        await client.close()


async def test_direct_database_writes_arrive_like_api_writes(api: ApiClient, server: Server) -> None:
    client = client_for(api)
    try:
        await client.connect()
        view = await client.subscribe("services", {"status": "down"})
        collection = server.context.db.collection("services")
        result = await collection.insert_one({"name": "direct", "status": "down", "tenant": "t1", "version": 1})
        await view.wait_for(lambda v: str(result.inserted_id) in v.docs)
        await collection.update_one({"_id": result.inserted_id}, {"$set": {"status": "up"}})
        await view.wait_for(lambda v: str(result.inserted_id) not in v.docs)
        assert [c["op"] for c in view.changes] == ["added", "removed"]
        assert view.changes[-1]["cause"] == "update"
    finally:
        await client.close()


async def test_tenants_are_isolated_and_admins_see_all(api: ApiClient) -> None:
    t1, t2 = api.token(tenant="t1"), api.token(tenant="t2")
    mine = client_for(api, tenant="t1", roles=("viewer",))
    admin = client_for(api, user="root", tenant="t1", roles=("admin",))
    try:
        await mine.connect()
        await admin.connect()
        mine_view = await mine.subscribe("services")
        admin_view = await admin.subscribe("services")
        other = (await api.post("/api/v1/services", {"name": "theirs", "status": "up"}, token=t2)).body
        own = (await api.post("/api/v1/services", {"name": "ours", "status": "up"}, token=t1)).body
        await admin_view.wait_for(lambda v: {other["id"], own["id"]} <= set(v.docs))
        await mine_view.wait_for(lambda v: own["id"] in v.docs)
        await api.delete(f"/api/v1/services/{other['id']}", token=t2)
        # A barrier: changes reach a socket in the order MongoDB made them, so once a write made
        # after the delete has arrived, the delete would have arrived before it.
        marker = (await api.post("/api/v1/services", {"name": "after the delete", "status": "up"}, token=t1)).body
        await mine_view.wait_for(lambda v: marker["id"] in v.docs)
        assert set(mine_view.docs) == {own["id"], marker["id"]}
        assert all(c["id"] != other["id"] for c in mine_view.changes)
    finally:
        await mine.close()
        await admin.close()


async def test_live_query_enter_and_leave(api: ApiClient) -> None:
    token = api.token()
    client = client_for(api)
    try:
        await client.connect()
        view = await client.subscribe("services", {"status": "down"})
        doc = (await api.post("/api/v1/services", {"name": "svc", "status": "up"}, token=token)).body
        path = f"/api/v1/services/{doc['id']}"
        await api.patch(path, {"status": "down"}, token=token)
        await view.wait_for(lambda v: doc["id"] in v.docs)
        await api.patch(path, {"status": "degraded"}, token=token)
        await view.wait_for(lambda v: doc["id"] not in v.docs)
        await api.delete(path, token=token)
        marker = (await api.post("/api/v1/services", {"name": "marker", "status": "down"}, token=token)).body
        await view.wait_for(lambda v: marker["id"] in v.docs)
        assert [(c["id"], c["op"], c["cause"]) for c in view.changes] == [
            (doc["id"], "added", "update"), (doc["id"], "removed", "update"), (marker["id"], "added", "insert"),
        ]
    finally:
        await client.close()


async def test_graceful_shutdown_says_goodbye(spawn_server) -> None:
    server = await spawn_server(shutdown_reconnect_after_ms=1234)
    api = ApiClient(server)
    client = RealtimeClient(api.base, api.token(), reconnect=False)
    await client.connect()
    await server.stop()
    goodbye = await client.next_frame("goodbye")
    assert goodbye["code"] == 1001 and goodbye["reconnect_after_ms"] == 1234
    closed = await client.next_frame("_closed")
    assert closed["code"] == 1001
    await client.close()


async def test_two_processes_share_one_replica_set(spawn_server) -> None:
    first = await spawn_server(mongo_db="shared_two_process")
    second = await spawn_server(mongo_db="shared_two_process")
    api_a, api_b = ApiClient(first), ApiClient(second)
    subscriber = RealtimeClient(api_b.base, api_b.token())
    try:
        await subscriber.connect()
        view = await subscriber.subscribe("services")
        created = (await api_a.post("/api/v1/services", {"name": "via-a", "status": "up"}, token=api_a.token())).body
        await view.wait_for(lambda v: created["id"] in v.docs)
    finally:
        await subscriber.close()


async def test_a_burst_of_changes_reaches_a_websocket_in_few_frames(api: ApiClient, server: Server) -> None:
    """Changes that MongoDB returns in one batch go out together: one SockJS frame holds several."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = api.base.replace("http", "ws") + "/realtime/000/burst/websocket"
    ws = await websocket_connect(HTTPRequest(url, headers={"Origin": api.base}))
    try:
        assert await ws.read_message() == "o"

        async def messages() -> list[dict]:
            frame = await asyncio.wait_for(ws.read_message(), 10)
            assert isinstance(frame, str) and frame.startswith("a"), frame
            return sockjs_messages(frame)

        ws.write_message(sockjs_payload({"type": "auth", "token": api.token()}))
        kinds = [m["type"] for m in await messages()]
        while "snapshot" not in kinds:
            if "auth_ok" in kinds:
                ws.write_message(sockjs_payload({"type": "subscribe", "id": "s", "collection": "services"}))
            kinds = [m["type"] for m in await messages()]
        names = [f"burst-{i}" for i in range(40)]
        await server.context.db.collection("services").insert_many([{"name": n, "status": "up", "tenant": "t1", "version": 1} for n in names])
        received, frames = [], 0
        while len(received) < len(names):
            batch = [m for m in await messages() if m["type"] == "change"]
            frames += bool(batch)
            received += [m["doc"]["name"] for m in batch]
        assert received == names
        assert frames < len(names) / 2, f"{len(names)} changes came in {frames} frames"
    finally:
        ws.close()


async def test_the_client_keeps_only_the_newest_unread_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that only reads its views must not hold every frame it ever received."""
    monkeypatch.setattr("realtime_app.client.FRAMES_KEPT", 3)
    client = RealtimeClient("http://127.0.0.1:1", "token")
    for n in range(5):
        client._keep({"type": "pong", "ts": n})
    assert [(await client.next_frame(timeout=1))["ts"] for _ in range(3)] == [2, 3, 4]
