"""The delivery contract, checked against a model of the database's history.

Random inserts, updates and deletes go straight into MongoDB, each one's commit position taken
from its session's operation time, so the test knows every state the collection went through.
Clients over the websocket transport read SockJS frames, stall now and then (a receive buffer
of a few KiB, so the server's outbox backs up, conflates and splits batches into frames), and
drop their connection and resume with `since`. After every frame, each of a client's
subscriptions must hold exactly what its query matched at the newest position the subscription
has reached: never a document older than one committed before a change it already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from bson import ObjectId
from motor.motor_asyncio import AsyncIOMotorClient

from realtime_app.app import Server
from realtime_app.live import positions
from realtime_app.testing.rawsocket import RawSocket

pytestmark = pytest.mark.slow

DOCUMENTS = 12
WRITES = 500
CLIENTS = 6
STATUSES = ("up", "down", "degraded")
# Subscriptions every client holds: the whole collection, and a filter that documents enter and leave.
QUERIES = {"all": None, "down": {"status": "down"}}


@dataclass
class History:
    """Every committed state of every document: position -> (id, document or None once deleted)."""

    commits: list[tuple[int, str, dict[str, Any] | None]] = field(default_factory=list)

    def view_at(self, position: int, query: dict[str, Any] | None) -> dict[str, int]:
        """The query's result at ``position``: document id -> version."""
        state: dict[str, dict[str, Any] | None] = {}
        for committed_at, doc_id, doc in self.commits:
            if committed_at > position:
                break
            state[doc_id] = doc
        return {doc_id: doc["version"] for doc_id, doc in state.items()
                if doc is not None and all(doc.get(name) == value for name, value in (query or {}).items())}


@dataclass
class Subscriber:
    """One client's views, checked after every frame; it reconnects and resumes when dropped."""

    number: int
    port: int
    token: str
    history: History
    rng: random.Random
    views: dict[str, dict[str, int]] = field(default_factory=lambda: {name: {} for name in QUERIES})
    reached: dict[str, int] = field(default_factory=dict)
    checkpoints: list[tuple[dict[str, int], dict[str, dict[str, int]]]] = field(default_factory=list)
    """After each frame: the position each subscription reached, and its view there."""
    resumes: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    async def run(self, writing: asyncio.Event) -> None:
        while True:
            await self._session(writing)
            if not writing.is_set() and self.settled():
                return
            self.resumes += 1

    async def _session(self, writing: asyncio.Event) -> None:
        sock = await RawSocket.open(self.port, receive_buffer=4096)
        sock.send({"type": "auth", "token": self.token})
        for name, query in QUERIES.items():
            frame: dict[str, Any] = {"type": "subscribe", "id": name, "collection": "services"}
            if query:
                frame["filter"] = query
            if name in self.reached:
                frame["since"] = positions.to_wire(self.reached[name])
            sock.send(frame)
        drop_after = self.rng.uniform(0.5, 3.0)
        started = asyncio.get_running_loop().time()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while writing.is_set() or not self.settled():
                if self.rng.random() < 0.05:
                    await asyncio.sleep(self.rng.uniform(0.1, 0.6))  # a stall: the server's outbox fills behind it
                messages = await asyncio.wait_for(sock.messages(), 15)
                if any(message["type"] == "_closed" for message in messages):
                    break
                self.apply(messages)
                if writing.is_set() and asyncio.get_running_loop().time() - started > drop_after:
                    break  # a dropped connection: the next session resumes
        await sock.close(abort=True)

    def apply(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            sub, kind = message.get("sub"), message["type"]
            if kind == "snapshot":
                self.views[sub] = {doc["id"]: doc["version"] for doc in message["docs"]}
            elif kind == "change":
                if message["op"] == "removed":
                    self.views[sub].pop(message["id"], None)
                else:
                    self.views[sub][message["id"]] = message["doc"]["version"]
            elif kind == "error":
                self.errors.append(message)
            if "position" in message and sub in QUERIES:
                position = positions.from_wire(message["position"])
                assert position is not None
                self.reached[sub] = max(self.reached.get(sub, 0), position)
        self.checkpoints.append((dict(self.reached), {name: dict(view) for name, view in self.views.items()}))

    def violations(self) -> list[str]:
        """Frames after which a view differed from its query's result at the position reached.
        (Judged once the writes are over: a frame can arrive before its write has returned.)"""
        found = []
        for reached, views in self.checkpoints:
            for name, position in reached.items():
                expected = self.history.view_at(position, QUERIES[name])
                if views[name] != expected:
                    found.append(f"client {self.number}, {name} at {position:x}: holds {views[name]}, the database held {expected}")
        return found

    def settled(self) -> bool:
        """Whether every view equals the final state of the database."""
        return bool(self.history.commits) and all(
            name in self.reached and self.views[name] == self.history.view_at(self.history.commits[-1][0], query)
            for name, query in QUERIES.items())


async def write_randomly(server: Server, mongo_uri: str, history: History, rng: random.Random) -> None:
    """Inserts, updates and deletes of a few documents, each recorded at its commit position."""
    client: AsyncIOMotorClient = AsyncIOMotorClient(mongo_uri, tz_aware=True)
    collection = client[server.settings.mongo_db]["services"]
    ids = [str(ObjectId()) for _ in range(DOCUMENTS)]
    current: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
    try:
        async with await client.start_session() as session:
            for number in range(WRITES):
                doc_id = rng.choice(ids)
                before = current[doc_id]
                now = datetime.datetime.now(datetime.UTC)
                if before is not None and rng.random() < 0.1:
                    await collection.delete_one({"_id": ObjectId(doc_id)}, session=session)
                    after = None
                else:
                    after = {"name": f"service {doc_id[-4:]}", "status": rng.choice(STATUSES), "tenant": "t1",
                             "details": "x" * rng.randrange(2000, 12000), "created_at": now, "updated_at": now,
                             "version": (before["version"] + 1) if before is not None else 1}
                    await collection.replace_one({"_id": ObjectId(doc_id)}, after, upsert=True, session=session)
                current[doc_id] = after
                assert session.operation_time is not None
                history.commits.append((positions.of_timestamp(session.operation_time), doc_id,
                                        {"version": after["version"], "status": after["status"]} if after else None))
                if number % 25 == 0:
                    await asyncio.sleep(rng.uniform(0.05, 0.3))
    finally:
        client.close()


@pytest.mark.parametrize("seed", [1, 2])
async def test_every_frame_leaves_every_view_as_the_database_was(server: Server, mongo_uri: str, seed: int) -> None:
    rng = random.Random(seed)
    assert server.context is not None and server.realtime is not None
    history = History()
    token = server.context.tokens.issue("watcher", "t1", ["viewer"])
    writing = asyncio.Event()
    writing.set()
    subscribers = [Subscriber(number, server.port, token, history, random.Random(rng.random())) for number in range(CLIENTS)]
    tasks = [asyncio.ensure_future(subscriber.run(writing)) for subscriber in subscribers]
    await asyncio.sleep(0.3)
    try:
        await write_randomly(server, mongo_uri, history, rng)
    finally:
        writing.clear()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    violations = [violation for subscriber in subscribers for violation in subscriber.violations()]
    assert not violations, f"{len(violations)} frames left a view no moment of the database had, first: {violations[:3]}"
    assert not any(subscriber.errors for subscriber in subscribers), [subscriber.errors for subscriber in subscribers]
    assert all(subscriber.settled() for subscriber in subscribers)
    conflated = server.realtime.counters.conflated
    print(f"\n{WRITES} writes, {sum(len(s.checkpoints) for s in subscribers)} frames checked, "
          f"{sum(s.resumes for s in subscribers)} resumes, {conflated} changes conflated")
    assert conflated > 0, "no client fell behind far enough to exercise conflation"
