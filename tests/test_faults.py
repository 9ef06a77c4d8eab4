"""Database faults: mongod killed and restarted, a primary stepping down.

Each test runs its own mongod so the shared one stays untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from realtime_app.app import Server
from realtime_app.client import RealtimeClient
from realtime_app.data.embedded_mongo import EmbeddedMongo, find_mongod
from tests.helpers import ApiClient, eventually
from tests.test_realtime_consistency import FrameChecker

pytestmark = pytest.mark.slow


@pytest.fixture
def own_mongod(tmp_path: Path) -> Iterator[EmbeddedMongo]:
    """Tests take it before `spawn_server`, so that their servers stop while it still runs (a
    server stopping on a dead mongod waits out the driver's timeouts)."""
    mongod = EmbeddedMongo(find_mongod(), tmp_path / "faulty")
    mongod.start()
    yield mongod
    mongod.stop()


def view_versions(client: RealtimeClient, sub: str) -> dict[str, int]:
    return {doc_id: doc["version"] for doc_id, doc in client.queries[sub].docs.items()}


def db_versions(uri: str, db: str, tenant: str) -> dict[str, int]:
    with pymongo.MongoClient(uri) as client:
        return {str(d["_id"]): d["version"] for d in client[db]["services"].find({"tenant": tenant})}


async def watched_server(spawn_server, mongod: EmbeddedMongo) -> tuple[Server, ApiClient, str, RealtimeClient, FrameChecker]:
    """A server on `mongod` and a client subscribed to all of tenant t1's services."""
    server = await spawn_server(mongo_uri=mongod.uri)
    api = ApiClient(server)
    token = api.token(tenant="t1")
    checker = FrameChecker()
    client = RealtimeClient(api.base, token, on_frame=checker)
    await client.connect()
    await client.subscribe("services", sub_id="all")
    return server, api, token, client, checker


async def test_mongod_killed_and_restarted(own_mongod: EmbeddedMongo, spawn_server) -> None:
    server, api, token, client, checker = await watched_server(spawn_server, own_mongod)
    acknowledged = [(await api.post("/api/v1/services", {"name": f"before{n}", "status": "up"}, token=token)).body["id"]
                    for n in range(20)]

    assert own_mongod.process is not None
    own_mongod.process.kill()
    own_mongod.process.wait()
    if own_mongod.process.stderr:
        own_mongod.process.stderr.close()
    own_mongod.process = None

    ready = await api.get("/api/v1/ready")
    assert ready.status == 503 and "MongoDB does not answer" in ready.body["reasons"]
    # The driver's words (addresses, ports, error names) are for admins and the log only.
    assert not [reason for reason in ready.body["reasons"] if "(" in reason or str(own_mongod.port) in reason], ready.body
    detailed = await api.get("/api/v1/ready", token=api.token("ops", "t1", ("admin",)))
    assert any(reason.startswith("MongoDB does not answer (") for reason in detailed.body["reasons"]), detailed.body
    started = asyncio.get_running_loop().time()
    listing = await api.get("/api/v1/services", token=token)
    assert listing.status == 503 and listing.problem["detail"]
    assert listing.headers.get("Retry-After")
    assert asyncio.get_running_loop().time() - started < 10, "REST answers instead of hanging"
    assert await client.ping() < 2, "sessions stay open while the database is away"

    restarted = EmbeddedMongo(own_mongod.binary, own_mongod.data_dir, port=own_mongod.port)
    await asyncio.get_running_loop().run_in_executor(None, restarted.start)
    own_mongod.process = restarted.process
    await eventually(lambda: server.realtime.feed.running and server.sessions.running, timeout=30)  # type: ignore[union-attr]
    assert (await api.get("/api/v1/ready")).status == 200
    after = (await api.post("/api/v1/services", {"name": "after", "status": "up"}, token=token)).body["id"]

    want = db_versions(own_mongod.uri, server.settings.mongo_db, "t1")
    assert set(acknowledged) | {after} <= set(want)
    await eventually(lambda: view_versions(client, "all") == want, timeout=30)
    assert not checker.violations, checker.violations[:5]
    await client.close()


async def test_primary_steps_down_during_writes(own_mongod: EmbeddedMongo, spawn_server) -> None:
    server, api, token, client, checker = await watched_server(spawn_server, own_mongod)
    statuses = []
    for n in range(40):
        if n == 10:
            with pymongo.MongoClient(own_mongod.uri) as admin:
                admin.admin.command("replSetStepDown", 2, secondaryCatchUpPeriodSecs=1, force=True)
        reply = await api.post("/api/v1/services", {"name": f"w{n}", "status": "up"}, token=token)
        statuses.append(reply.status)
        assert reply.status in (201, 503), reply.body
        if reply.status == 503:
            await asyncio.sleep(0.3)
    assert statuses.count(201) >= 20
    await eventually(lambda: server.realtime.feed.running, timeout=30)  # type: ignore[union-attr]
    want = db_versions(own_mongod.uri, server.settings.mongo_db, "t1")
    await eventually(lambda: view_versions(client, "all") == want, timeout=30)
    assert not checker.violations, checker.violations[:5]
    await client.close()
