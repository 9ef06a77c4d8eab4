"""The fallback feed for deployments without change streams (a standalone mongod).

It reads the served collections every interval and diffs them with what it saw last, turning
differences into the same events a change stream would give. It keeps every document in
memory and sees only the net change between two polls, so it suits small deployments and
development; a replica set, even of one node, is the real thing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from realtime_app.data import db as dbmod
from realtime_app.data.filters import Filter
from realtime_app.data.principal import Principal
from realtime_app.data.resources import Resource
from realtime_app.data.store import to_api
from realtime_app.errors import BadFilter
from realtime_app.live import positions
from realtime_app.live.changefeed import ChangeEvent, EventSink, Feed, ResyncSink

log = logging.getLogger(__name__)


class PollingFeed(Feed):
    def __init__(self, database: dbmod.Database, collections: list[str], on_event: EventSink, on_resync: ResyncSink,
                 replay_capacity: int, interval_s: float = dbmod.POLL_INTERVAL_S):
        super().__init__(database, collections, on_event, on_resync, replay_capacity)
        self.interval_s = interval_s
        self.docs: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in collections}

    async def _run(self) -> None:
        first = True
        while True:
            try:
                await self._poll(publish=not first)
                if first:
                    self.horizon = self.head = self._next_position()
                    first = False
                self.running, self.last_error = True, None
                self._started.set()
            except dbmod.PyMongoError as exc:
                self._mark_down(exc)
            await asyncio.sleep(self.interval_s)

    def _next_position(self) -> int:
        return max(self.head + 1, positions.encode(int(time.time()), 0))

    async def _poll(self, publish: bool) -> None:
        for name in self.collections:
            raws = await self.database.collection(name).find({}).to_list(length=None)
            current = {str(raw["_id"]): to_api(raw) for raw in raws}
            previous = self.docs[name]
            if publish:
                for doc_id, doc in current.items():
                    before = previous.get(doc_id)
                    if before != doc:
                        self._emit(name, doc_id, "insert" if before is None else "update", before, doc)
                for doc_id in previous.keys() - current.keys():
                    self._emit(name, doc_id, "delete", previous[doc_id], None)
            self.docs[name] = current

    def _emit(self, collection: str, doc_id: str, cause: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        self._publish(ChangeEvent(self._next_position(), collection, doc_id, cause, before, after, time.time()))

    async def snapshot(self, principal: Principal, resource: Resource, query: Filter, max_docs: int) -> tuple[list[dict[str, Any]], int]:
        """Served from the feed's own copy, so it meets the events exactly at `head`."""
        docs = [doc for _, doc in sorted(self.docs[resource.name].items())
                if principal.may_see_tenant(doc.get("tenant")) and query.matches(doc)]
        if len(docs) > max_docs:
            raise BadFilter(f"the query matches more than {max_docs} documents; narrow the filter")
        return docs, self.head
