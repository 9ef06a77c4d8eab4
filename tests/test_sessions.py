"""Login sessions: refresh tokens rotate on use, a reused one ends its session, logout ends it,
and every ending reaches each process serving the database through MongoDB alone."""

from __future__ import annotations

from typing import Any

import pymongo

from realtime_app.auth.sessions import SESSIONS_COLLECTION
from realtime_app.client import RealtimeClient
from tests.helpers import ApiClient, Reply, refused_soon
from tests.test_auth import COLLECTIONS, LOGIN, PASSWORD, REFRESH, add_user, login, use

LOGOUT = "/api/v1/auth/logout"


async def refresh(api: ApiClient, refresh_token: str) -> Reply:
    return await api.post(REFRESH, {"refresh_token": refresh_token})


async def test_a_refresh_token_works_once_and_a_reused_one_ends_its_session(api: ApiClient) -> None:
    await add_user(api)
    first = (await login(api)).body
    second = await refresh(api, first["refresh_token"])
    assert second.status == 200, second.body
    third = await refresh(api, second.body["refresh_token"])
    assert third.status == 200 and (await use(api, third.body["access_token"])).status == 200

    # The first refresh token again: someone kept a copy. The whole session ends.
    reused = await refresh(api, first["refresh_token"])
    assert reused.status == 401 and "used before" in reused.problem["detail"]
    again = await refresh(api, third.body["refresh_token"])
    assert again.status == 401 and "ended" in again.problem["detail"]
    for access in (first["access_token"], second.body["access_token"], third.body["access_token"]):
        assert "session has ended" in (await refused_soon(api, access)).problem["detail"]
    # Another login is another session, untouched.
    other = (await login(api)).body
    assert (await refresh(api, other["refresh_token"])).status == 200


async def test_logout_ends_the_session_its_tokens_and_its_sockets(api: ApiClient) -> None:
    await add_user(api)
    pair = (await login(api)).body
    kept = (await login(api)).body  # the same user signed in elsewhere
    client = RealtimeClient(api.base, pair["access_token"], reconnect=False)
    await client.connect()
    await client.subscribe("services", sub_id="all")

    reply = await api.post(LOGOUT, {"refresh_token": pair["refresh_token"]})
    assert (reply.status, reply.body) == (204, "")
    # This process refuses at once, before the change stream brings the change back.
    assert "signed out" in (await use(api, pair["access_token"])).problem["detail"]
    assert (await refresh(api, pair["refresh_token"])).status == 401
    error = await client.next_frame("error")
    assert error["code"] == "auth_failed" and "signed out" in error["message"]
    assert (await client.next_frame("_closed"))["code"] == 4001
    await client.close()
    assert (await use(api, kept["access_token"])).status == 200
    assert (await refresh(api, kept["refresh_token"])).status == 200
    assert (await api.post(LOGOUT, {"refresh_token": pair["refresh_token"]})).status == 204  # already ended: same answer


async def test_logout_refuses_what_is_not_a_refresh_token(api: ApiClient) -> None:
    await add_user(api)
    pair = (await login(api)).body
    for bad in ("garbage", "", 7, None, pair["access_token"], api.token(use="refresh")):
        reply = await api.post(LOGOUT, {"refresh_token": bad})
        assert reply.status == 401 and reply.problem["detail"], bad
    for body in ({}, [], {"token": pair["refresh_token"]}):
        reply = await api.post(LOGOUT, body)
        assert reply.status == 400 and reply.problem
    assert (await use(api, pair["access_token"])).status == 200


async def test_endings_reach_every_process_on_the_database(spawn_server: Any) -> None:
    first = ApiClient(await spawn_server())
    second = ApiClient(await spawn_server(mongo_db=first.context.settings.mongo_db))
    await add_user(first)
    pair = (await first.post(LOGIN, {"username": "alice", "password": PASSWORD})).body
    assert (await use(second, pair["access_token"])).status == 200
    client = RealtimeClient(second.base, pair["access_token"], reconnect=False)
    await client.connect()

    assert (await first.post(LOGOUT, {"refresh_token": pair["refresh_token"]})).status == 204
    assert "signed out" in (await refused_soon(second, pair["access_token"])).problem["detail"]
    assert (await client.next_frame("_closed"))["code"] == 4001
    await client.close()

    fresh = (await login(second)).body["access_token"]
    await second.context.auth.users.remove("alice")
    assert "no longer exists" in (await refused_soon(first, fresh)).problem["detail"]


async def test_sessions_expire_from_the_database_on_their_own(api: ApiClient) -> None:
    await add_user(api)
    await login(api)
    with pymongo.MongoClient(api.context.settings.mongo_uri) as client:
        sessions = client[api.context.settings.mongo_db][SESSIONS_COLLECTION]
        ttl = [index for index in sessions.index_information().values() if "expireAfterSeconds" in index]
        assert [(index["key"], index["expireAfterSeconds"]) for index in ttl] == [([("expires_at", 1)], 0)]
        [stored] = sessions.find()
    assert stored["user"] == "alice" and "password" not in stored and stored["expires_at"]


async def test_outside_tokens_for_users_not_stored_keep_working(api: ApiClient) -> None:
    await add_user(api)
    outsider = api.token("ops", "acme", ("admin",))
    alice = (await login(api)).body["access_token"]
    await api.context.auth.users.remove("alice")
    await refused_soon(api, alice)  # the removal has reached this process
    assert (await api.get(COLLECTIONS, token=outsider)).status == 200
