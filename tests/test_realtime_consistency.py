"""Nothing lost, nothing twice, nobody else's data: the live path under concurrent writes."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pymongo
import pytest
from bson import ObjectId

from realtime_app.app import Server
from realtime_app.client import RealtimeClient
from realtime_app.data.embedded_mongo import EmbeddedMongo, find_mongod
from realtime_app.data.filters import Filter
from tests.helpers import ApiClient, eventually

STATUSES = ["up", "down", "degraded"]


class FrameChecker:
    """Replays every frame a client receives on a shadow view and records protocol violations."""

    def __init__(self) -> None:
        self.views: dict[str, dict[str, dict[str, Any]]] = {}
        self.violations: list[str] = []
        self.frames: list[dict[str, Any]] = []

    def __call__(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        kind, sub = frame.get("type"), frame.get("sub")
        if kind == "snapshot":
            self.views[sub] = {doc["id"]: doc for doc in frame["docs"]}
        elif kind == "change":
            view = self.views.setdefault(sub, {})
            doc_id, op = frame["id"], frame["op"]
            present = doc_id in view
            if op == "added" and present:
                self.violations.append(f"{sub}: added {doc_id} that the view already has")
            if op == "changed" and not present:
                self.violations.append(f"{sub}: changed {doc_id} that the view does not have")
            # `removed` of an id the view lacks is allowed, a no-op: a document added and removed
            # again while queued for a slow client still arrives as `removed` (the delivery contract).
            if op == "changed" and present and frame["doc"]["version"] <= view[doc_id]["version"]:
                self.violations.append(f"{sub}: version of {doc_id} went from {view[doc_id]['version']} to {frame['doc']['version']}")
            if op == "removed":
                view.pop(doc_id, None)
            else:
                view[doc_id] = frame["doc"]


def expected(collection: pymongo.collection.Collection, tenant: str | None, spec: dict[str, Any], fields: set[str]) -> dict[str, int]:
    query = Filter(spec, fields).mongo
    if tenant is not None:
        query = {"$and": [{"tenant": tenant}, query]} if query else {"tenant": tenant}
    return {str(doc["_id"]): doc["version"] for doc in collection.find(query)}


async def random_writes(server: Server, count: int, tenants: list[str], rng: random.Random, pause: float = 0.0) -> None:
    """Direct motor writes, as any other program of the database would make them."""
    assert server.context is not None
    collection = server.context.db.collection("services")
    ids: list[tuple[ObjectId, str]] = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.3 or len(ids) < 5:
            tenant = rng.choice(tenants)
            result = await collection.insert_one({
                "name": f"s{n}", "status": rng.choice(STATUSES), "response_time_ms": rng.randint(0, 300), "tenant": tenant, "version": 1,
            })
            ids.append((result.inserted_id, tenant))
        elif roll < 0.9:
            oid, _ = rng.choice(ids)
            await collection.update_one({"_id": oid}, {"$set": {"status": rng.choice(STATUSES), "response_time_ms": rng.randint(0, 300)},
                                                        "$inc": {"version": 1}})
        else:
            oid, tenant = ids.pop(rng.randrange(len(ids)))
            await collection.delete_one({"_id": oid})
        if pause:
            await asyncio.sleep(pause)


async def test_snapshot_and_live_meet_without_gap_or_duplicate(server: Server, mongo_uri: str) -> None:
    api = ApiClient(server)
    rng = random.Random(11)
    checkers = [FrameChecker() for _ in range(6)]
    clients = [RealtimeClient(api.base, api.token(tenant="t1"), on_frame=checker) for checker in checkers]
    filters = [{}, {"status": "down"}, {"response_time_ms": {"$gte": 150}}, {"$or": [{"status": "up"}, {"response_time_ms": {"$lt": 50}}]},
               {"status": {"$in": ["down", "degraded"]}}, {"status": {"$not": {"$eq": "up"}}}]
    writer = asyncio.ensure_future(random_writes(server, 600, ["t1"], rng))
    for client, spec in zip(clients, filters, strict=True):
        await asyncio.sleep(rng.uniform(0.05, 0.3))
        await client.connect()
        await client.subscribe("services", spec, sub_id="q")
    await writer
    fields = server.context.resources.get("services").filterable  # type: ignore[union-attr]
    with pymongo.MongoClient(mongo_uri) as sync:
        collection = sync[server.settings.mongo_db]["services"]
        for client, spec, checker in zip(clients, filters, checkers, strict=True):
            want = expected(collection, "t1", spec, fields)
            await eventually(lambda c=client, w=want: {i: d["version"] for i, d in c.queries["q"].docs.items()} == w)
            assert {i: d["version"] for i, d in checker.views["q"].items()} == want
            assert not checker.violations, checker.violations[:5]
    for client in clients:
        await client.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
async def test_resume_after_random_disconnects_loses_nothing(server: Server, mongo_uri: str, transport: str) -> None:
    api = ApiClient(server)
    rng = random.Random(5)
    checker = FrameChecker()
    client = RealtimeClient(api.base, api.token(tenant="t1"), transport=transport, on_frame=checker)
    await client.connect()
    await client.subscribe("services", sub_id="all")
    writer = asyncio.ensure_future(random_writes(server, 300, ["t1"], rng, pause=0.005))
    drops = 0
    while not writer.done():
        await asyncio.sleep(rng.uniform(0.1, 0.4))
        await client.drop()
        drops += 1
    await writer
    fields = server.context.resources.get("services").filterable  # type: ignore[union-attr]
    with pymongo.MongoClient(mongo_uri) as sync:
        want = expected(sync[server.settings.mongo_db]["services"], "t1", {}, fields)
    await eventually(lambda: {i: d["version"] for i, d in client.queries["all"].docs.items()} == want)
    # The view can be complete before the last session's `resumed` arrives: wait for that frame too.
    await eventually(lambda: [f["type"] for f in checker.frames if f["type"] in ("auth_ok", "resumed")][-1] == "resumed")
    assert not checker.violations, checker.violations[:5]
    snapshots = [f for f in checker.frames if f["type"] == "snapshot"]
    assert len(snapshots) == 1, "every reconnect resumed instead of resyncing"
    assert drops > 0 and sum(f["type"] == "resumed" for f in checker.frames) > 0
    await client.close()


async def test_resume_beyond_the_replay_window_resyncs(spawn_server) -> None:
    server = await spawn_server(replay_buffer_events=5)
    api = ApiClient(server)
    token = api.token(tenant="t1")
    client = RealtimeClient(api.base, token, reconnect=False)
    await client.connect()
    view = await client.subscribe("services", sub_id="all")
    first = (await api.post("/api/v1/services", {"name": "first", "status": "up"}, token=token)).body
    await view.wait_for(lambda v: first["id"] in v.docs)
    await client.close()
    for n in range(10):
        await api.post("/api/v1/services", {"name": f"later{n}", "status": "up"}, token=token)
    again = RealtimeClient(api.base, token, reconnect=False)
    again.queries["all"] = view
    view.client = again
    await again.connect()
    await view.wait_for(lambda v: v.snapshots == 2)
    assert view.last_snapshot is not None and view.last_snapshot["recovered"] is False
    assert len(view.docs) == 11
    await again.close()


@pytest.mark.slow
async def test_tenant_isolation_under_thousands_of_random_writes(server: Server, mongo_uri: str) -> None:
    api = ApiClient(server)
    tenants = ["t1", "t2", "t3"]
    rng = random.Random(3)
    filters = [{}, {"status": "down"}, {"tenant": "t2"}, {"response_time_ms": {"$gt": 100}}, {"$or": [{"tenant": "t3"}, {"status": "up"}]}]
    subscribers: list[tuple[RealtimeClient, FrameChecker, str | None, dict[str, Any]]] = []
    for tenant in tenants:
        for role in ("viewer", "editor"):
            checker = FrameChecker()
            client = RealtimeClient(api.base, api.token(user=f"{tenant}-{role}", tenant=tenant, roles=(role,)), on_frame=checker)
            subscribers.append((client, checker, tenant, rng.choice(filters)))
    admin_checker = FrameChecker()
    admin = RealtimeClient(api.base, api.token(user="root", tenant="t1", roles=("admin",)), on_frame=admin_checker)
    subscribers.append((admin, admin_checker, None, {}))
    for client, _, _, spec in subscribers:
        await client.connect()
        await client.subscribe("services", spec, sub_id="q")
    await random_writes(server, 2000, tenants, rng)
    fields = server.context.resources.get("services").filterable  # type: ignore[union-attr]
    with pymongo.MongoClient(mongo_uri) as sync:
        collection = sync[server.settings.mongo_db]["services"]
        owner = {str(doc["_id"]): doc["tenant"] for doc in collection.find({}, {"tenant": 1})}
        for client, checker, tenant, spec in subscribers:
            want = expected(collection, tenant, spec, fields)
            await eventually(lambda c=client, w=want: {i: d["version"] for i, d in c.queries["q"].docs.items()} == w)
            assert not checker.violations, checker.violations[:5]
            if tenant is None:
                continue
            for frame in checker.frames:
                docs = frame.get("docs", []) + ([frame["doc"]] if "doc" in frame else [])
                assert all(doc["tenant"] == tenant for doc in docs), frame
                if frame["type"] == "change":
                    assert owner.get(frame["id"], tenant) == tenant or frame["op"] == "removed" and frame["id"] not in owner
    assert len(admin_checker.frames) > len(subscribers[0][1].frames)
    for client, *_ in subscribers:
        await client.close()


@pytest.mark.slow
async def test_slow_consumer_is_closed_and_does_not_delay_others(spawn_server) -> None:
    server = await spawn_server(outbox_max_frames=200)
    api = ApiClient(server)
    assert server.realtime is not None
    fast = RealtimeClient(api.base, api.token(tenant="t1"))
    await fast.connect()
    fast_view = await fast.subscribe("services", sub_id="all")
    slow = RealtimeClient(api.base, api.token(user="slow", tenant="t1"), reconnect=False)
    await slow.connect()
    await slow.subscribe("services", sub_id="all")
    async def stall(frame: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    slow._handle = stall  # type: ignore[method-assign]  # the next frame stops its reading: buffers fill up
    big = "x" * 1900
    collection = server.context.db.collection("services")  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    started = loop.time()
    for batch in range(10):
        await collection.insert_many([{"name": f"n{batch}-{i}", "status": "up", "details": big, "tenant": "t1", "version": 1}
                                      for i in range(500)])
    await fast_view.wait_for(lambda v: len(v.docs) == 5000, timeout=30)
    fast_elapsed = loop.time() - started
    await eventually(lambda: server.realtime.counters.slow_consumer_closes == 1)  # type: ignore[union-attr]
    assert fast_elapsed < 20
    await eventually(lambda: len(server.realtime.connections) == 1)  # type: ignore[union-attr]
    await fast.close()
    await slow.close()


async def test_throttle_sends_at_most_one_update_per_interval_ending_on_the_latest(api: ApiClient) -> None:
    token = api.token(tenant="t1")
    client = RealtimeClient(api.base, token)
    await client.connect()
    view = await client.subscribe("services", throttle_ms=400)
    doc = (await api.post("/api/v1/services", {"name": "busy", "status": "up", "response_time_ms": 0}, token=token)).body
    await view.wait_for(lambda v: doc["id"] in v.docs)
    for n in range(1, 11):
        await api.patch(f"/api/v1/services/{doc['id']}", {"response_time_ms": n}, token=token)
    await view.wait_for(lambda v: v.docs[doc["id"]]["response_time_ms"] == 10, timeout=5)
    changes = [c for c in view.changes if c["op"] == "changed"]
    assert 1 <= len(changes) <= 3, [c["doc"]["response_time_ms"] for c in changes]
    await client.close()


async def test_collection_drop_resyncs_subscribers(server: Server) -> None:
    api = ApiClient(server)
    token = api.token(tenant="t1")
    client = RealtimeClient(api.base, token)
    await client.connect()
    view = await client.subscribe("services")
    await api.post("/api/v1/services", {"name": "doomed", "status": "up"}, token=token)
    await view.wait_for(lambda v: len(v.docs) == 1)
    await server.context.db.collection("services").drop()  # type: ignore[union-attr]
    await view.wait_for(lambda v: v.snapshots == 2 and not v.docs)
    assert view.last_snapshot is not None and view.last_snapshot["recovered"] is False
    created = (await api.post("/api/v1/services", {"name": "reborn", "status": "up"}, token=token)).body
    await view.wait_for(lambda v: created["id"] in v.docs)
    await api.delete(f"/api/v1/services/{created['id']}", token=token)
    await view.wait_for(lambda v: created["id"] not in v.docs)
    await client.close()


@pytest.mark.slow
async def test_standalone_mongod_falls_back_to_polling(spawn_server, tmp_path) -> None:
    mongod = EmbeddedMongo(find_mongod(), tmp_path / "standalone", replica_set=None)
    mongod.start()
    try:
        server = await spawn_server(mongo_uri=mongod.uri)
        assert server.realtime is not None and type(server.realtime.feed).__name__ == "PollingFeed"
        api = ApiClient(server)
        token = api.token(tenant="t1")
        client = RealtimeClient(api.base, token)
        await client.connect()
        view = await client.subscribe("services", {"status": "down"})
        doc = (await api.post("/api/v1/services", {"name": "p", "status": "down"}, token=token)).body
        await view.wait_for(lambda v: doc["id"] in v.docs, timeout=5)
        await api.patch(f"/api/v1/services/{doc['id']}", {"status": "up"}, token=token)
        await view.wait_for(lambda v: doc["id"] not in v.docs, timeout=5)
        assert [c["op"] for c in view.changes] == ["added", "removed"]
        assert (await api.get("/api/v1/ready")).status == 200
        await client.close()
        await server.stop()
    finally:
        mongod.stop()
