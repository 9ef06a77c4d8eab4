"""A connection's outbox: bounded, conflating, flushed in batches.

Change frames are keyed by (subscription, document): a newer change to the same document
replaces the queued one and moves to the back, so positions stay in order and a slow client
gets the latest state, not every intermediate one. Frames are built only when flushed, and
everything queued in one loop iteration leaves as one SockJS frame (up to `MAX_FRAME_CHARS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime_app.changefeed import ChangeEvent

log = logging.getLogger(__name__)

# While the transport still holds this many bytes unsent, keep frames here, where they conflate.
TRANSPORT_HIGH_WATER_BYTES = 256 * 1024
# Messages queued together leave as one SockJS frame up to about this size, then start another:
# clients limit the size of one websocket message (Tornado's to 10 MiB by default).
MAX_FRAME_CHARS = 64 * 1024
# How often a blocked outbox looks again at the transport's backlog.
BLOCKED_RECHECK_S = 0.02


@dataclass(slots=True)
class PendingChange:
    """A change not yet written: whether the client had the document, and whether it has it now."""

    sub_head: str
    event: ChangeEvent
    had_before: bool
    present: bool
    position: int

    @property
    def op(self) -> str | None:
        if self.had_before and self.present:
            return "changed"
        if self.present:
            return "added"
        return "removed" if self.had_before else None


class FlushBatch:
    """The outboxes due to flush this loop turn, flushed by one callback: a change that reaches
    thousands of connections would otherwise schedule thousands of callbacks."""

    def __init__(self) -> None:
        self._due: list[Outbox] = []
        self.writing_at_once = False
        """Set while the last change of a loop turn is routed: outboxes then flush as it reaches
        them, so the first sockets need not wait until every subscription has been offered it."""

    @contextlib.contextmanager
    def at_once(self) -> Iterator[None]:
        self.writing_at_once = True
        try:
            yield
        finally:
            self.writing_at_once = False

    def add(self, outbox: Outbox) -> None:
        if not self._due:
            asyncio.get_running_loop().call_soon(self._flush_due)
        self._due.append(outbox)

    def _flush_due(self) -> None:
        due, self._due = self._due, []
        for outbox in due:
            try:
                outbox.flush()
            except Exception:  # one connection's failure must not hold back the others' frames
                log.exception("flushing an outbox failed")


class Outbox:
    def __init__(self, write: Callable[[list[str]], None], backlog: Callable[[], int], on_overflow: Callable[[], None],
                 max_frames: int, stats: Any = None, batch: FlushBatch | None = None):
        self._write = write
        self._backlog = backlog
        self._on_overflow = on_overflow
        self.max_frames = max_frames
        self._queue: OrderedDict[Any, PendingChange | str] = OrderedDict()
        self._ids = itertools.count()
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._batch = batch
        self._in_batch = False
        self.closed = False
        self._stats = stats

    def __len__(self) -> int:
        return len(self._queue)

    def put_frame(self, frame_text: str) -> None:
        """Queue a complete frame (JSON text) that never conflates."""
        self._enqueue(next(self._ids), encode_basestring_ascii(frame_text)[1:-1])

    def put_change(self, key: tuple[str, str], change: PendingChange) -> None:
        queued = self._queue.pop(key, None)
        if isinstance(queued, PendingChange):
            change.had_before = queued.had_before
            if self._stats is not None:
                self._stats.conflated += 1
            if change.op is None:  # added then removed before the client saw either
                return
        self._enqueue(key, change)

    def _enqueue(self, key: Any, item: PendingChange | str) -> None:
        if self.closed:
            return
        self._queue[key] = item
        if len(self._queue) > self.max_frames and self._backlog() > TRANSPORT_HIGH_WATER_BYTES:
            # Too many waiting behind a busy socket. (A burst queued within one loop turn may
            # exceed the count while the socket keeps up; it leaves at the next flush.)
            self._overflow()
            return
        self._schedule(0)

    def _overflow(self) -> None:
        self.closed = True
        self._queue.clear()
        self._on_overflow()

    def _schedule(self, delay: float) -> None:
        if not delay and self._batch is not None and self._batch.writing_at_once:
            try:
                self.flush()
            except Exception:  # as in FlushBatch: one connection's failure must not stop the change's routing
                log.exception("flushing an outbox failed")
            return
        if self._in_batch:
            return
        if not delay and self._batch is not None and self._flush_handle is None:
            self._in_batch = True
            self._batch.add(self)
            return
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(delay, self.flush) if delay else loop.call_soon(self.flush)

    def flush(self, force: bool = False) -> None:
        """Write what is queued as one batch, unless the transport is still busy (or `force`)."""
        self._in_batch = False
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = None
        if self.closed or not self._queue:
            return
        if not force and self._backlog() > TRANSPORT_HIGH_WATER_BYTES:
            if len(self._queue) > self.max_frames:
                self._overflow()
            else:
                self._schedule(BLOCKED_RECHECK_S)
            return
        queued = list(self._queue.values())
        self._queue.clear()  # before writing: a write that fails must not leave sent frames queued
        messages: list[str] = []
        size = 0
        oldest_change: float | None = None  # wall time of the batch's first change: its delivery latency is the batch's worst
        for item in queued:
            if isinstance(item, str):
                message = '"' + item + '"'
            else:
                op = item.op
                if op is None:
                    continue
                if oldest_change is None:
                    oldest_change = item.event.wall_time
                message = item.event.message(item.sub_head, op, item.position)
            if size + len(message) > MAX_FRAME_CHARS and messages:
                self._write(messages)
                messages, size = [], 0
            messages.append(message)
            size += len(message)
        if messages:
            self._write(messages)
        if oldest_change is not None and self._stats is not None:
            self._stats.delivery_latency.observe(max(time.time() - oldest_change, 0.0))

    def discard(self, predicate: Callable[[Any], bool]) -> None:
        """Drop queued changes of subscriptions that went away."""
        for key in [k for k, v in self._queue.items() if isinstance(v, PendingChange) and predicate(k)]:
            del self._queue[key]

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        # The callbacks are the connection's methods, and the connection holds this outbox: let
        # go of them, so a closed connection is freed at once rather than by the cyclic
        # collector, which (tuned to run rarely) let closed connections pile up under churn.
        self._write, self._backlog, self._on_overflow = _write_nothing, _no_backlog, _do_nothing


def _write_nothing(messages: list[str]) -> None:
    """What a closed outbox writes with."""


def _no_backlog() -> int:
    return 0


def _do_nothing() -> None:
    pass
