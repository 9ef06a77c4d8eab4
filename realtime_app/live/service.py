"""The live-update service of one process: change feed, hub, and the sockets that subscribe."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from realtime_app import __version__
from realtime_app.auth.service import AuthService
from realtime_app.config import Settings
from realtime_app.counters import RealtimeCounters
from realtime_app.data.db import POLL_INTERVAL_S, Database
from realtime_app.data.filters import FilterCache
from realtime_app.data.resources import Resources
from realtime_app.data.store import DocumentStore
from realtime_app.live.changefeed import ChangeEvent, ChangeFeed, Feed
from realtime_app.live.connection import ConnectionDeps, Connections, RealtimeConnection
from realtime_app.live.hub import FilterBudget, Hub
from realtime_app.live.outbox import FlushBatch
from realtime_app.live.pollfeed import PollingFeed
from realtime_app.readiness import NotReady
from realtime_app.sockjs import SockJSRouter, SockJSSettings, build_router

log = logging.getLogger(__name__)

SOCKJS_PREFIX = "/realtime"


class Realtime:
    """Owns the hub, the change feed and the registry of open connections."""

    def __init__(self, settings: Settings, db: Database, resources: Resources, store: DocumentStore, auth: AuthService):
        self.settings = settings
        self.db = db
        self.resources = resources
        self.store = store
        self.auth = auth
        self.hub = Hub()
        self.filters = FilterCache()
        self.filter_budget = FilterBudget(settings.live_filter_cost_per_user)
        self.feed: Feed | None = None
        self.counters = RealtimeCounters()
        self.flushes = FlushBatch()
        self.connections = Connections(settings.max_connections_per_user, self.counters)
        self.server_name = f"realtime-app/{__version__} {settings.process_name}"
        """What the welcome frame names, before the client has authenticated: the product and
        this process's name (no host name), so operators can tell processes apart."""
        self.router: SockJSRouter | None = None

    async def start(self) -> None:
        feed_args = (self.db, self.resources.names, self._dispatch, self.hub.resync, self.settings.replay_buffer_events)
        if await self.db.supports_change_streams():
            self.feed = ChangeFeed(*feed_args, store=self.store, snapshot_max_bytes=self.settings.snapshot_max_bytes)
        else:
            log.warning("MongoDB has no change streams (not a replica set): polling the collections every %.1f s instead; "
                        "run mongod as a replica set (even of one node) for immediate, complete updates", POLL_INTERVAL_S)
            self.feed = PollingFeed(*feed_args)
        await self.feed.start()
        deps = ConnectionDeps(
            settings=self.settings, auth=self.auth, resources=self.resources, store=self.store, feed=self.feed, hub=self.hub,
            filters=self.filters, filter_budget=self.filter_budget, connections=self.connections, counters=self.counters,
            flushes=self.flushes, server_name=self.server_name,
        )
        self.router = build_router(functools.partial(RealtimeConnection, deps=deps), SockJSSettings(
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

    async def readiness(self) -> NotReady | None:
        """Why live updates cannot be served now (the feed is not running), or None."""
        return self.feed.readiness() if self.feed is not None else NotReady("the change feed has not started")

    @property
    def live_feed(self) -> Feed:
        assert self.feed is not None, "start() creates the feed"
        return self.feed

    @property
    def urls(self) -> list[Any]:
        assert self.router is not None, "start() builds the router"
        return self.router.urls

    def end_refused_sessions(self, user: str) -> None:
        """Close the user's sockets whose token no longer holds (its user removed, disabled or
        changed, its login session ended): an error frame saying why, then 4001."""
        for connection in list(self.connections):
            principal = connection.principal
            if principal is not None and principal.user == user and (reason := self.auth.refusal(principal)) is not None:
                connection.end_session(reason, "token revoked")

    async def stop(self) -> None:
        """Say goodbye to every client, close them, stop the feed."""
        for connection in list(self.connections):
            connection.goodbye("server shutting down", self.settings.shutdown_reconnect_after_ms)
        if self.connections:
            await asyncio.sleep(0.1)  # let the goodbye frames reach the sockets
        if self.feed is not None:
            await self.feed.stop()
