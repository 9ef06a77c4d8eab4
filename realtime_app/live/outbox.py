"""A connection's outbox: bounded, conflating, flushed in batches.

Change frames are keyed by (subscription, document): a newer change to the same document
replaces the queued one and moves to the back, so a slow client gets the latest state, not
every intermediate one. Changes are encoded (realtime_app.live.wire) only when flushed, and everything
queued in one loop iteration leaves as one SockJS frame.

The delivery contract (docs/PROTOCOL.md): after each SockJS frame, every subscription's view
equals its query's result at the subscription's newest position in that frame. A conflated
change stands for every change of its document since the first one it replaced, so a client
that got a later change of another document without it would hold a view no moment of the
database had. A batch larger than `MAX_FRAME_CHARS` is therefore cut only where the frames
before the cut already leave each view consistent (`consistent_cuts`).
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
from typing import TYPE_CHECKING, Any

from realtime_app.live import wire

if TYPE_CHECKING:
    from realtime_app.live.changefeed import ChangeEvent

log = logging.getLogger(__name__)

# While the transport still holds this many bytes unsent, keep frames here, where they conflate.
TRANSPORT_HIGH_WATER_BYTES = 256 * 1024
# Messages queued together leave as one SockJS frame up to about this size, then start another
# where the contract allows: clients limit the size of one websocket message (Tornado's to
# 10 MiB by default).
MAX_FRAME_CHARS = 64 * 1024
# What a queued change costs against the byte budget besides its document's JSON: the frame's
# other fields and the queue entry.
CHANGE_OVERHEAD_BYTES = 200
# How often a blocked outbox looks again at the transport's backlog.
BLOCKED_RECHECK_S = 0.02


@dataclass(slots=True)
class PendingChange:
    """A change not yet written: whether the client had the document, and whether it has it now.
    ``sub_head`` is its subscription's `wire.change_head`.

    ``first_position`` is the position of the oldest change this entry stands for: its own, or,
    once it replaced queued changes of the same document, the first of those. ``was_added``
    says it stands for an addition the client has not seen: should the document leave again,
    the client still gets `removed`, at the position it left, so no frame can end where the
    client should have held it."""

    sub_head: str
    event: ChangeEvent
    had_before: bool
    present: bool
    position: int
    first_position: int = -1
    was_added: bool = False

    def __post_init__(self) -> None:
        if self.first_position < 0 or self.first_position > self.position:
            self.first_position = self.position

    @property
    def op(self) -> str | None:
        if self.had_before and self.present:
            return "changed"
        if self.present:
            return "added"
        return "removed" if self.had_before or self.was_added else None


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
    """Bounded twice: by entries (``max_frames``) and by bytes (``max_bytes``). Past either while
    the socket is still busy sending earlier frames, the client is too slow: ``on_overflow``
    closes it (4009).

    Without ``conflate`` every change keeps its own entry, in commit order: for transports
    that cannot group messages into frames (the plain WebSocket endpoint), where a conflated
    change would leave the view inconsistent between messages."""

    def __init__(self, write: Callable[[list[str]], None], backlog: Callable[[], int], on_overflow: Callable[[], None],
                 max_frames: int, stats: Any = None, batch: FlushBatch | None = None, max_bytes: int = 1 << 62,
                 conflate: bool = True):
        self.conflate = conflate
        self._write = write
        self._backlog = backlog
        self._on_overflow = on_overflow
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.queued_bytes = 0
        self._queue: OrderedDict[Any, PendingChange | str] = OrderedDict()
        self._ids = itertools.count()
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._batch = batch
        self._in_batch = False
        self.closed = False
        self._stats = stats

    def __len__(self) -> int:
        return len(self._queue)

    def put_frame(self, frame_text: str, key: Any = None) -> None:
        """Queue a complete frame (JSON text). Frames never conflate with changes; a frame put
        with the ``key`` of one still queued replaces it (a newer snapshot of a subscription)."""
        if key is not None:
            self._remove(key)
        self._enqueue(next(self._ids) if key is None else key, wire.frame_message(frame_text))

    def put_change(self, key: tuple[str, str], change: PendingChange) -> None:
        if not self.conflate:
            self._enqueue((*key, next(self._ids)), change)
            return
        queued = self._remove(key)
        if isinstance(queued, PendingChange):
            change.had_before = queued.had_before
            change.first_position = min(change.first_position, queued.first_position)
            change.was_added = queued.was_added or queued.op == "added"
            if self._stats is not None:
                self._stats.conflated += 1
        self._enqueue(key, change)

    def _remove(self, key: Any) -> PendingChange | str | None:
        queued = self._queue.pop(key, None)
        if queued is not None:
            self.queued_bytes -= _size(queued)
        return queued

    def _enqueue(self, key: Any, item: PendingChange | str) -> None:
        if self.closed:
            return
        self._queue[key] = item
        self.queued_bytes += _size(item)
        if (len(self._queue) > self.max_frames or self.queued_bytes > self.max_bytes) and self._backlog() > TRANSPORT_HIGH_WATER_BYTES:
            # Too much waiting behind a busy socket. (A burst queued within one loop turn may
            # exceed the limits while the socket keeps up; it leaves at the next flush.)
            self._overflow()
            return
        self._schedule(0)

    def _overflow(self) -> None:
        self.closed = True
        self._queue.clear()
        self.queued_bytes = 0
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
            if len(self._queue) > self.max_frames or self.queued_bytes > self.max_bytes:
                self._overflow()
            else:
                self._schedule(BLOCKED_RECHECK_S)
            return
        queued = list(self._queue.items())
        self._queue.clear()  # before writing: a write that fails must not leave sent frames queued
        self.queued_bytes = 0
        entries: list[tuple[Any, PendingChange | str]] = []
        messages: list[str] = []
        size = 0
        oldest_change: float | None = None  # wall time of the batch's first change: its delivery latency is the batch's worst
        for key, item in queued:
            if isinstance(item, str):
                message = item
            else:
                op = item.op
                if op is None:
                    continue
                if oldest_change is None:
                    oldest_change = item.event.wall_time
                message = wire.change_message(item.event, item.sub_head, op, item.position)
            entries.append((key, item))
            messages.append(message)
            size += len(message)
        if not messages:
            return
        if size <= MAX_FRAME_CHARS:
            self._write(messages)
        else:
            for frame in _frames(entries, messages):
                self._write(frame)
        if oldest_change is not None and self._stats is not None:
            self._stats.delivery_latency.observe(max(time.time() - oldest_change, 0.0))

    def discard(self, predicate: Callable[[Any], bool]) -> None:
        """Drop queued entries whose key matches: changes (and snapshots) of subscriptions that
        went away or were replaced by a fresh snapshot."""
        for key in [k for k in self._queue if isinstance(k, tuple) and predicate(k)]:
            self._remove(key)

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self.queued_bytes = 0
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        # The callbacks are the connection's methods, and the connection holds this outbox: let
        # go of them, so a closed connection is freed at once rather than by the cyclic
        # collector, which (tuned to run rarely) let closed connections pile up under churn.
        self._write, self._backlog, self._on_overflow = _write_nothing, _no_backlog, _do_nothing


def _frames(entries: list[tuple[Any, PendingChange | str]], messages: list[str]) -> Iterator[list[str]]:
    """A batch over `MAX_FRAME_CHARS` as frames of about that size, cut only where
    `consistent_cuts` allows."""
    cuts = consistent_cuts(entries)
    frame: list[str] = []
    size = 0
    for index, message in enumerate(messages):
        if frame and size + len(message) > MAX_FRAME_CHARS and cuts[index - 1]:
            yield frame
            frame, size = [], 0
        frame.append(message)
        size += len(message)
    yield frame


def consistent_cuts(entries: list[tuple[Any, PendingChange | str]]) -> list[bool]:
    """For each entry, whether a frame may end after it: whether every subscription's changes up
    to there leave its view consistent, i.e. no change still to come for that subscription
    stands for a change at or before the newest position it has reached.

    Keys of changes are (subscription, document); other entries (whole frames) never constrain
    a cut. One pass back to find what each subscription still has to come, one pass forward."""
    count = len(entries)
    later_first: list[float] = [0.0] * count  # oldest first_position among the same subscription's later changes
    seen: dict[Any, float] = {}
    for index in range(count - 1, -1, -1):
        key, item = entries[index]
        if isinstance(item, PendingChange):
            sub = key[0]
            later_first[index] = seen.get(sub, _NEVER)
            seen[sub] = min(seen.get(sub, _NEVER), item.first_position)
    reached: dict[Any, int] = {}
    waiting: set[Any] = set()  # subscriptions whose view is not consistent at the cut
    cuts = [True] * count
    for index, (key, item) in enumerate(entries):
        if isinstance(item, PendingChange):
            sub = key[0]
            reached[sub] = newest = max(reached.get(sub, item.position), item.position)
            if later_first[index] <= newest:
                waiting.add(sub)
            else:
                waiting.discard(sub)
        cuts[index] = not waiting
    return cuts


_NEVER = float("inf")


def _size(item: PendingChange | str) -> int:
    """What an entry counts against the byte budget."""
    if isinstance(item, str):
        return len(item)
    return len(item.sub_head) + wire.document_size(item.event) + CHANGE_OVERHEAD_BYTES


def _write_nothing(messages: list[str]) -> None:
    """What a closed outbox writes with."""


def _no_backlog() -> int:
    return 0


def _do_nothing() -> None:
    pass
