"""An asyncio client for the live-update protocol (docs/PROTOCOL.md), over SockJS websocket or xhr-polling.

    client = RealtimeClient("http://127.0.0.1:8080", token)
    await client.connect()
    services = await client.subscribe("services", {"status": "down"})
    await services.wait_for(lambda view: len(view.docs) > 2)

It reconnects with exponential backoff and full jitter, and resumes each subscription from the
last position it saw, so a view stays exact across disconnects.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], Awaitable[str]]
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.2, 30.0
# Frames kept for `RealtimeClient.next_frame` when nobody reads them (each is a parsed dict).
FRAMES_KEPT = 10_000
# Close codes after which reconnecting cannot help.
FINAL_CLOSE_CODES = {4001, 4003}


class ConnectionClosed(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def _decode_sockjs(frame: str) -> tuple[str, Any]:
    """A SockJS frame as (kind, payload): ('a', [messages]), ('c', [code, reason]), ('o'|'h', None)."""
    kind = frame[:1]
    if kind in ("a", "c"):
        return kind, json.loads(frame[1:])
    return kind, None


class WebSocketTransport:
    name = "websocket"

    def __init__(self, base_url: str, session_url: str):
        scheme = "wss" if base_url.startswith("https") else "ws"
        self.url = f"{scheme}://{urlsplit(base_url).netloc}{session_url}/websocket"
        self.origin = base_url.rstrip("/")
        self.ws: WebSocketClientConnection | None = None

    async def open(self) -> None:
        request = HTTPRequest(self.url, headers={"Origin": self.origin}, request_timeout=10)
        self.ws = await websocket_connect(request)

    async def send(self, messages: list[str]) -> None:
        assert self.ws is not None
        try:
            await self.ws.write_message(json.dumps(messages))
        except WebSocketClosedError:
            raise ConnectionClosed(1006, "socket closed") from None

    async def receive(self) -> list[str]:
        """Next batch of messages; raises ConnectionClosed at the end."""
        assert self.ws is not None
        while True:
            frame = await self.ws.read_message()
            if frame is None:
                raise ConnectionClosed(self.ws.close_code or 1006, self.ws.close_reason or "connection lost")
            kind, payload = _decode_sockjs(frame if isinstance(frame, str) else frame.decode())
            if kind == "a":
                return list(payload)
            if kind == "c":
                raise ConnectionClosed(int(payload[0]), str(payload[1]))

    async def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


class XhrPollingTransport:
    name = "xhr-polling"

    def __init__(self, base_url: str, session_url: str):
        self.base = base_url.rstrip("/") + session_url
        self.origin = base_url.rstrip("/")
        self.http = AsyncHTTPClient(force_instance=True)
        self._closed = asyncio.Event()

    async def _post(self, path: str, body: str = "") -> str:
        response = await self.http.fetch(self.base + path, method="POST", body=body, request_timeout=60,
                                          headers={"Origin": self.origin, "Content-Type": "text/plain"})
        return response.body.decode()

    async def open(self) -> None:
        kind, _ = _decode_sockjs(await self._post("/xhr"))
        if kind != "o":
            raise ConnectionClosed(1006, f"unexpected opening frame {kind!r}")

    async def send(self, messages: list[str]) -> None:
        try:
            await self._post("/xhr_send", json.dumps(messages))
        except (HTTPClientError, OSError) as exc:
            raise ConnectionClosed(1006, f"send failed: {exc}") from None

    async def receive(self) -> list[str]:
        while True:
            body = await self._poll()
            for line in body.splitlines():
                kind, payload = _decode_sockjs(line)
                if kind == "a":
                    return list(payload)
                if kind == "c":
                    raise ConnectionClosed(int(payload[0]), str(payload[1]))
                if kind == "o":  # a server that does not know our session opened a new one
                    raise ConnectionClosed(1006, "session lost: the server restarted or a load balancer moved it")

    async def _poll(self) -> str:
        """One long poll's body; a `close` ends the wait at once instead of when the server answers."""
        if self._closed.is_set():
            raise ConnectionClosed(1000, "closed")
        poll = asyncio.ensure_future(self._post("/xhr"))
        closing = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({poll, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (poll, closing):
                waiting.cancel()
        if not poll.done() or poll.cancelled():
            raise ConnectionClosed(1000, "closed")
        try:
            return poll.result()
        except (HTTPClientError, OSError) as exc:
            raise ConnectionClosed(1006, f"poll failed: {exc}") from None

    async def close(self) -> None:
        self._closed.set()
        self.http.close()


Transport = WebSocketTransport | XhrPollingTransport
TRANSPORTS: dict[str, type[Transport]] = {"websocket": WebSocketTransport, "xhr-polling": XhrPollingTransport}


class LiveQuery:
    """A subscription's current result, kept exact by snapshot, change and resume frames."""

    def __init__(self, client: RealtimeClient, sub_id: str, collection: str, filter: dict[str, Any] | None, throttle_ms: int):
        self.client = client
        self.id = sub_id
        self.collection = collection
        self.filter = filter
        self.throttle_ms = throttle_ms
        self.docs: dict[str, dict[str, Any]] = {}
        self.position: str | None = None
        self.changes: list[dict[str, Any]] = []  # every change frame applied, in order
        self.snapshots = 0
        self.last_snapshot: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self._changed = asyncio.Condition()

    def subscribe_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "id": self.id, "collection": self.collection}
        if self.filter:
            frame["filter"] = self.filter
        if self.throttle_ms:
            frame["throttle_ms"] = self.throttle_ms
        if self.position is not None:
            frame["since"] = self.position
        return frame

    async def _apply(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "snapshot":
            self.docs = {doc["id"]: doc for doc in frame["docs"]}
            self.snapshots += 1
            self.last_snapshot = frame
        elif kind == "change":
            if frame["op"] == "removed":
                self.docs.pop(frame["id"], None)
            else:
                self.docs[frame["id"]] = frame["doc"]
            self.changes.append(frame)
        elif kind == "error":
            self.error = frame
        if "position" in frame:
            self.position = frame["position"]
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[LiveQuery], bool], timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)


class RealtimeClient:
    def __init__(self, base_url: str, token: TokenSource, *, transport: str = "websocket", prefix: str = "/realtime",
                 reconnect: bool = True, on_frame: Callable[[dict[str, Any]], None] | None = None):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
        self.base_url = base_url.rstrip("/")
        self.token_source = token
        self.transport_name = transport
        self.prefix = prefix
        self.reconnect = reconnect
        self.on_frame = on_frame
        self.queries: dict[str, LiveQuery] = {}
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue(FRAMES_KEPT)
        """Frames for `next_frame`, the newest `FRAMES_KEPT`: a client that only reads its live
        queries' views must not keep every frame it ever received."""
        self.closed: ConnectionClosed | None = None
        self.connections = 0
        self.welcome: dict[str, Any] | None = None
        self._transport: Transport | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._pings: dict[float, asyncio.Future[float]] = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self._reconnecting: asyncio.Task[None] | None = None  # at most one reconnect loop

    async def _token(self) -> str:
        source = self.token_source
        return source if isinstance(source, str) else await source()

    async def connect(self, authenticate: bool = True) -> dict[str, Any] | None:
        """Open a session and authenticate; returns the auth_ok frame (None if not `authenticate`)."""
        session_url = f"{self.prefix}/{random.randint(0, 999):03d}/{secrets.token_hex(8)}"
        transport = TRANSPORTS[self.transport_name](self.base_url, session_url)
        await transport.open()
        previous, self._transport = self._transport, transport
        if previous is not None:
            await previous.close()  # one session at a time, or a view would get frames twice
        self.closed = None
        self.connections += 1
        self._ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read(transport))
        if not authenticate:
            return None
        await self.send({"type": "auth", "token": await self._token()})
        auth_ok = await asyncio.wait_for(asyncio.shield(self._ready), 10)
        for query in self.queries.values():
            await self.send(query.subscribe_frame())
        return auth_ok

    async def send(self, *frames: dict[str, Any]) -> None:
        if self._transport is None:
            raise ConnectionClosed(1006, "not connected")
        await self._transport.send([json.dumps(frame) for frame in frames])

    async def send_raw(self, *messages: str) -> None:
        """Send messages as they are (for tests of malformed input)."""
        assert self._transport is not None
        await self._transport.send(list(messages))

    async def subscribe(self, collection: str, filter: dict[str, Any] | None = None, *, sub_id: str | None = None,
                        throttle_ms: int = 0, wait: bool = True) -> LiveQuery:
        query = LiveQuery(self, sub_id or f"s{next(self._ids)}", collection, filter, throttle_ms)
        self.queries[query.id] = query
        await self.send(query.subscribe_frame())
        if wait:
            await query.wait_for(lambda q: q.snapshots > 0 or q.error is not None)
        return query

    async def unsubscribe(self, sub_id: str) -> None:
        self.queries.pop(sub_id, None)
        await self.send({"type": "unsubscribe", "id": sub_id})

    async def ping(self) -> float:
        """Round-trip time in seconds."""
        ts = time.time()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pings[ts] = future
        await self.send({"type": "ping", "ts": ts})
        return await asyncio.wait_for(future, 10)

    async def next_frame(self, kind: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame received (of `kind`, skipping others)."""
        while True:
            frame = await asyncio.wait_for(self.frames.get(), timeout)
            if kind is None or frame["type"] == kind:
                return frame

    async def _read(self, transport: Transport) -> None:
        """Deliver one session's frames; at its end, report the close and reconnect if asked."""
        try:
            while True:
                for message in await transport.receive():
                    if transport is not self._transport:
                        return  # superseded by a newer session
                    await self._handle(json.loads(message))
        except ConnectionClosed as closed:
            self.closed = closed
        except Exception as exc:  # network errors of any kind end this session
            self.closed = ConnectionClosed(1006, f"{type(exc).__name__}: {exc}")
        finally:
            await transport.close()
        if transport is not self._transport:
            return
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(self.closed)
            self._ready.exception()  # connect() may not be waiting: do not warn about it
        self._keep({"type": "_closed", "code": self.closed.code, "reason": self.closed.reason})
        wants_reconnect = self.reconnect and not self._stopping and self.closed.code not in FINAL_CLOSE_CODES
        if wants_reconnect and (self._reconnecting is None or self._reconnecting.done()):
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if self.on_frame is not None:
            self.on_frame(frame)
        if kind == "welcome":
            self.welcome = frame
        elif kind == "auth_ok" and self._ready is not None and not self._ready.done():
            self._ready.set_result(frame)
        elif kind == "reauth_required" and not isinstance(self.token_source, str):
            await self.send({"type": "auth", "token": await self._token()})
        elif kind == "pong":
            ts = frame.get("ts")
            if isinstance(ts, float):
                future = self._pings.pop(ts, None)
                if future is not None and not future.done():
                    future.set_result(time.time() - ts)
        sub_id = frame.get("sub") or (frame.get("ref") if kind == "error" else None)
        query = self.queries.get(sub_id) if isinstance(sub_id, str) else None
        if query is not None:
            await query._apply(frame)
        self._keep(frame)

    def _keep(self, frame: dict[str, Any]) -> None:
        if self.frames.full():
            self.frames.get_nowait()  # the oldest goes
        self.frames.put_nowait(frame)

    async def _reconnect(self) -> None:
        delay = BACKOFF_FIRST_S
        while not self._stopping:
            await asyncio.sleep(random.uniform(0, delay))
            try:
                await self.connect()
                return
            except Exception as exc:  # keep trying: the server may still be restarting
                log.debug("reconnect failed: %s", exc)
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def drop(self) -> None:
        """Lose the connection abruptly (for tests and demos); reconnects if enabled."""
        if self._transport is not None:
            await self._transport.close()

    async def close(self) -> None:
        self._stopping = True
        if self._transport is not None:
            await self._transport.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
