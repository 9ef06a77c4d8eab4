"""One SockJS session speaking the wire protocol (docs/PROTOCOL.md): parse, validate, rate-limit,
call the hub.

The connection owns its subscriptions, its outbox and its timers; `on_close` releases all of
them whatever ended the session.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from realtime_app import jsoncodec
from realtime_app.auth.service import AuthService
from realtime_app.config import Settings
from realtime_app.counters import RealtimeCounters
from realtime_app.data import db as dbmod
from realtime_app.data.filters import FilterCache
from realtime_app.data.principal import Principal
from realtime_app.data.resources import Resources
from realtime_app.data.store import DocumentStore
from realtime_app.errors import (
    AppError,
    AuthRequired,
    BadFilter,
    BadRequest,
    Forbidden,
    RateLimited,
    TokenExpired,
    TooManySubscriptions,
    Unauthorized,
    UnknownSubscription,
)
from realtime_app.live import positions
from realtime_app.live.changefeed import Feed
from realtime_app.live.hub import FilterBudget, Hub, Subscription
from realtime_app.live.outbox import FlushBatch, Outbox
from realtime_app.sockjs import SockJSConnection

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_CLIENT_ID_LENGTH = 64
MAX_THROTTLE_MS = 60_000
# Rate-limit violations tolerated (each answered with an error frame) before closing with 4008.
RATE_LIMIT_STRIKES = 20
# Retries of a snapshot while MongoDB is unreachable; the subscription stays and waits.
SNAPSHOT_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0)
# Snapshots one socket reads from MongoDB at the same time; the others wait their turn, so a
# socket subscribing to many queries at once holds a few results in memory, not all.
SNAPSHOT_READS_AT_ONCE = 4
CLOSE_AUTH, CLOSE_FORBIDDEN, CLOSE_POLICY, CLOSE_SLOW, CLOSE_GOING_AWAY = 4001, 4003, 4008, 4009, 1001

PROTOCOL_CODES = {"bad_request": "bad_frame", "precondition_failed": "bad_frame", "invalid_document": "bad_frame"}


def _client_id(value: Any, what: str = "id") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID_LENGTH:
        raise BadRequest(f"{what} must be a string of 1-{MAX_CLIENT_ID_LENGTH} characters")
    return value


class TokenBucket:
    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class ConnectionDeps:
    """What every connection of one live service works with. The service builds it once and
    hands the SockJS router a factory binding it to each new connection (`Realtime.start`)."""

    settings: Settings
    auth: AuthService
    resources: Resources
    store: DocumentStore
    feed: Feed
    hub: Hub
    filters: FilterCache
    filter_budget: FilterBudget
    connections: Connections
    counters: RealtimeCounters
    flushes: FlushBatch
    server_name: str
    """What the welcome frame names: the product and this process's name (no host name)."""


class Connections:
    """The open connections of one process, and the authenticated ones of each user; the live
    service owns it, stats reads it."""

    def __init__(self, max_per_user: int, counters: RealtimeCounters):
        self.max_per_user = max_per_user
        self._counters = counters
        self._open: set[RealtimeConnection] = set()
        self._per_user: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[RealtimeConnection]:
        return iter(self._open)

    def register(self, connection: RealtimeConnection) -> None:
        self._open.add(connection)

    def admit(self, connection: RealtimeConnection, user: str) -> bool:
        """Count an authenticated socket against its user's limit; False when over it."""
        if self._per_user[user] >= self.max_per_user:
            self._counters.connections_refused += 1
            return False
        self._per_user[user] += 1
        return True

    def unregister(self, connection: RealtimeConnection, user: str | None) -> None:
        self._open.discard(connection)
        if user is not None:
            self._per_user[user] -= 1
            if self._per_user[user] <= 0:
                del self._per_user[user]

    @property
    def users(self) -> int:
        """Users with at least one authenticated socket."""
        return len(self._per_user)


class RealtimeConnection(SockJSConnection):
    """Built by the SockJS router for each session, through a factory that binds the service's
    `ConnectionDeps` (see `Realtime.start`)."""

    def __init__(self, session: Any, deps: ConnectionDeps):
        super().__init__(session)
        self.deps = deps

    def on_open(self, info: Any) -> None:
        settings = self.deps.settings
        self.principal: Principal | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox = Outbox(self._write, self.transport_backlog, self._slow_consumer, settings.outbox_max_frames,
                             self.deps.counters, self.deps.flushes, max_bytes=settings.outbox_max_bytes,
                             conflate=self.groups_messages)
        self._bucket = TokenBucket(settings.frames_per_second, settings.frame_burst)
        self._snapshot_bucket = TokenBucket(settings.snapshots_per_second, settings.snapshot_burst)
        self._snapshot_reads = asyncio.Semaphore(SNAPSHOT_READS_AT_ONCE)
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        self._strikes = 0
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closing = False
        self._reauth_asked_for = 0.0
        self.deps.connections.register(self)
        self._send({
            "type": "welcome", "protocol": PROTOCOL_VERSION, "server": self.deps.server_name,
            "heartbeat_ms": int(settings.sockjs_heartbeat_s * 1000), "auth_timeout_ms": int(settings.auth_timeout_s * 1000),
        })
        self._timer("auth", settings.auth_timeout_s, self._auth_timed_out)

    # -- sending -------------------------------------------------------------------------------

    def _send(self, frame: dict[str, Any]) -> None:
        self.outbox.put_frame(jsoncodec.dumps(frame))

    def _write(self, messages: list[str]) -> None:
        counters = self.deps.counters
        counters.frames_out += len(messages)
        counters.bytes_out += sum(map(len, messages))
        self.send_packed(messages)

    def _error(self, exc: AppError, ref: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": PROTOCOL_CODES.get(exc.code, exc.code), "message": exc.detail}
        if exc.errors:
            frame["message"] += ": " + "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
        if ref is not None:
            frame["ref"] = ref
        self._send(frame)

    def _close_with(self, code: int, reason: str) -> None:
        """Deliver what is queued, then close with a code and a reason the client can show."""
        if self._closing:
            return
        self._closing = True
        self.outbox.flush(force=True)
        self.close(code, reason)

    def goodbye(self, reason: str, reconnect_after_ms: int) -> None:
        """The server is going away: tell the client when to come back, then close with 1001."""
        self._send({"type": "goodbye", "code": CLOSE_GOING_AWAY, "reason": reason, "reconnect_after_ms": reconnect_after_ms})
        self._close_with(CLOSE_GOING_AWAY, reason)

    def _slow_consumer(self) -> None:
        self.deps.counters.slow_consumer_closes += 1
        self._closing = True
        self.close(CLOSE_SLOW, "slow consumer: too far behind; reconnect with since to resume")

    # -- receiving -----------------------------------------------------------------------------

    def on_message(self, message: str) -> None:
        counters = self.deps.counters
        counters.frames_in += 1
        if self._closing:
            return
        if len(message) > self.deps.settings.max_frame_bytes:
            counters.oversized_frames += 1
            self._error(BadRequest(f"frame of {len(message)} bytes is over the limit of {self.deps.settings.max_frame_bytes}"))
            self._close_with(CLOSE_POLICY, "frame too large")
            return
        if not self._bucket.take():
            counters.rate_limited += 1
            self._strikes += 1
            if self._strikes > RATE_LIMIT_STRIKES:
                self._close_with(CLOSE_POLICY, "rate limit exceeded")
            elif self._strikes == 1 or self._strikes % 5 == 0:
                self._send({"type": "error", "code": "rate_limited",
                            "message": f"more than {self.deps.settings.frames_per_second:g} frames per second; slow down"})
            return
        ref = None
        try:
            # As UTF-8 bytes: SockJS's own JSON layer can hand over lone surrogates ("\ud800"
            # escaped in the envelope), which MongoDB and the client's UTF-8 cannot carry.
            frame = jsoncodec.loads(message.encode("utf-8", "surrogatepass"), "frame")
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise BadRequest('a frame is a JSON object with a string "type"')
            ref = frame.get("id") if isinstance(frame.get("id"), str) else None
            self._dispatch(frame)
        except AppError as exc:
            self._error(exc, ref)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "ping":
            self._send({"type": "pong", "ts": frame.get("ts")})
        elif kind == "auth":
            self._authenticate(frame.get("token"))
        elif kind in ("subscribe", "unsubscribe", "refresh"):
            if self.principal is None:
                raise AuthRequired("send an auth frame first")
            getattr(self, "_" + kind)(frame)
        else:
            raise BadRequest(f"unknown frame type {kind[:40]!r}; expected auth, subscribe, unsubscribe, refresh or ping")

    # -- auth ----------------------------------------------------------------------------------

    def _authenticate(self, token: Any) -> None:
        first = self.principal is None
        try:
            principal = self.deps.auth.principal(token)
        except Unauthorized as exc:
            self.deps.counters.auth_failures += 1
            self._error(exc)
            if first:
                self._close_with(CLOSE_AUTH, exc.detail)
            return
        if self.principal is not None and (principal.user, principal.tenant) != (self.principal.user, self.principal.tenant):
            self._error(Forbidden("a connection belongs to one user and tenant; open another connection for another"))
            self._close_with(CLOSE_FORBIDDEN, "token for another user or tenant")
            return
        if first:
            if not self.deps.connections.admit(self, principal.user):
                self._error(AppError(f"too many connections for {principal.user}"))
                self._close_with(CLOSE_POLICY, "too many connections for this user")
                return
            self._cancel("auth")
        self.principal = principal
        self._drop_unreadable()
        self._schedule_expiry(principal)
        self._send({
            "type": "auth_ok", "user": principal.user, "tenant": principal.tenant, "roles": sorted(principal.roles),
            "expires_at": dt.datetime.fromtimestamp(principal.expires_at, dt.UTC).isoformat().replace("+00:00", "Z"),
        })

    def _drop_unreadable(self) -> None:
        """After a refresh with other roles: end the subscriptions the new token may not read."""
        assert self.principal is not None
        for sub in list(self.subscriptions.values()):
            resource = self.deps.resources.get(sub.collection)
            if not resource.may_read(self.principal.roles):
                self._remove(sub)
                self._error(Forbidden(f"your new token may not read {sub.collection}"), sub.id)

    def _schedule_expiry(self, principal: Principal) -> None:
        settings = self.deps.settings
        remaining = principal.expires_at - time.time()
        if principal.expires_at != self._reauth_asked_for:
            self._timer("reauth", max(remaining - settings.reauth_lead_s, 0.0), self._ask_reauth)
        self._timer("expiry", max(remaining + settings.jwt_leeway_s, 0.0), self._token_expired)

    def _ask_reauth(self) -> None:
        """Once per token: a client that answers with a token expiring as soon is not asked again."""
        if self.principal is not None:
            self._reauth_asked_for = self.principal.expires_at
            remaining_ms = int(max(self.principal.expires_at - time.time(), 0) * 1000)
            self._send({"type": "reauth_required", "expires_in_ms": remaining_ms})

    def _token_expired(self) -> None:
        self.end_session(TokenExpired("the token expired without a fresh one; subscriptions were dropped"), "token expired")

    def end_session(self, exc: Unauthorized, reason: str) -> None:
        """The token no longer holds: drop the subscriptions, say why, close with 4001."""
        for sub in list(self.subscriptions.values()):
            self._remove(sub)
        self._error(exc)
        self._close_with(CLOSE_AUTH, reason)

    def _auth_timed_out(self) -> None:
        self._error(AuthRequired(f"no auth frame within {self.deps.settings.auth_timeout_s:g} s"))
        self._close_with(CLOSE_AUTH, "authentication timed out")

    # -- subscriptions -------------------------------------------------------------------------

    def _subscribe(self, frame: dict[str, Any]) -> None:
        assert self.principal is not None
        settings = self.deps.settings
        sub_id = _client_id(frame.get("id"))
        if sub_id in self.subscriptions:
            raise BadRequest(f"subscription {sub_id!r} already exists; unsubscribe first or choose another id")
        if len(self.subscriptions) >= settings.max_subscriptions:
            raise TooManySubscriptions(f"at most {settings.max_subscriptions} subscriptions per connection")
        resource = self.deps.store.readable(self.principal, _client_id(frame.get("collection"), "collection"))
        query = self.deps.filters.get(resource.name, frame.get("filter"), resource.filterable, settings.max_filter_depth,
                                          settings.max_filter_cost)
        throttle_ms = frame.get("throttle_ms", 0)
        if isinstance(throttle_ms, bool) or not isinstance(throttle_ms, int) or not 0 <= throttle_ms <= MAX_THROTTLE_MS:
            raise BadRequest(f"throttle_ms must be an integer from 0 to {MAX_THROTTLE_MS}")
        since = frame.get("since")
        self._take_snapshot_turn()
        self.deps.filter_budget.reserve(self.principal.user, resource.name, query)
        sub = Subscription(self, sub_id, resource.name, query, throttle_ms)
        self.subscriptions[sub_id] = sub
        self.deps.hub.add(sub, self.principal.tenant_scope)
        feed = self.deps.feed
        resume_from = positions.from_wire(since) if since is not None else None
        if resume_from is not None and feed.covers(resume_from):
            sub.go_live(resume_from)
            for event in feed.events_after(resume_from):
                sub.offer(event)
            self._send({"type": "resumed", "sub": sub_id, "position": positions.to_wire(max(resume_from, feed.head))})
        else:
            self._load_snapshot(sub, recovered=False if since is not None else None)

    def _load_snapshot(self, sub: Subscription, recovered: bool | None) -> None:
        """Read the query's result in the background; changes arriving meanwhile wait in its
        buffer. A read still under way for the subscription is cancelled: its result is stale."""
        sub.buffer = sub.buffer if sub.buffer is not None else []
        sub.generation += 1
        previous = self._snapshot_tasks.pop(sub.id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.get_running_loop().create_task(self._read_snapshot(sub, sub.generation, recovered))
        self._snapshot_tasks[sub.id] = task
        task.add_done_callback(functools.partial(self._snapshot_read_done, sub.id))

    def _snapshot_read_done(self, sub_id: str, task: asyncio.Task[None]) -> None:
        if self._snapshot_tasks.get(sub_id) is task:
            del self._snapshot_tasks[sub_id]

    async def _read_snapshot(self, sub: Subscription, generation: int, recovered: bool | None) -> None:
        assert self.principal is not None
        deps = self.deps
        resource = deps.resources.get(sub.collection)
        for attempt in itertools.count():
            try:
                async with self._snapshot_reads:
                    docs, position = await deps.feed.snapshot(self.principal, resource, sub.query, deps.settings.snapshot_max_docs)
                break
            except AppError as exc:
                if self.subscriptions.get(sub.id) is sub:
                    self._remove(sub)
                    self._error(exc, sub.id)
                return
            except dbmod.PyMongoError as exc:
                if attempt == 0:
                    self._send({"type": "error", "code": "unavailable", "ref": sub.id,
                                "message": f"the database is unavailable; the snapshot follows when it is back ({dbmod.describe(exc)})"})
                await asyncio.sleep(SNAPSHOT_RETRY_DELAYS_S[min(attempt, len(SNAPSHOT_RETRY_DELAYS_S) - 1)])
                if self.subscriptions.get(sub.id) is not sub or sub.generation != generation:
                    return
        if self.subscriptions.get(sub.id) is not sub or sub.generation != generation or self._closing:
            return
        frame: dict[str, Any] = {"type": "snapshot", "sub": sub.id, "docs": docs, "position": positions.to_wire(position)}
        if recovered is not None:
            frame["recovered"] = recovered
        text = jsoncodec.dumps(frame)
        if len(text) > deps.settings.snapshot_max_bytes:
            self._remove(sub)
            self._error(BadFilter(f"the query's snapshot is {len(text)} bytes, over the limit of {deps.settings.snapshot_max_bytes}; "
                                  "narrow the filter"), sub.id)
            return
        # The snapshot supersedes whatever of this subscription is still queued, an older snapshot included.
        self.outbox.discard(lambda key: key[0] == sub.id)
        self.outbox.put_frame(text, key=(sub.id, None))
        sub.go_live(position)

    def resync(self, subscription: Subscription) -> None:
        """The hub lost track (history gone, collection dropped): send a fresh snapshot."""
        if self.subscriptions.get(subscription.id) is subscription and not self._closing:
            subscription.buffer = []
            self._load_snapshot(subscription, recovered=False)

    def _unsubscribe(self, frame: dict[str, Any]) -> None:
        self._remove(self._existing(frame))

    def _refresh(self, frame: dict[str, Any]) -> None:
        sub = self._existing(frame)
        self._take_snapshot_turn()
        sub.buffer = []
        self._load_snapshot(sub, recovered=None)

    def _take_snapshot_turn(self) -> None:
        """Subscribing and refreshing read and send a whole result: they have a rate of their own."""
        if not self._snapshot_bucket.take():
            self.deps.counters.rate_limited += 1
            rate = self.deps.settings.snapshots_per_second
            raise RateLimited(f"more than {rate:g} subscribe or refresh frames per second; wait and send it again", 1 / rate)

    def _existing(self, frame: dict[str, Any]) -> Subscription:
        sub_id = _client_id(frame.get("id"))
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise UnknownSubscription(f"no subscription {sub_id!r} on this connection")
        return sub

    def _remove(self, sub: Subscription) -> None:
        if self.subscriptions.get(sub.id) is not sub:
            return
        del self.subscriptions[sub.id]
        self.deps.hub.remove(sub)
        assert self.principal is not None
        self.deps.filter_budget.release(self.principal.user, sub.collection, sub.query)
        sub.close()
        task = self._snapshot_tasks.pop(sub.id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.outbox.discard(lambda key: key[0] == sub.id)

    # -- timers and cleanup --------------------------------------------------------------------

    def _timer(self, name: str, delay: float, callback: Any) -> None:
        self._cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def on_close(self) -> None:
        self._closing = True
        for name in list(self._timers):
            self._cancel(name)
        for task in list(self._snapshot_tasks.values()):
            task.cancel()
        for sub in list(self.subscriptions.values()):
            self._remove(sub)
        self.outbox.close()
        self.deps.connections.unregister(self, self.principal.user if self.principal is not None else None)
