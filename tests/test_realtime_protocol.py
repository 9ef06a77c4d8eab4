"""Every error code and close code of the live protocol, and the limits behind them."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from realtime_app.client import RealtimeClient
from tests.helpers import ApiClient


async def connected(api: ApiClient, *, auth: bool = True, **token_args: Any) -> RealtimeClient:
    client = RealtimeClient(api.base, api.token(**token_args), reconnect=False)
    await client.connect(authenticate=auth)
    return client


async def error_after(client: RealtimeClient, *frames: dict[str, Any] | str) -> dict[str, Any]:
    for frame in frames:
        if isinstance(frame, str):
            await client.send_raw(frame)
        else:
            await client.send(frame)
    return await client.next_frame("error")


async def test_welcome_frame(api: ApiClient) -> None:
    client = await connected(api, auth=False)
    welcome = await client.next_frame("welcome")
    assert welcome["protocol"] == 1 and welcome["heartbeat_ms"] > 0 and welcome["auth_timeout_ms"] > 0
    # Sent before anyone authenticated: the product and version, not the machine's name.
    assert welcome["server"].startswith("realtime-app/") and socket.gethostname() not in welcome["server"]
    await client.close()


async def test_bad_frames_get_bad_frame_errors_and_the_session_stays(api: ApiClient) -> None:
    client = await connected(api)
    for raw in ["not json", "[1,2]", '{"no":"type"}', '{"type":"dance"}', '{"type":"subscribe","id":5}', "NaN"]:
        error = await error_after(client, raw)
        assert error["code"] == "bad_frame", (raw, error)
    assert await client.ping() < 5
    await client.close()


async def test_subscription_errors(api: ApiClient) -> None:
    client = await connected(api)
    assert (await error_after(client, {"type": "subscribe", "id": "a", "collection": "nope"}))["code"] == "unknown_collection"
    error = await error_after(client, {"type": "subscribe", "id": "b", "collection": "services", "filter": {"$where": "1"}})
    assert error["code"] == "bad_filter" and error["ref"] == "b"
    error = await error_after(client, {"type": "subscribe", "id": "c", "collection": "services", "filter": {"name": {"$regex": "x"}}})
    assert error["code"] == "bad_filter"
    assert (await error_after(client, {"type": "unsubscribe", "id": "zzz"}))["code"] == "unknown_subscription"
    assert (await error_after(client, {"type": "refresh", "id": "zzz"}))["code"] == "unknown_subscription"
    await client.subscribe("services", sub_id="dup")
    assert (await error_after(client, {"type": "subscribe", "id": "dup", "collection": "services"}))["code"] == "bad_frame"
    error = await error_after(client, {"type": "subscribe", "id": "t", "collection": "services", "throttle_ms": -1})
    assert error["code"] == "bad_frame"
    await client.close()


async def test_forbidden_collection(spawn_server, tmp_path: Path) -> None:
    resources = {"collections": [{"name": "secrets", "schema": {"type": "object", "properties": {"v": {"type": "string"}}},
                                  "permissions": {"read": ["editor"], "write": ["editor"]}}]}
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(resources))
    api = ApiClient(await spawn_server(resources_file=str(path)))
    client = await connected(api, roles=("viewer",))
    assert (await error_after(client, {"type": "subscribe", "id": "s", "collection": "secrets"}))["code"] == "forbidden"
    await client.close()


async def test_subscribe_before_auth_is_auth_required(api: ApiClient) -> None:
    client = await connected(api, auth=False)
    error = await error_after(client, {"type": "subscribe", "id": "s", "collection": "services"})
    assert error["code"] == "auth_required"
    await client.close()


async def test_bad_token_closes_4001(api: ApiClient) -> None:
    client = await connected(api, auth=False)
    assert (await error_after(client, {"type": "auth", "token": "garbage"}))["code"] == "auth_failed"
    assert (await client.next_frame("_closed"))["code"] == 4001
    await client.close()


async def test_expired_token_is_token_expired(api: ApiClient) -> None:
    client = await connected(api, auth=False)
    expired = api.token(ttl_s=-3600)
    assert (await error_after(client, {"type": "auth", "token": expired}))["code"] == "token_expired"
    assert (await client.next_frame("_closed"))["code"] == 4001
    await client.close()


async def test_auth_timeout_closes_4001(spawn_server) -> None:
    api = ApiClient(await spawn_server(auth_timeout_s=0.3))
    client = await connected(api, auth=False)
    assert (await client.next_frame("error"))["code"] == "auth_required"
    assert (await client.next_frame("_closed"))["code"] == 4001
    await client.close()


@pytest.mark.slow
async def test_token_refresh_keeps_subscriptions(spawn_server) -> None:
    server = await spawn_server(reauth_lead_s=2.5, jwt_leeway_s=0)
    api = ApiClient(server)
    fresh_tokens = iter([api.token(ttl_s=3)] + [api.token() for _ in range(5)])

    async def token() -> str:
        return next(fresh_tokens)

    client = RealtimeClient(api.base, token, reconnect=False)
    await client.connect()
    view = await client.subscribe("services")
    assert (await client.next_frame("reauth_required", timeout=5))["expires_in_ms"] <= 3000
    await client.next_frame("auth_ok")
    await asyncio.sleep(1.5)  # past the first token's expiry
    created = (await api.post("/api/v1/services", {"name": "after-refresh", "status": "up"}, token=api.token())).body
    await view.wait_for(lambda v: created["id"] in v.docs)
    await client.close()


async def test_expiry_without_refresh_drops_subscriptions_and_closes(spawn_server) -> None:
    server = await spawn_server(reauth_lead_s=0.5, jwt_leeway_s=0)
    api = ApiClient(server)
    client = RealtimeClient(api.base, api.token(ttl_s=1), reconnect=False)
    await client.connect()
    await client.subscribe("services")
    assert (await client.next_frame("error", timeout=5))["code"] == "token_expired"
    assert (await client.next_frame("_closed"))["code"] == 4001
    await client.close()


async def test_refresh_for_another_user_closes_4003(api: ApiClient) -> None:
    client = await connected(api)
    assert (await error_after(client, {"type": "auth", "token": api.token(user="mallory")}))["code"] == "forbidden"
    assert (await client.next_frame("_closed"))["code"] == 4003
    await client.close()


async def test_too_many_subscriptions(spawn_server) -> None:
    api = ApiClient(await spawn_server(max_subscriptions=2))
    client = await connected(api)
    await client.subscribe("services", sub_id="one")
    await client.subscribe("incidents", sub_id="two")
    assert (await error_after(client, {"type": "subscribe", "id": "three", "collection": "services"}))["code"] == "too_many_subscriptions"
    await client.unsubscribe("one")
    await client.subscribe("services", sub_id="three")
    await client.close()


async def test_rate_limit_errors_then_closes_4008(spawn_server) -> None:
    api = ApiClient(await spawn_server(frames_per_second=1, frame_burst=2))
    client = await connected(api)
    for _ in range(3):
        await client.send({"type": "ping"})
    assert (await client.next_frame("error"))["code"] == "rate_limited"
    for _ in range(30):
        await client.send({"type": "ping"})
    assert (await client.next_frame("_closed"))["code"] == 4008
    assert api.server.realtime is not None and api.server.realtime.counters.rate_limited > 0
    await client.close()


async def test_oversized_frame_closes_4008(spawn_server) -> None:
    api = ApiClient(await spawn_server(max_frame_bytes=1024))
    client = await connected(api)
    await client.send({"type": "ping", "ts": "x" * 2000})
    assert (await client.next_frame("error"))["code"] == "bad_frame"
    assert (await client.next_frame("_closed"))["code"] == 4008
    await client.close()


async def test_connections_per_user_limit_closes_4008(spawn_server) -> None:
    api = ApiClient(await spawn_server(max_connections_per_user=1))
    first = await connected(api)
    second = await connected(api, auth=False)
    await second.send({"type": "auth", "token": api.token()})
    assert (await second.next_frame("_closed"))["code"] == 4008
    await first.close()
    await second.close()
    third = await connected(api)
    await third.close()


async def test_counts_return_to_zero_after_clients_leave(api: ApiClient) -> None:
    realtime = api.server.realtime
    assert realtime is not None
    clients = [await connected(api) for _ in range(3)]
    for client in clients:
        await client.subscribe("services")
    assert sum(realtime.hub.counts().values()) == 3 and len(realtime.connections) == 3
    for client in clients:
        await client.close()
    for _ in range(50):
        if not realtime.connections and not realtime.hub.counts() and realtime.connections.users == 0:
            break
        await asyncio.sleep(0.1)
    assert not realtime.connections and not realtime.hub.counts() and realtime.connections.users == 0


async def test_raw_websocket_endpoint_speaks_the_protocol(api: ApiClient) -> None:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(api.base.replace("http", "ws") + "/realtime/websocket", headers={"Origin": api.base}))
    welcome = json.loads(await ws.read_message())
    assert welcome["type"] == "welcome"
    ws.write_message(json.dumps({"type": "auth", "token": api.token()}))
    assert json.loads(await ws.read_message())["type"] == "auth_ok"
    ws.close()


async def test_raw_websocket_closes_with_the_close_code_and_reason(spawn_server: Any) -> None:
    """The plain websocket has no SockJS close frame: the websocket close frame carries them."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    api = ApiClient(await spawn_server(auth_timeout_s=0.3, max_frame_bytes=1024))
    url = api.base.replace("http", "ws") + "/realtime/websocket"
    for frame, code, reason in ((None, 4001, "authentication timed out"), ({"type": "ping", "ts": "x" * 2000}, 4008, "frame too large")):
        ws = await websocket_connect(HTTPRequest(url, headers={"Origin": api.base}))
        if frame is not None:
            ws.write_message(json.dumps(frame))
        while await asyncio.wait_for(ws.read_message(), 5) is not None:
            pass
        ws.close()
        assert (ws.close_code, ws.close_reason) == (code, reason)
