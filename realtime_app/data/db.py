"""The only module that knows the MongoDB driver (motor).

Everything else receives collection objects and driver errors through here, so moving to
PyMongo's own async API would touch this file alone.
"""

from __future__ import annotations

import logging
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import (  # noqa: F401  (re-exported for the store and the change feed)
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

log = logging.getLogger(__name__)

Collection = AsyncIOMotorCollection
Document = dict[str, Any]
SORT_ORDER = {1: ASCENDING, -1: DESCENDING}
# The error code of creating a collection that exists.
NAMESPACE_EXISTS = 48
# A request should fail fast with 503 when MongoDB is away instead of hanging for 30 s.
SERVER_SELECTION_TIMEOUT_MS = 3000
# Change streams (the change feed's, the sessions'): errors after which resuming from a saved
# token cannot work, the history being gone, and the backoff between attempts to reopen one.
HISTORY_LOST_CODES = {280, 286}
STREAM_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# Without change streams (a standalone mongod) what follows changes reads again this often: the
# delay a change may wait before it is seen.
POLL_INTERVAL_S = 1.0


class Database:
    """A motor client and the one database the app uses."""

    def __init__(self, uri: str, name: str):
        self.client: AsyncIOMotorClient = AsyncIOMotorClient(
            uri, tz_aware=True, serverSelectionTimeoutMS=SERVER_SELECTION_TIMEOUT_MS, appname="realtime-app",
        )
        self.db = self.client[name]
        self.name = name

    def collection(self, name: str) -> Collection:
        return self.db[name]

    async def ping(self) -> None:
        await self.client.admin.command("ping")

    async def supports_change_streams(self) -> bool:
        """Change streams need a replica set or a sharded cluster."""
        hello = await self.client.admin.command("hello")
        return bool(hello.get("setName") or hello.get("msg") == "isdbgrid")

    async def prepare_collection(self, name: str, indexes: list[list[tuple[str, int]]]) -> None:
        """Create the collection if needed, enable pre- and post-images, create indexes."""
        existing = await self.db.list_collection_names(filter={"name": name})
        if not existing:
            try:
                await self.db.create_collection(name)
            except OperationFailure as exc:
                if exc.code != NAMESPACE_EXISTS:
                    raise  # else another process starting at the same time created it first
        try:
            await self.db.command("collMod", name, changeStreamPreAndPostImages={"enabled": True})
        except OperationFailure as exc:
            log.warning("cannot enable pre- and post-images on %s (%s); deletes need them to reach subscribers", name, exc)
        for keys in indexes:
            await self.db[name].create_index([(field, SORT_ORDER[order]) for field, order in keys])

    def close(self) -> None:
        self.client.close()


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, (ConnectionFailure, ServerSelectionTimeoutError))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def make_indexes(sortable: list[str]) -> list[list[tuple[str, int]]]:
    """Indexes for tenant-scoped lists in id order and for each sortable field."""
    indexes: list[list[tuple[str, int]]] = [[("tenant", 1), ("_id", 1)]]
    for field in sortable:
        indexes.append([("tenant", 1), (field, 1), ("_id", 1)])
        indexes.append([(field, 1), ("_id", 1)])
    return indexes


class ResultTooLarge(Exception):
    """A read would return more bytes than its caller allows."""


_RAW = CodecOptions(document_class=RawBSONDocument)


async def snapshot_find(collection: Collection, query: dict[str, Any], limit: int,
                        max_bytes: int | None = None) -> tuple[list[Document], Any]:
    """Documents matching `query` read at one point in history, and that cluster time.

    Every batch is read at the time the server reports as the cursor's atClusterTime, so a
    change stream can tell which of its events the result already reflects (replica sets only).
    Batches arrive undecoded, so a result over `max_bytes` (as stored) raises ResultTooLarge
    before it is all read and decoded.
    """
    budget = _ByteBudget(max_bytes)
    database = collection.database
    reply = await database.command(
        "find", collection.name, filter=query, sort={"_id": 1}, limit=limit, batchSize=limit,
        readConcern={"level": "snapshot"}, codec_options=_RAW,
    )
    cursor = reply["cursor"]
    at = cursor["atClusterTime"]
    try:
        batch = [budget.take(raw) for raw in cursor["firstBatch"]]
        while cursor["id"]:
            reply = await database.command("getMore", cursor["id"], collection=collection.name, codec_options=_RAW)
            cursor = reply["cursor"]
            batch.extend(budget.take(raw) for raw in cursor["nextBatch"])
    except ResultTooLarge:
        if cursor["id"]:
            await database.command("killCursors", collection.name, cursors=[cursor["id"]])
        raise
    return [_decoded(raw, collection) for raw in batch], at


class _ByteBudget:
    def __init__(self, max_bytes: int | None):
        self.left = max_bytes

    def take(self, raw: RawBSONDocument) -> RawBSONDocument:
        if self.left is not None:
            self.left -= len(raw.raw)
            if self.left < 0:
                raise ResultTooLarge()
        return raw


def _decoded(raw: RawBSONDocument, collection: Collection) -> Document:
    return bson.decode(raw.raw, codec_options=collection.codec_options)


async def cluster_time(db: Database) -> Any:
    """MongoDB's current operation time, a Timestamp (None on a standalone server)."""
    reply = await db.db.command("ping")
    return reply.get("operationTime")


def received_change(stream: Any) -> Document | None:
    """The next change of ``stream`` (a motor change stream) if the driver already holds it
    from the batch it last received, else None; never waits for the network.

    motor runs every ``try_next`` in a thread, so each change would arrive in a loop turn of its
    own and every subscriber would get one frame per change. Taking what is already received
    in the same turn lets the hub hand a burst to each connection as one frame. The driver
    has no public call for "is more buffered", so this asks its cursor (a private API, listed
    with the others in tests/test_private_apis.py); should a driver version lack it, changes
    simply come one per turn.
    """
    delegate = getattr(stream, "delegate", None)
    has_next = getattr(getattr(delegate, "_cursor", None), "_has_next", None)
    if delegate is None or not callable(has_next) or not has_next():
        return None
    change: Document | None = delegate.try_next()
    return change
