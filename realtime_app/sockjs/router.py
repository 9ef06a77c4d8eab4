"""The endpoint: sessions by id and by client address, the URL table, frames shared within a
loop turn. Build it with `build_router`."""

from __future__ import annotations

import asyncio
import html
import re
from collections import Counter
from typing import Any

from sockjs.tornado import SockJSRouter as _LibraryRouter
from sockjs.tornado.session import Session
from tornado import httputil
from tornado.ioloop import IOLoop
from tornado.web import URLSpec

from realtime_app.sockjs.connection import ConnectionFactory
from realtime_app.sockjs.http import IFRAME_PAGE, Greeting, IFrame, Info, client_address
from realtime_app.sockjs.origins import OriginPolicy
from realtime_app.sockjs.polling import JsonpPolling, JsonpSend, XhrPolling, XhrSend
from realtime_app.sockjs.sessions import RawWebSocketSession, SockJSSession
from realtime_app.sockjs.settings import SockJSSettings
from realtime_app.sockjs.streaming import EventSource, HtmlFile, XhrStreaming
from realtime_app.sockjs.websocket import RawWebSocket, WebSocket, WebSocketFixes, frame_header

# Frames up to this size are kept for the rest of the loop turn, for other sockets sending the same.
_SHARED_FRAME_MAX_BYTES = 16 * 1024
# ... and up to this much in all: sockets that each get different frames do not fill memory.
_SHARED_FRAMES_MAX_BYTES = 8 * 1024 * 1024


class SockJSRouter(_LibraryRouter):
    """sockjs-tornado's router with our handlers in its URL table. Build it with `build_router`."""

    def __init__(self, connection_factory: ConnectionFactory, settings: SockJSSettings) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("build the SockJS router inside the running event loop (e.g. in async main())") from None
        super().__init__(
            connection_factory,
            settings.prefix,
            {
                "sockjs_url": settings.sockjs_url,
                "disconnect_delay": settings.disconnect_delay,
                "heartbeat_delay": settings.heartbeat_delay,
                "response_limit": settings.response_limit,
                "jsessionid": settings.jsessionid,
                "disabled_transports": list(settings.disabled_transports),
                "verify_ip": False,  # `SockJSSession.set_handler` checks, by `client_address`
            },
            io_loop=IOLoop.current(),
        )
        self._session_kls = SockJSSession
        self.raw_session_class = RawWebSocketSession
        self.max_payload_bytes = settings.max_payload_bytes
        self.origin_policy = OriginPolicy(settings.allowed_origins)
        self.bind_to_client_address = settings.bind_to_client_address
        self.max_sessions_per_address = settings.max_sessions_per_address
        self._sessions_per_address: Counter[str] = Counter()
        self.refused_over_address_cap = 0
        """Sessions closed as they opened because their address held the most it may."""
        self.turn = 0
        """Counts loop turns in which websocket frames were sent (see `count_sent`)."""
        self._turn_ending = False
        self._frames: dict[tuple[str, ...], bytes] = {}
        self._frames_bytes = 0
        self.iframe_page = IFRAME_PAGE.format(sockjs_url=html.escape(settings.sockjs_url))
        self._routes = _routes(self, settings)

    @property
    def urls(self) -> list[URLSpec]:
        """URL specs to join into the Tornado application."""
        return list(self._routes)

    def apply_routes(self, routes: list[Any]) -> list[Any]:
        """Append `urls` to ``routes`` (the library's method would append its own handlers)."""
        routes.extend(self._routes)
        return routes

    def frame_of(self, messages: list[str]) -> bytes:
        """The websocket frame carrying ``a[m1,m2,...]``. A change reaching many sockets passes
        the same message objects to each, so within a loop turn the frame is built once: the
        key is the tuple of messages, whose hash and comparison reuse the strings' own."""
        key = tuple(messages)
        frame = self._frames.get(key)
        if frame is None:
            payload = ("a[" + ",".join(messages) + "]").encode("utf-8")
            frame = frame_header(0x81, len(payload)) + payload
            if len(payload) <= _SHARED_FRAME_MAX_BYTES and self._frames_bytes < _SHARED_FRAMES_MAX_BYTES:
                self._frames[key] = frame
                self._frames_bytes += len(frame)
                self._end_turn_soon()
        return frame

    def count_sent(self, handler: WebSocketFixes, size: int) -> None:
        """Frames a websocket handed straight to the kernel count as its backlog until the
        loop turns, as if they had gone through the stream."""
        if handler.sent_turn != self.turn:
            handler.sent_turn, handler.sent_this_turn = self.turn, 0
        handler.sent_this_turn += size
        self._end_turn_soon()

    def _end_turn_soon(self) -> None:
        if not self._turn_ending:
            self._turn_ending = True
            asyncio.get_running_loop().call_soon(self._end_turn)

    def _end_turn(self) -> None:
        self.turn += 1
        self._turn_ending = False
        self._frames.clear()
        self._frames_bytes = 0

    def admit_address(self, address: str) -> bool:
        """Count one more open session for ``address``; False (and counted as refused) when it
        already holds `SockJSSettings.max_sessions_per_address`."""
        cap = self.max_sessions_per_address
        if cap and self._sessions_per_address[address] >= cap:
            self.refused_over_address_cap += 1
            return False
        self._sessions_per_address[address] += 1
        return True

    def release_address(self, address: str) -> None:
        self._sessions_per_address[address] -= 1
        if self._sessions_per_address[address] <= 0:
            del self._sessions_per_address[address]

    def sessions_of(self, address: str) -> int:
        """Open sessions of one client address."""
        return self._sessions_per_address[address]

    def belongs_to(self, session: Session, request: httputil.HTTPServerRequest) -> bool:
        """Whether ``request`` comes from the client address that opened ``session``."""
        if not self.bind_to_client_address:
            return True
        return session.conn_info is not None and session.conn_info.ip == client_address(request)

    def sessions_by_transport(self) -> dict[str, int]:
        """Open sessions per transport name, for metrics."""
        return {name: count for name, count in self.stats.sess_transports.items() if count}


def build_router(connection_factory: ConnectionFactory, settings: SockJSSettings) -> SockJSRouter:
    """The SockJS endpoint at ``settings.prefix``, serving a connection from ``connection_factory`` for each session.

    Must be called inside the running event loop (RuntimeError otherwise): the router keeps
    ``IOLoop.current()`` and starts its session-expiry and statistics timers on it.
    """
    return SockJSRouter(connection_factory, settings)


def _routes(router: SockJSRouter, settings: SockJSSettings) -> list[URLSpec]:
    """The protocol's URL scheme under the prefix, mapped to our handlers."""
    base = re.escape(settings.prefix)
    session = base + r"/[^/.]+/(?P<session_id>[^/.]+)"
    deps = {"server": router}
    receivers: dict[str, type[Any]] = {
        "websocket": WebSocket,
        "xhr": XhrPolling,
        "xhr_streaming": XhrStreaming,
        "jsonp": JsonpPolling,
        "eventsource": EventSource,
        "htmlfile": HtmlFile,
    }
    enabled = {name: handler for name, handler in receivers.items() if name not in settings.disabled_transports}
    senders: dict[str, tuple[type[Any], set[str]]] = {
        "xhr_send": (XhrSend, {"xhr", "xhr_streaming", "eventsource", "htmlfile"}),
        "jsonp_send": (JsonpSend, {"jsonp"}),
    }
    routes = [
        URLSpec(base + r"/?", Greeting, deps),
        URLSpec(base + r"/info", Info, deps),
        URLSpec(base + r"/iframe[0-9a-z._-]*\.html", IFrame, deps),
    ]
    routes += [URLSpec(f"{session}/{name}", handler, deps) for name, (handler, users) in senders.items() if users & enabled.keys()]
    routes += [URLSpec(f"{session}/{name}", handler, deps) for name, handler in enabled.items()]
    if "websocket" in enabled:
        routes.append(URLSpec(base + r"/websocket", RawWebSocket, deps))
    return routes
