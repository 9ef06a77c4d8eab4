"""The live-update service of one process: change feed, hub, and the sockets that subscribe."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from realtime_app import __version__
from realtime_app.config import Settings
from realtime_app.data.filters import Filter, FilterCache
from realtime_app.errors import TooManySubscriptions
from realtime_app.live.changefeed import ChangeEvent, ChangeFeed, Feed
from realtime_app.live.hub import Hub
from realtime_app.live.outbox import FlushBatch
from realtime_app.live.pollfeed import POLL_INTERVAL_S, PollingFeed
from realtime_app.readiness import NotReady
from realtime_app.sockjs import SockJSRouter, SockJSSettings, build_router
from realtime_app.stats import Histogram

if TYPE_CHECKING:
    from realtime_app.context import Context
    from realtime_app.live.connection import RealtimeConnection

log = logging.getLogger(__name__)

SOCKJS_PREFIX = "/realtime"


@dataclass
class RealtimeCounters:
    """Counts that the connections and outboxes add to; read by stats."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    conflated: int = 0
    slow_consumer_closes: int = 0
    rate_limited: int = 0
    oversized_frames: int = 0
    auth_failures: int = 0
    connections_refused: int = 0
    delivery_latency: Histogram = field(default_factory=Histogram)


class FilterBudget:
    """What each user's live queries cost to match against every change: the sum of the costs
    of the user's distinct filters (subscriptions with equal filters share one evaluation per
    change, whichever sockets they are on). One user cannot make others wait on its filters
    beyond this bound."""

    def __init__(self, per_user: int):
        self.per_user = per_user
        self._spent: Counter[str] = Counter()
        self._held: Counter[tuple[str, str, str]] = Counter()  # (user, collection, filter) -> subscriptions

    def reserve(self, user: str, collection: str, query: Filter) -> None:
        key = (user, collection, query.canonical)
        if not self._held[key]:
            if self._spent[user] + query.cost > self.per_user:
                raise TooManySubscriptions(f"your live queries' filters would cost {self._spent[user] + query.cost}, over the limit of "
                                           f"{self.per_user} per user; unsubscribe from some or simplify their filters")
            self._spent[user] += query.cost
        self._held[key] += 1

    def release(self, user: str, collection: str, query: Filter) -> None:
        key = (user, collection, query.canonical)
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]
            self._spent[user] -= query.cost
            if self._spent[user] <= 0:
                del self._spent[user]

    def spent(self, user: str) -> int:
        return self._spent[user]


class Realtime:
    """Owns the hub, the change feed and the registry of open connections."""

    def __init__(self, context: Context):
        self.context = context
        self.settings: Settings = context.settings
        self.hub = Hub()
        self.filters = FilterCache()
        self.filter_budget = FilterBudget(self.settings.live_filter_cost_per_user)
        self.feed: Feed | None = None
        self.counters = RealtimeCounters()
        self.flushes = FlushBatch()
        self.connections: set[RealtimeConnection] = set()
        self._per_user: Counter[str] = Counter()
        self.server_name = f"realtime-app/{__version__} {self.settings.process_name}"
        """What the welcome frame names, before the client has authenticated: the product and
        this process's name (no host name), so operators can tell processes apart."""
        self.router: SockJSRouter | None = None
        self.connection_class: type[RealtimeConnection] | None = None

    async def start(self) -> None:
        from realtime_app.live.connection import RealtimeConnection

        context = self.context
        feed_args = (context.db, context.resources.names, self._dispatch, self.hub.resync, self.settings.replay_buffer_events)
        if await context.db.supports_change_streams():
            self.feed = ChangeFeed(*feed_args, store=context.store, snapshot_max_bytes=self.settings.snapshot_max_bytes)
        else:
            log.warning("MongoDB has no change streams (not a replica set): polling the collections every %.1f s instead; "
                        "run mongod as a replica set (even of one node) for immediate, complete updates", POLL_INTERVAL_S)
            self.feed = PollingFeed(*feed_args)
        await self.feed.start()
        self.context.readiness_checks.append(self._feed_readiness)
        self.connection_class = type("BoundRealtimeConnection", (RealtimeConnection,), {"realtime": self})
        self.router = build_router(self.connection_class, SockJSSettings(
            prefix=SOCKJS_PREFIX,
            allowed_origins=self.settings.origins,
            disconnect_delay=self.settings.sockjs_disconnect_delay_s,
            heartbeat_delay=self.settings.sockjs_heartbeat_s,
            disabled_transports=self.settings.disabled_transports,
            max_sessions_per_address=self.settings.max_connections_per_address,
        ))

    def _dispatch(self, event: ChangeEvent, last_in_turn: bool) -> None:
        """Route an event to its subscriptions. The last event of a loop turn goes out to each
        socket as soon as it is routed there, with whatever the turn queued before it; events
        with more to follow wait, so each socket gets the whole burst as one frame."""
        if last_in_turn:
            with self.flushes.at_once():
                self.hub.dispatch(event)
        else:
            self.hub.dispatch(event)

    async def _feed_readiness(self) -> NotReady | None:
        return self.feed.readiness() if self.feed is not None else NotReady("the change feed has not started")

    @property
    def live_feed(self) -> Feed:
        assert self.feed is not None, "start() creates the feed"
        return self.feed

    @property
    def urls(self) -> list[Any]:
        assert self.router is not None, "start() builds the router"
        return self.router.urls

    def register(self, connection: RealtimeConnection) -> None:
        self.connections.add(connection)

    def admit(self, connection: RealtimeConnection, user: str) -> bool:
        """Count an authenticated socket against its user's limit; False when over it."""
        if self._per_user[user] >= self.settings.max_connections_per_user:
            self.counters.connections_refused += 1
            return False
        self._per_user[user] += 1
        return True

    def unregister(self, connection: RealtimeConnection, user: str | None) -> None:
        self.connections.discard(connection)
        if user is not None:
            self._per_user[user] -= 1
            if self._per_user[user] <= 0:
                del self._per_user[user]

    def end_refused_sessions(self, user: str) -> None:
        """Close the user's sockets whose token no longer holds (its user removed, disabled or
        changed, its login session ended): an error frame saying why, then 4001."""
        refusal = self.context.auth.sessions.refusal
        for connection in list(self.connections):
            principal = connection.principal
            if principal is not None and principal.user == user and (reason := refusal(principal)) is not None:
                connection.end_session(reason, "token revoked")

    @property
    def users_connected(self) -> int:
        return len(self._per_user)

    async def stop(self) -> None:
        """Say goodbye to every client, close them, stop the feed."""
        for connection in list(self.connections):
            connection.goodbye("server shutting down", self.settings.shutdown_reconnect_after_ms)
        if self.connections:
            await asyncio.sleep(0.1)  # let the goodbye frames reach the sockets
        if self.feed is not None:
            await self.feed.stop()
