"""The outbox on its own: batching, splitting, the slow-consumer rule, failures kept local."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
import weakref

import pytest

from realtime_app.changefeed import ChangeEvent
from realtime_app.outbox import MAX_FRAME_CHARS, TRANSPORT_HIGH_WATER_BYTES, FlushBatch, Outbox, PendingChange

HEAD = '{\\"type\\":\\"change\\",\\"sub\\":\\"s\\"'


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

    def outbox(self, max_frames: int = 10, batch: FlushBatch | None = None) -> Outbox:
        return Outbox(self.write, lambda: self.backlog, self.overflow, max_frames, batch=batch)

    def doc_ids(self) -> list[str]:
        return [json.loads(json.loads(message))["id"] for messages in self.writes for message in messages]


def put(outbox: Outbox, doc_id: str, details: str = "") -> None:
    event = ChangeEvent(1, "services", doc_id, "insert", None, {"id": doc_id, "details": details}, time.time())
    outbox.put_change(("s", doc_id), PendingChange(HEAD, event, False, True, 1))


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
    with caplog.at_level(logging.ERROR, logger="realtime_app.outbox"), batch.at_once():
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
