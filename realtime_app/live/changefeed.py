"""The change feed: one change stream per process over the served collections.

It decodes each change once into a `ChangeEvent` (API-form images before and after, a
position), keeps a bounded replay buffer for clients that resume, and hands every event to
the hub. After a transient error it resumes from its own token; when MongoDB no longer has the
history it needs, it starts afresh and asks the hub to resync every subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from realtime_app.data import db as dbmod
from realtime_app.data.filters import Filter
from realtime_app.data.principal import Principal
from realtime_app.data.resources import Resource
from realtime_app.data.store import DocumentStore, to_api
from realtime_app.live import positions
from realtime_app.readiness import NotReady

log = logging.getLogger(__name__)

DOCUMENT_OPERATIONS = {"insert", "update", "replace", "delete"}
# The stream's server-side wait per getMore: bounds how stale the saved resume token can be.
MAX_AWAIT_MS = 500
# Changes MongoDB returned together are dispatched in one loop turn, so each subscriber gets them
# in one frame; up to this many, or this long, before the loop serves other work.
TURN_MAX_EVENTS = 256
TURN_BUDGET_S = 0.02


@dataclass(slots=True, eq=False)
class ChangeEvent:
    """One decoded change, shared by every subscription it reaches: plain data, plus what the
    loop turn that delivers it works out once for all of them."""

    position: int
    collection: str
    doc_id: str
    cause: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    wall_time: float
    verdicts: dict[tuple[str, str | None], tuple[bool, bool]] = field(default_factory=dict)
    """(filter, tenant scope) -> visible before and after; filled by the hub's subscriptions."""
    encoded: dict[Any, str] = field(default_factory=dict)
    """Texts of its frames, filled by the wire encoding (realtime_app.live.wire)."""

    def release_caches(self) -> None:
        """Forget verdicts and encoded texts once the loop turn that delivered the event is
        over: the event stays in the replay buffer, and a resume works out what it needs again."""
        self.verdicts.clear()
        self.encoded.clear()

    @property
    def tenants(self) -> set[str]:
        """The tenants of the images; documents without a string tenant are for admins only."""
        found = {image.get("tenant") for image in (self.before, self.after) if image is not None}
        return {tenant for tenant in found if isinstance(tenant, str)}


EventSink = Callable[[ChangeEvent, bool], None]
"""Takes each event and whether it is the last of its loop turn (nothing else to dispatch with it)."""
ResyncSink = Callable[[Iterable[str] | None], None]


class Feed:
    """What every feed shares: the replay buffer, positions, health, and handing events on."""

    def __init__(self, database: dbmod.Database, collections: list[str], on_event: EventSink, on_resync: ResyncSink,
                 replay_capacity: int):
        self.database = database
        self.collections = collections
        self.on_event = on_event
        self.on_resync = on_resync
        self.replay: deque[ChangeEvent] = deque(maxlen=replay_capacity)
        self.horizon = 0  # the replay buffer holds every event after this position
        self.head = 0  # the position of the newest event seen, or of the feed's start
        self.running = False
        self.last_error: str | None = None
        self.events_total = 0
        self.last_event_wall_time: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    async def start(self) -> None:
        """Start following changes; returns once the feed is open (so no later write is missed)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=type(self).__name__)
        await self._started.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.running = False

    async def _run(self) -> None:
        raise NotImplementedError

    async def snapshot(self, principal: Principal, resource: Resource, query: Filter, max_docs: int) -> tuple[list[dict[str, Any]], int]:
        """A live query's current result and the position it reflects."""
        raise NotImplementedError

    def readiness(self) -> NotReady | None:
        if self.running:
            return None
        return NotReady("the change feed is not running", self.last_error or "starting")

    def covers(self, position: int) -> bool:
        """Whether every event after `position` is in the replay buffer."""
        return position >= self.horizon

    def events_after(self, position: int) -> list[ChangeEvent]:
        return [event for event in self.replay if event.position > position]

    def _mark_down(self, exc: BaseException) -> None:
        if self.running:
            log.warning("change feed interrupted: %s", dbmod.describe(exc))
        self.running = False
        self.last_error = dbmod.describe(exc)
        self._started.set()  # start-up does not wait forever on a failing feed

    def _publish(self, event: ChangeEvent, last_in_turn: bool = False) -> None:
        if len(self.replay) == self.replay.maxlen and self.replay:
            self.horizon = self.replay[0].position
        self.replay.append(event)
        self.head = event.position
        self.events_total += 1
        self.last_event_wall_time = event.wall_time
        self.on_event(event, last_in_turn)
        asyncio.get_running_loop().call_soon(event.release_caches)


class ChangeFeed(Feed):
    """Follows one MongoDB change stream over the served collections; owns its resume token."""

    def __init__(self, database: dbmod.Database, collections: list[str], on_event: EventSink, on_resync: ResyncSink,
                 replay_capacity: int, store: DocumentStore, snapshot_max_bytes: int | None = None):
        super().__init__(database, collections, on_event, on_resync, replay_capacity)
        self.store = store
        self.snapshot_max_bytes = snapshot_max_bytes
        self.resume_token: Any = None
        self._same_time: tuple[Any, int] = (None, 0)
        self._start_at: Any = None  # the cluster time to open a token-less stream at

    async def snapshot(self, principal: Principal, resource: Resource, query: Filter, max_docs: int) -> tuple[list[dict[str, Any]], int]:
        docs, at = await self.store.snapshot(principal, resource, query, max_docs, self.snapshot_max_bytes)
        return docs, positions.after_all_at(at)

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._stream_once()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except dbmod.OperationFailure as exc:
                self._mark_down(exc)
                if exc.code in dbmod.HISTORY_LOST_CODES or "resume" in str(exc).lower() and "oplog" in str(exc).lower():
                    log.warning("change stream history lost (%s); restarting from now and resyncing all subscriptions", exc)
                    self.resume_token = None
                    await self._start_afresh()
                    continue
                attempt += 1
            except Exception as exc:  # any driver or network failure: retry with backoff
                self._mark_down(exc)
                attempt += 1
            await asyncio.sleep(dbmod.STREAM_RETRY_DELAYS_S[min(attempt, len(dbmod.STREAM_RETRY_DELAYS_S)) - 1])

    async def _start_afresh(self) -> None:
        try:
            now = await dbmod.cluster_time(self.database)
        except dbmod.PyMongoError as exc:
            self._mark_down(exc)
            return
        self.replay.clear()
        self.horizon = self.head = positions.of_timestamp(now) - 1
        self._start_at = now
        self.on_resync(None)

    async def _stream_once(self) -> None:
        options: dict[str, Any] = {
            "full_document": "whenAvailable",
            "full_document_before_change": "whenAvailable",
            "max_await_time_ms": MAX_AWAIT_MS,
        }
        if self.resume_token is not None:
            options["start_after"] = self.resume_token
        else:
            start = self._start_at or await dbmod.cluster_time(self.database)
            if not self.head:
                self.horizon = self.head = positions.of_timestamp(start) - 1
            options["start_at_operation_time"] = start
        pipeline = [{"$match": {"$or": [
            {"ns.coll": {"$in": self.collections}},
            {"operationType": {"$in": ["dropDatabase", "invalidate"]}},
        ]}}]
        async with self.database.db.watch(pipeline, **options) as stream:
            self.running, self.last_error = True, None
            self._start_at = None
            self._started.set()
            log.info("change stream open on %s", ", ".join(self.collections))
            loop = asyncio.get_running_loop()
            while True:
                change = await stream.try_next()
                handled, turn_ends = 0, loop.time() + TURN_BUDGET_S
                while change is not None:  # this change, then what the same batch brought, within the turn's budget
                    token = stream.resume_token
                    within_budget = handled + 1 < TURN_MAX_EVENTS and loop.time() < turn_ends
                    following = dbmod.received_change(stream) if within_budget else None
                    same_time = self._same_time
                    try:
                        invalidated = await self._handle(change, last_in_turn=following is None)
                    except BaseException:
                        self._same_time = same_time  # the reopened stream brings this change again, at the same position
                        raise
                    self.resume_token = token  # only now: a change that failed is not skipped
                    if invalidated:
                        return
                    handled += 1
                    change = following
                self.resume_token = stream.resume_token

    async def _handle(self, change: dict[str, Any], last_in_turn: bool) -> bool:
        """Process one change; True when the stream was invalidated and must be reopened."""
        operation = change["operationType"]
        if operation in DOCUMENT_OPERATIONS:
            self._publish(await self._decode(change), last_in_turn)
            return False
        collection = change.get("ns", {}).get("coll")
        if operation in ("drop", "rename"):
            log.warning("collection %s: %s; recreating it and resyncing its subscriptions", collection, operation)
            await self.store.prepare([collection])
            self.on_resync([collection])
            return False
        if operation in ("dropDatabase", "invalidate"):
            log.warning("change stream %s; resyncing all subscriptions", operation)
            if operation == "dropDatabase":
                await self.store.prepare()
            self.on_resync(None)
            return operation == "invalidate"
        return False

    async def _decode(self, change: dict[str, Any]) -> ChangeEvent:
        cluster_time = change["clusterTime"]
        previous, index = self._same_time
        index = index + 1 if previous == cluster_time else 0
        self._same_time = (cluster_time, index)
        operation = change["operationType"]
        collection = change["ns"]["coll"]
        key = change["documentKey"]["_id"]
        after = change.get("fullDocument")
        if after is None and operation in ("update", "replace"):
            # No post-image recorded (images off for this collection): the current state will do.
            after = await self.database.collection(collection).find_one({"_id": key})
        before = change.get("fullDocumentBeforeChange")
        wall = change.get("wallTime")
        return ChangeEvent(
            position=positions.of_timestamp(cluster_time, index),
            collection=collection,
            doc_id=str(key),
            cause=operation,
            before=to_api(before) if before else None,
            after=to_api(after) if after else None,
            wall_time=wall.timestamp() if wall is not None else time.time(),
        )
