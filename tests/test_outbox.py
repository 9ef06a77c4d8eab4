"""The outbox on its own: batching, splitting where the delivery contract allows, the
slow-consumer rules (entries and bytes), failures kept local."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import time
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_app.live import positions, wire
from realtime_app.live.changefeed import ChangeEvent
from realtime_app.live.outbox import MAX_FRAME_CHARS, TRANSPORT_HIGH_WATER_BYTES, FlushBatch, Outbox, PendingChange


class Socket:
    """Stands in for a connection: records writes, reports a backlog, can fail."""

    def __init__(self) -> None:
        self.writes: list[list[str]] = []
        self.backlog = 0
        self.overflowed = False
        self.fail = False

    def write(self, messages: list[str]) -> None:
        if self.fail:
            raise OSError("socket gone")
        self.writes.append(messages)

    def overflow(self) -> None:
        self.overflowed = True

    def outbox(self, max_frames: int = 10, batch: FlushBatch | None = None, max_bytes: int = 1 << 30) -> Outbox:
        return Outbox(self.write, lambda: self.backlog, self.overflow, max_frames, batch=batch, max_bytes=max_bytes)

    def frames(self) -> list[list[dict]]:
        return [[json.loads(json.loads(message)) for message in messages] for messages in self.writes]

    def doc_ids(self) -> list[str]:
        return [message["id"] for frame in self.frames() for message in frame if message.get("type") == "change"]


POSITIONS = itertools.count(1)


def put(outbox: Outbox, doc_id: str, details: str = "", sub: str = "s") -> int:
    """Queue the next change (positions grow, as the change feed's do) of a document; its position."""
    position = next(POSITIONS)
    event = ChangeEvent(position, "services", doc_id, "update", None, {"id": doc_id, "details": details}, time.time())
    outbox.put_change((sub, doc_id), PendingChange(wire.change_head(sub), event, True, True, position))
    return position


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_burst_within_one_turn_leaves_as_one_write_even_past_the_limit() -> None:
    socket = Socket()
    outbox = socket.outbox(max_frames=10, batch=FlushBatch())
    for n in range(25):
        put(outbox, f"d{n}")
    await next_turn()
    assert not socket.overflowed
    assert len(socket.writes) == 1 and socket.doc_ids() == [f"d{n}" for n in range(25)]


async def test_too_many_waiting_behind_a_busy_socket_is_a_slow_consumer() -> None:
    socket = Socket()
    socket.backlog = TRANSPORT_HIGH_WATER_BYTES + 1
    outbox = socket.outbox(max_frames=10, batch=FlushBatch())
    for n in range(10):
        put(outbox, f"d{n}")
    await next_turn()
    assert not socket.overflowed and not socket.writes  # held back: the socket is busy
    put(outbox, "d10")
    assert socket.overflowed and outbox.closed and not len(outbox)


async def test_a_large_batch_is_split_into_frames_in_order() -> None:
    socket = Socket()
    outbox = socket.outbox(max_frames=100, batch=FlushBatch())
    for n in range(10):
        put(outbox, f"d{n}", details="x" * (MAX_FRAME_CHARS // 4))
    await next_turn()
    assert len(socket.writes) > 1 and all(sum(map(len, messages)) <= MAX_FRAME_CHARS for messages in socket.writes)
    assert socket.doc_ids() == [f"d{n}" for n in range(10)]


async def test_writing_at_once_keeps_one_failure_local(caplog: pytest.LogCaptureFixture) -> None:
    batch = FlushBatch()
    broken, healthy = Socket(), Socket()
    broken.fail = True
    outboxes = [broken.outbox(batch=batch), healthy.outbox(batch=batch)]
    with caplog.at_level(logging.ERROR, logger="realtime_app.live.outbox"), batch.at_once():
        for outbox in outboxes:
            put(outbox, "d1")  # written as it is put, without waiting for the loop to turn
    assert healthy.doc_ids() == ["d1"]
    assert [record.getMessage() for record in caplog.records] == ["flushing an outbox failed"]


def test_a_closed_outbox_lets_go_of_its_connection() -> None:
    """Freed by reference counting at once, not left for the (rarely run) cyclic collector."""

    class Connection:
        def __init__(self) -> None:
            self.outbox = Outbox(self.write, self.backlog, self.overflow, 10)

        def write(self, messages: list[str]) -> None: ...

        def backlog(self) -> int:
            return 0

        def overflow(self) -> None: ...

    gc.disable()
    try:
        connection = Connection()
        gone = weakref.ref(connection)
        connection.outbox.close()
        del connection
        assert gone() is None
    finally:
        gc.enable()


async def test_a_batch_is_not_cut_where_a_conflated_change_would_be_missing() -> None:
    """B, C, D queued, then A again: A now stands for its change before B. A cut after B or C
    would leave the client with B and C but without A's earlier change."""
    socket = Socket()
    outbox = socket.outbox(max_frames=100)
    socket.backlog = TRANSPORT_HIGH_WATER_BYTES + 1  # busy: everything waits, and conflates
    third = "x" * (MAX_FRAME_CHARS // 3)
    for doc_id in ("A", "B", "C", "D", "A"):
        put(outbox, doc_id, third)
    socket.backlog = 0
    outbox.flush()
    assert [[m["id"] for m in frame] for frame in socket.frames()] == [["B", "C", "D", "A"]]


async def test_a_batch_is_cut_where_every_view_is_consistent() -> None:
    socket = Socket()
    outbox = socket.outbox(max_frames=100)
    socket.backlog = TRANSPORT_HIGH_WATER_BYTES + 1
    third = "x" * (MAX_FRAME_CHARS // 3)
    for doc_id in ("A", "B", "A", "C", "D", "E"):
        put(outbox, doc_id, third)
    socket.backlog = 0
    outbox.flush()
    frames = [[m["id"] for m in frame] for frame in socket.frames()]
    assert frames[0] == ["B", "A"] and sum(frames, []) == ["B", "A", "C", "D", "E"] and len(frames) > 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["s1", "s2"]), st.sampled_from("ABCDE"), st.integers(0, 3)), min_size=1, max_size=60))
def test_every_frame_leaves_every_view_as_the_database_was(changes: list[tuple[str, str, int]]) -> None:
    """The delivery contract on random bursts: after each frame, each subscription holds, for
    every document, its last change at or before the newest position that subscription reached."""
    socket = Socket()
    committed: dict[str, list[tuple[int, str]]] = {"s1": [], "s2": []}

    async def queue_then_flush() -> None:
        outbox = socket.outbox(max_frames=1000)
        socket.backlog = TRANSPORT_HIGH_WATER_BYTES + 1
        for sub, doc_id, size in changes:
            position = put(outbox, doc_id, "x" * (size * MAX_FRAME_CHARS // 4), sub)
            committed[sub].append((position, doc_id))
        socket.backlog = 0
        outbox.flush()

    asyncio.run(queue_then_flush())
    held: dict[str, dict[str, int]] = {"s1": {}, "s2": {}}
    reached: dict[str, int] = {}
    for frame in socket.frames():
        for message in frame:
            position = positions.from_wire(message["position"])
            assert position is not None
            held[message["sub"]][message["id"]] = position
            reached[message["sub"]] = max(reached.get(message["sub"], 0), position)
        for sub, newest in reached.items():
            expected = {doc_id: position for position, doc_id in committed[sub] if position <= newest}
            assert held[sub] == expected, (sub, newest)
    assert held == {sub: {doc_id: position for position, doc_id in log} for sub, log in committed.items()}
