"""SockJS for realtime-app: the one module that imports sockjs-tornado.

sockjs-tornado 1.0.7 speaks SockJS protocol 0.3.3 and has gaps on Tornado 6. This module keeps
the library as it is and subclasses its handlers, session, connection and router so that they
speak the current protocol (sockjs-protocol's main branch; tests/test_sockjs_conformance.py
ports its suite) and close the gaps:

- the current protocol's answers: ``no-transform`` in every Cache-Control that forbids caching
  (proxies must not compress or buffer streams), JSONP frames behind an empty ``/**/`` comment,
  ``Content-Type: text/event-stream`` as is, the current iframe page, CORS answers that echo the
  request's Origin (``null`` too) with credentials, 500 with the protocol's text for a missing or
  invalid callback;
- htmlfile and JSONP callback names are checked against a strict pattern (XSS) and echoed
  exactly (the library mangled ``_jp.a1b2c3``, which broke iframe-htmlfile);
- polling responses state their length in bytes (the library counted characters, so a frame
  with non-ASCII text overran it and the response was cut);
- a session belongs to the client address that opened it (see `client_address`): polls and
  sends from another address are refused; open sessions per address can be capped;
- the raw websocket closes with the session's code and reason (the library sent neither);
- closing a session from ``on_open`` on a polling transport answers ``o`` and then ``c[...]``
  on the next poll (the library overran Content-Length and the next poll hung);
- HTTP/1.0 streaming responses end by closing the connection, even when the client asked for
  keep-alive (there is no chunked encoding to end them otherwise);
- streaming transports send heartbeats (the library only did for websocket and polling), and
  write messages queued before a close ahead of the close frame (the library wrote it first);
- origins: same-origin plus a configured allow-list, for websockets, CORS and the framed pages
  (the iframe page, htmlfile, jsonp_send);
- a websocket that went away while being written to no longer logs unhandled errors;
- the iframe page loads our own copy of sockjs-client, served by `vendor_urls`.

Mounting, inside the running event loop (the library's router grabs ``IOLoop.current()`` and
starts timers when it is built)::

    async def main() -> None:
        router = build_router(RealtimeConnection, SockJSSettings(prefix="/realtime"))
        app = tornado.web.Application([*api_urls, *router.urls, *vendor_urls()])
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import re
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sockjs.tornado import SockJSConnection as _LibraryConnection
from sockjs.tornado import SockJSRouter as _LibraryRouter
from sockjs.tornado import proto
from sockjs.tornado.basehandler import BaseHandler, PreflightHandler
from sockjs.tornado.session import CONNECTING, BaseSession, ConnectionInfo, Session
from sockjs.tornado.static import GreetingsHandler, IFrameHandler, InfoHandler
from sockjs.tornado.transports import (
    EventSourceTransport,
    HtmlFileTransport,
    JSONPTransport,
    RawWebSocketTransport,
    WebSocketTransport,
    XhrPollingTransport,
    XhrStreamingTransport,
)
from sockjs.tornado.transports.pollingbase import PollingTransportBase
from sockjs.tornado.transports.rawwebsocket import RawSession
from sockjs.tornado.transports.streamingbase import StreamingTransportBase
from sockjs.tornado.websocket import SockJSWebSocketHandler
from tornado import httputil
from tornado.escape import parse_qs_bytes
from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import StaticFileHandler, URLSpec, stream_request_body

from realtime_app.clientaddr import client_address

__all__ = [
    "ConnectionInfo",
    "SESSION_TRANSPORTS",
    "SockJSConnection",
    "SockJSRouter",
    "SockJSSettings",
    "VENDOR_SOCKJS_URL",
    "VendorAssetMissingError",
    "build_router",
    "vendor_urls",
]

log = logging.getLogger(__name__)

VENDOR_SOCKJS_URL = "/vendor/sockjs.min.js"
"""Where `vendor_urls` serves sockjs-client, and what the iframe page loads by default."""

SESSION_TRANSPORTS = ("websocket", "xhr", "xhr_streaming", "jsonp", "eventsource", "htmlfile")
"""Transport names as they appear in session URLs, in `SockJSSettings.disabled_transports` and
in `SockJSConnection.transport` (which can also be ``"rawwebsocket"`` for ``<prefix>/websocket``)."""

OVER_ADDRESS_CAP = (4008, "too many connections from this address")
"""How a session over `SockJSSettings.max_sessions_per_address` is closed, right after it opens."""

_OTHER_ADDRESS = (2010, "Session belongs to another client address")
"""Close frame answering a poll for a session from another address than the one that opened it
(2010, as for a second receiving request: this request may not receive from the session)."""

# Protocol defaults: a session outlives its last request by 5 s, and a heartbeat every 25 s
# keeps proxies with idle timeouts from cutting quiet connections.
DEFAULT_DISCONNECT_DELAY = 5.0
DEFAULT_HEARTBEAT_DELAY = 25.0
# A streaming response is restarted after this many bytes so the browser can free what it holds.
DEFAULT_RESPONSE_LIMIT = 128 * 1024
# A client's batch of messages (sockjs-client sends what queued while a send was in flight).
# Tornado would otherwise buffer up to 100 MB per xhr_send and 10 MiB per websocket message.
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
# The protocol asks for cacheable iframe pages and CORS preflights, "one year is best".
_CACHE_SECONDS = 365 * 24 * 3600

_CALLBACK_NAME = re.compile(r"[a-zA-Z0-9_.]{1,64}")
"""Names a JSONP/htmlfile response may call: sockjs-client sends ``_jp.a1b2c3``. Anything
wider would let a crafted link run script on our origin."""

_SESSION_COOKIE_VALUE = re.compile(r"[A-Za-z0-9._~+/=-]{1,128}")
_NOT_CACHED = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
# A websocket close frame holds at most 125 bytes: the 2-byte code and the reason.
_CLOSE_REASON_MAX_BYTES = 123
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
"""On every response of the endpoint: no content sniffing (a JSONP or xhr body read as HTML
would run script), no framing, no Referer leaking session URLs."""
_INTERNAL_ERROR = (1011, "Internal error")
# Frames up to this size are kept for the rest of the loop turn, for other sockets sending the same.
_SHARED_FRAME_MAX_BYTES = 16 * 1024
# ... and up to this much in all: sockets that each get different frames do not fill memory.
_SHARED_FRAMES_MAX_BYTES = 8 * 1024 * 1024

_IFRAME_PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{sockjs_url}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""
"""The iframe page, word for word as the protocol specifies it, bar the script URL."""

_HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>"""
"""Start of an htmlfile response as the protocol specifies it; padded to more than 1 KiB
because some browsers render nothing of a streamed page before that."""
_HTMLFILE_MIN_HEAD_BYTES = 1025


class VendorAssetMissingError(FileNotFoundError):
    """sockjs-client is not where `vendor_urls` looks: ``npm ci`` was not run."""


@dataclass(frozen=True)
class SockJSSettings:
    """How one SockJS endpoint behaves. Times are in seconds.

    ``allowed_origins`` lists the browser origins (``"https://app.example.com"``) that may use
    the endpoint besides its own; empty means same-origin only, ``"*"`` means any origin.
    """

    prefix: str = "/realtime"
    sockjs_url: str = VENDOR_SOCKJS_URL
    allowed_origins: Sequence[str] = ()
    disconnect_delay: float = DEFAULT_DISCONNECT_DELAY
    heartbeat_delay: float = DEFAULT_HEARTBEAT_DELAY
    response_limit: int = DEFAULT_RESPONSE_LIMIT
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    """Largest payload a client may send at once: an xhr_send or jsonp_send body, or one
    websocket message. Larger ones are refused (413; websocket close 1009) without being held."""
    jsessionid: bool = False
    """Set a JSESSIONID cookie, for load balancers that keep sessions sticky with it."""
    disabled_transports: Sequence[str] = ()
    """Transports not served (names from `SESSION_TRANSPORTS`); a send URL goes with the last
    transport that needs it. jsonp and htmlfile serve only browsers without CORS or streaming
    (Internet Explorer 9 and older), answer GETs with script or HTML around a name taken from
    the URL, and jsonp_send takes form posts from any page: deployments without such browsers
    can disable them."""
    bind_to_client_address: bool = True
    """A polling session belongs to the client address that opened it (`client_address`):
    polls (close frame 2010) and sends (403) from another address are refused."""
    max_sessions_per_address: int = 0
    """Open sessions one client address may hold, all transports together; 0 for no cap. One
    more opens and closes at once with `OVER_ADDRESS_CAP`, its connection never told."""

    def __post_init__(self) -> None:
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError(f"prefix must start with '/' and not end with one: {self.prefix!r}")
        if not self.sockjs_url.startswith(("/", "http://", "https://")):
            raise ValueError(f"sockjs_url must be a path or an http(s) URL: {self.sockjs_url!r}")
        if isinstance(self.allowed_origins, str):
            raise ValueError("allowed_origins must be a list of origins, not one string")
        for origin in self.allowed_origins:
            if origin != "*" and _normalized_origin(origin) is None:
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        unknown = set(self.disabled_transports) - set(SESSION_TRANSPORTS)
        if unknown:
            raise ValueError(f"unknown transports in disabled_transports: {sorted(unknown)}")
        if min(self.disconnect_delay, self.heartbeat_delay) <= 0 or self.response_limit <= 0:
            raise ValueError("disconnect_delay, heartbeat_delay and response_limit must be > 0")
        if self.max_payload_bytes <= 0:
            raise ValueError("max_payload_bytes must be > 0")
        if self.max_sessions_per_address < 0:
            raise ValueError("max_sessions_per_address must be >= 0 (0: no cap)")


class SockJSConnection(_LibraryConnection):
    """One SockJS session, as the application sees it: subclass it and override the hooks.

    To refuse a client, call `close` from `on_open` with a code and a reason.
    """

    def on_open(self, info: ConnectionInfo) -> None:
        """The session is open; ``info`` has the opening request's ip, headers and cookies."""

    def on_message(self, message: str) -> None:
        """One message from the client."""
        raise NotImplementedError

    def on_close(self) -> None:
        """The session is over, whoever ended it; called once."""

    def send(self, message: str) -> None:
        """Queue a message for the client; ignored once the session is closed."""
        super().send(message)

    def close(self, code: int = 3000, reason: str = "Go away!") -> None:
        """Close the session; the client gets ``c[code,"reason"]``, or on the raw websocket a
        close frame with the code and the reason (cut to the 123 bytes such a frame holds).

        The library writes the reason into the SockJS frame without JSON escaping, so it is
        escaped here: a quote or a non-ASCII character would otherwise break the frame.
        """
        self.session.close(code, json.dumps(reason)[1:-1] if self.session.send_expects_json else reason)

    def send_packed(self, messages: list[str]) -> None:
        """Send messages that are already JSON texts as one frame, ``a[m1,m2]``, so a burst
        costs one write and nothing is encoded twice; sockjs-client hands each over parsed.
        The raw websocket endpoint has no framing: there each message is one websocket message,
        a JSON string literal sent as the text it stands for, as sockjs-client would hand it over."""
        if not messages or self.is_closed:
            return
        if self.session.send_expects_json:
            handler = self.session.handler
            if isinstance(handler, _WebSocketFixes) and handler.active and not self.session.send_queue:
                # What the session would do, minus its per-message statistics (unused here), with
                # the frame's bytes shared by every socket that gets the same messages.
                frame = handler.server.frame_of(messages)
                handler.send_frame(frame, len(frame))
            else:
                self.session.send_jsonified(",".join(messages))
        else:
            for message in messages:
                decoded = json.loads(message)
                self.session.send_message(decoded if isinstance(decoded, str) else message)

    def transport_backlog(self) -> int:
        """Bytes handed to this session but not yet written to the socket: messages waiting
        for the next poll or for a streaming write to finish, plus unflushed websocket frames."""
        queued = len(getattr(self.session, "send_queue", "") or "")
        handler = self.session.handler
        return queued + (handler.unsent_bytes() if isinstance(handler, _WebSocketFixes) else 0)

    @property
    def groups_messages(self) -> bool:
        """Whether messages sent together reach the client as one frame; not on the plain
        WebSocket endpoint (``<prefix>/websocket``), where each is a WebSocket message of its own."""
        return bool(self.session.send_expects_json)

    @property
    def transport(self) -> str:
        """Name of the transport this session uses (see `SESSION_TRANSPORTS`); for per-transport
        counts. Available from `on_open` on."""
        return str(self.session.transport_name)


class _OriginPolicy:
    """Which browser origins may use an endpoint: the page's own host, plus an allow-list."""

    def __init__(self, allowed: Iterable[str]) -> None:
        entries = list(allowed)
        self.allows_any = "*" in entries
        normalized = (_normalized_origin(entry) for entry in entries if entry != "*")
        self._allowed = frozenset(origin for origin in normalized if origin is not None)
        self.frame_ancestors = None if self.allows_any else " ".join(["frame-ancestors 'self'", *sorted(self._allowed)])
        """CSP for the pages sockjs-client frames (iframe, htmlfile): they relay for whatever
        page embeds them, so only pages the policy allows may embed them."""
        self.same_origin_only = not self.allows_any and not self._allowed

    def allows(self, origin: str, host: str) -> bool:
        """Same-origin is the Origin's host equal to the Host header, as Tornado judges it."""
        if self.allows_any:
            return True
        normalized = _normalized_origin(origin)
        if normalized is None:
            return False
        return urlsplit(origin).netloc.lower() == host.lower() or normalized in self._allowed


def _normalized_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port (a trailing slash, common
    in configuration, is dropped), or None if ``value`` is not an http(s) origin (``"null"``,
    sent by sandboxed pages and file URLs, is not)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = 80 if parts.scheme == "http" else 443
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default_port) else "")


class _RefusedOverAddressCap(SockJSConnection):
    """Stands in for the application's connection in a session over the per-address cap."""

    def on_open(self, info: ConnectionInfo) -> None:
        self.close(*OVER_ADDRESS_CAP)

    def on_message(self, message: str) -> None:
        """Never called: the session closes as it opens."""


class _AddressCountedSession(BaseSession):
    """A session counts against its client's address from open to close. Over the router's cap
    it opens with `_RefusedOverAddressCap` in place of the application's connection, which is
    never opened (so never closed either)."""

    server: SockJSRouter
    counted_address: str | None = None

    def verify_state(self) -> None:
        if self.state == CONNECTING:
            address = self.conn_info.ip
            if self.server.admit_address(address):
                self.counted_address = address
            else:
                self.conn = _RefusedOverAddressCap(self)
        super().verify_state()

    def close(self, code: int = 3000, message: str = "Go away!") -> None:
        super().close(code, message)
        if self.counted_address is not None:
            self.server.release_address(self.counted_address)
            self.counted_address = None


class _Session(_AddressCountedSession, Session):
    """A session bound to its client's address, that keeps the transport name it was opened
    with whichever transport polls it later.

    The library renamed a session on every attach and counted its close under the latest name:
    a session opened by xhr and then polled by jsonp closed as "jsonp", a count that never went
    up. The KeyError stopped the close half way, so the session stayed in the router for good,
    and a server shutting down with such a session crashed."""

    transport_name: str

    def set_handler(self, handler: Any, start_heartbeat: bool = True) -> bool:
        """Attach a receiving request, unless it comes from another client address (the
        library's own check logged an error for each, and knew only the peer's address)."""
        if self.conn_info is not None and not self.server.belongs_to(self, handler.request):
            log.info("SockJS session %s polled from %s, opened from %s: refused", self.session_id,
                     client_address(handler.request), self.conn_info.ip)
            handler.send_pack(proto.disconnect(*_OTHER_ADDRESS))
            return False
        opened_as = self.transport_name if self.conn_info is not None else None
        attached = bool(super().set_handler(handler, start_heartbeat))
        if opened_as is not None:
            self.transport_name = opened_as
        return attached


class _RawSession(_AddressCountedSession, RawSession):
    """The raw websocket's session, counted against its client's address."""


class SockJSRouter(_LibraryRouter):
    """sockjs-tornado's router with our handlers in its URL table. Build it with `build_router`."""

    def __init__(self, connection_class: type[SockJSConnection], settings: SockJSSettings) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("build the SockJS router inside the running event loop (e.g. in async main())") from None
        super().__init__(
            connection_class,
            settings.prefix,
            {
                "sockjs_url": settings.sockjs_url,
                "disconnect_delay": settings.disconnect_delay,
                "heartbeat_delay": settings.heartbeat_delay,
                "response_limit": settings.response_limit,
                "jsessionid": settings.jsessionid,
                "disabled_transports": list(settings.disabled_transports),
                "verify_ip": False,  # `_Session.set_handler` checks, by `client_address`
            },
            io_loop=IOLoop.current(),
        )
        self._session_kls = _Session
        self.max_payload_bytes = settings.max_payload_bytes
        self.origin_policy = _OriginPolicy(settings.allowed_origins)
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
        self.iframe_page = _IFRAME_PAGE.format(sockjs_url=html.escape(settings.sockjs_url))
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
            frame = _frame_header(0x81, len(payload)) + payload
            if len(payload) <= _SHARED_FRAME_MAX_BYTES and self._frames_bytes < _SHARED_FRAMES_MAX_BYTES:
                self._frames[key] = frame
                self._frames_bytes += len(frame)
                self._end_turn_soon()
        return frame

    def count_sent(self, handler: _WebSocketFixes, size: int) -> None:
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


def build_router(connection_class: type[SockJSConnection], settings: SockJSSettings) -> SockJSRouter:
    """The SockJS endpoint at ``settings.prefix``, serving ``connection_class`` sessions.

    Must be called inside the running event loop (RuntimeError otherwise): the router keeps
    ``IOLoop.current()`` and starts its session-expiry and statistics timers on it.
    """
    return SockJSRouter(connection_class, settings)


def vendor_urls(repo_root: str | os.PathLike[str] | None = None) -> list[URLSpec]:
    """URL spec serving sockjs-client at `VENDOR_SOCKJS_URL` (and its source map) from
    ``node_modules/sockjs-client/dist`` under ``repo_root``, by default this checkout's root.

    Raises `VendorAssetMissingError` if the file is not there.
    """
    root = Path(repo_root) if repo_root is not None else Path(__file__).resolve().parents[2]
    dist = root / "node_modules" / "sockjs-client" / "dist"
    if not (dist / "sockjs.min.js").is_file():
        raise VendorAssetMissingError(f"{dist / 'sockjs.min.js'} not found: run `npm ci` in {root} to install sockjs-client (pinned in package.json)")
    directory, _, filename = VENDOR_SOCKJS_URL.rpartition("/")
    pattern = f"{re.escape(directory)}/({re.escape(filename)}(?:\\.map)?)"
    return [URLSpec(pattern, _VendorFile, {"path": str(dist)})]


class _VendorFile(StaticFileHandler):
    def set_default_headers(self) -> None:
        for name, value in _SECURITY_HEADERS.items():
            self.set_header(name, value)


# Handlers. Each subclasses the library's handler for one URL, behind mixins holding the fixes.


def _checked_callback(handler: BaseHandler) -> str | None:
    """The ``c`` query parameter if it is a safe callback name; otherwise answer the request
    with the protocol's error (500, the text naming the problem) and return None."""
    callback = handler.get_argument("c", None, strip=False)
    if callback and _CALLBACK_NAME.fullmatch(callback):
        return str(callback)
    handler.set_header("Content-Type", "text/plain; charset=UTF-8")
    handler.set_status(500)
    handler.finish('invalid "callback" parameter' if callback else '"callback" parameter required')
    return None


def _connection_info(request: httputil.HTTPServerRequest) -> ConnectionInfo:
    """What `SockJSConnection.on_open` learns of the opening request; ``ip`` is `client_address`."""
    return ConnectionInfo(client_address(request), request.cookies, request.arguments, request.headers, request.path)


def _decoded_messages(payload: str | bytes) -> list[str] | None:
    """Messages in a client payload: a JSON array of strings, or one JSON string; None for
    anything else, so `SockJSConnection.on_message` only ever gets strings. Arrays nested past
    the parser's recursion limit are malformed too, not a crash of the handler."""
    try:
        decoded = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if isinstance(decoded, str):
        return [decoded]
    if isinstance(decoded, list) and all(isinstance(item, str) for item in decoded):
        return decoded
    return None


def _script_safe_json(text: str) -> str:
    """JSON string literal that cannot end an inline ``<script>``: the htmlfile transport puts
    frames inside one, so ``</script>`` in a message must not reach the page as is."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _HandlerFixes(BaseHandler):
    """Fixes for every HTTP handler of the library."""

    server: SockJSRouter

    def enable_cache(self) -> None:
        """Long caching with an HTTP-date Expires (the library writes local time without zone)."""
        self.set_header("Cache-Control", f"max-age={_CACHE_SECONDS}, public")
        self.set_header("Expires", httputil.format_timestamp(time.time() + _CACHE_SECONDS))
        self.set_header("Access-Control-Max-Age", str(_CACHE_SECONDS))

    def disable_cache(self) -> None:
        """No caching, and no transformation: a proxy that compresses or buffers a streaming
        response would hold its frames back."""
        self.set_header("Cache-Control", _NOT_CACHED)

    def get_conn_info(self) -> ConnectionInfo:
        return _connection_info(self.request)

    def handle_session_cookie(self) -> None:
        """Echo a client's JSESSIONID only when well formed: Tornado refuses to set some values
        (a space, say), which made the library answer 500."""
        if not self.server.settings["jsessionid"]:
            return
        cookie = self.cookies.get("JSESSIONID")
        well_formed = cookie is not None and _SESSION_COOKIE_VALUE.fullmatch(cookie.value)
        self.set_cookie("JSESSIONID", cookie.value if well_formed else "dummy")

    def set_default_headers(self) -> None:
        for name, value in _SECURITY_HEADERS.items():
            self.set_header(name, value)

    def frame_only_where_allowed(self) -> None:
        """Pages sockjs-client puts in frames may only be embedded by allowed origins. The CSP
        names them; X-Frame-Options, for browsers without frame-ancestors, can only say
        SAMEORIGIN, so it is dropped when other origins are allowed."""
        policy = self.server.origin_policy
        if policy.frame_ancestors is not None:
            self.set_header("Content-Security-Policy", policy.frame_ancestors)
        if policy.same_origin_only:
            self.set_header("X-Frame-Options", "SAMEORIGIN")
        else:
            self.clear_header("X-Frame-Options")


class _CrossOriginFixes(_HandlerFixes, PreflightHandler):
    """Origin policy for the handlers that speak CORS (the library reflects any Origin, with
    credentials): a request from an origin the policy refuses gets 403."""

    def origin_allowed(self) -> bool:
        origin = self.request.headers.get("Origin")
        if origin is None or self.request.headers.get("Sec-Fetch-Site") == "same-origin":
            return True
        return self.server.origin_policy.allows(origin, self.request.host)

    def check_trusted_origin(self, origin: str) -> bool:
        """Tornado's ``cross_origin_protection``, if the app turns it on, follows our policy."""
        return self.server.origin_policy.allows(origin, self.request.host)

    def prepare(self) -> None:
        super().prepare()
        if not self.origin_allowed():
            self.set_status(403)
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish("Origin not allowed")

    def preflight(self) -> None:
        """CORS headers; origins reaching this point are allowed (see `prepare`). The Origin is
        echoed, ``null`` too (file: pages, sandboxed frames), with credentials so JSESSIONID
        flows: browsers refuse ``*`` with credentials. A request without an Origin is no CORS
        request; where any origin is allowed it gets ``*``, without credentials."""
        self.add_header("Vary", "Origin")
        origin = self.request.headers.get("Origin")
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Credentials", "true")
        elif self.server.origin_policy.allows_any:
            self.set_header("Access-Control-Allow-Origin", "*")
        else:
            return
        requested = self.request.headers.get("Access-Control-Request-Headers")
        if requested:
            self.set_header("Access-Control-Allow-Headers", requested)


class _PollingFixes(_CrossOriginFixes, PollingTransportBase):
    active: bool

    def send_pack(self, message: str, binary: bool = False) -> None:
        """A polling response carries one frame, its Content-Length (in bytes: the library
        counted characters) set when it is written.

        A second frame can only be a close frame or a heartbeat racing the first (messages
        wait for an idle handler); a close frame is served again by the next poll, so it is
        dropped here instead of overrunning Content-Length and leaving the session open.
        """
        if not self.active:
            return
        if binary:
            raise ValueError(f"the {self.name} transport carries text frames only")
        self.active = False
        body = self.framed(message).encode("utf-8")
        self.set_header("Content-Type", "application/javascript; charset=UTF-8")
        self.set_header("Content-Length", len(body))
        self.write(body)
        self.flush().add_done_callback(self.send_complete)

    def framed(self, message: str) -> str:
        """The response body carrying one SockJS frame."""
        raise NotImplementedError


class _StreamingFixes(_CrossOriginFixes, StreamingTransportBase):
    def initialize(self, server: SockJSRouter) -> None:
        super().initialize(server)
        self.response_over = asyncio.Event()

    async def stream_session(self, session_id: str) -> None:
        """Attach to the session, with heartbeats, and keep the response open until it is
        finished (the library's handlers did this with a decorator Tornado has dropped)."""
        if self._attach_session(session_id, False):
            self.attached()
            if self.session is not None:
                self.session.flush()
        else:
            self.finish()
        await self.response_over.wait()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self.response_over.set()

    def send_pack(self, message: str, binary: bool = False) -> None:
        """Write what the session queued before a close frame. A message sent while a write is
        in flight waits in the session's queue, but the library writes the close frame at once:
        the client got ``c[...]`` first and the message (a goodbye, say) never."""
        session = self.session
        if message.startswith("c[") and session is not None and session.send_queue:
            queued, session.send_queue = session.send_queue, ""
            super().send_pack(f"a[{queued}]", binary)
        super().send_pack(message, binary)

    def attached(self) -> None:
        """Start heartbeats once the session is attached (the library never does for streaming
        transports, so proxies with idle timeouts cut quiet sessions)."""
        if self.session is not None:
            self.session.start_heartbeat()

    def on_finish(self) -> None:
        """Let `stream_session` return, and end an HTTP/1.0 response by closing the connection
        once it is written.

        HTTP/1.0 has no chunked encoding, so a body without Content-Length ends only with the
        connection; Tornado keeps it open when the client asked for keep-alive, and the
        client would wait forever.
        """
        super().on_finish()
        self.response_over.set()
        connection = self.request.connection
        if self.request.version == "HTTP/1.0" and isinstance(connection, HTTP1Connection):
            stream = connection.stream
            if not stream.closed():
                stream.write(b"").add_done_callback(lambda _: stream.close())


class _Greeting(_HandlerFixes, GreetingsHandler):
    pass


class _Info(_CrossOriginFixes, InfoHandler):
    pass


class _IFrame(_HandlerFixes, IFrameHandler):
    def get(self) -> None:
        """The iframe page loading our sockjs_url. Tornado computes a strong ETag from the body
        and answers a matching If-None-Match with a bare 304."""
        self.enable_cache()
        self.frame_only_where_allowed()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.write(self.server.iframe_page)


class _XhrPolling(_PollingFixes, XhrPollingTransport):
    def framed(self, message: str) -> str:
        return message + "\n"


class _JsonpPolling(_PollingFixes, JSONPTransport):
    def prepare(self) -> None:
        """Refuse unsafe callback names before the library echoes the name into the script."""
        super().prepare()
        if self.origin_allowed():
            self.callback = _checked_callback(self)

    def framed(self, message: str) -> str:
        """``/**/callback("frame");``: the empty comment keeps a response from starting with
        bytes a plugin could take for a Flash file of ours (the Rosetta Flash attack)."""
        return f"/**/{self.callback}({json.dumps(message)});\r\n"


class _XhrStreaming(_StreamingFixes, XhrStreamingTransport):
    def post(self, session_id: str) -> None:
        super().post(session_id)
        self.attached()


class _EventSource(_StreamingFixes, EventSourceTransport):
    async def get(self, session_id: str) -> None:
        """The library's, with the content type the protocol names (event streams are UTF-8
        by definition) and heartbeats."""
        self.preflight()
        self.handle_session_cookie()
        self.disable_cache()
        self.set_header("Content-Type", "text/event-stream")
        self.write("\r\n")  # a prelude some browsers needed before the first event
        self.flush()
        await self.stream_session(session_id)


class _ScriptSafeHtmlFile(HtmlFileTransport):
    """htmlfile frames that cannot break out of their ``<script>`` (see `_script_safe_json`)."""

    def send_pack(self, message: str, binary: bool = False) -> None:
        if binary:
            raise ValueError("the htmlfile transport carries text frames only")
        self.active = False
        self.notify_sent(len(message))
        self.write(f"<script>\np({_script_safe_json(message)});\n</script>\r\n")
        self.flush().add_done_callback(self.send_complete)


class _HtmlFile(_StreamingFixes, _ScriptSafeHtmlFile):
    """htmlfile with the callback name kept as sent (the library stripped ``[\\W_]`` from it,
    so ``_jp.a1b2c3`` named nothing) and checked, and with script-safe frames."""

    def prepare(self) -> None:
        super().prepare()
        self.callback = _checked_callback(self) if self.origin_allowed() else None

    async def get(self, session_id: str) -> None:
        """Like the library's, with the callback as sent and heartbeats; open until finished."""
        self.handle_session_cookie()
        self.disable_cache()
        self.frame_only_where_allowed()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        head = _HTMLFILE_HEAD.format(callback=self.callback)
        self.write(head.ljust(_HTMLFILE_MIN_HEAD_BYTES) + "\r\n\r\n")
        self.flush()
        await self.stream_session(session_id)


@stream_request_body
class _SendHandler(_CrossOriginFixes, PollingTransportBase):
    """Base of xhr_send and jsonp_send: both deliver a JSON array of strings to a session.

    The body streams in and is kept up to `SockJSSettings.max_payload_bytes`: a larger one is
    413, refused on its Content-Length or counted and dropped as it arrives."""

    def prepare(self) -> None:
        self.payload = bytearray()
        self.payload_size = 0
        super().prepare()
        declared = self.request.headers.get("Content-Length", "")
        if not self._finished and declared.isdigit() and int(declared) > self.server.max_payload_bytes:
            self.refuse_payload()

    def data_received(self, chunk: bytes) -> None:
        self.payload_size += len(chunk)
        if self.payload_size <= self.server.max_payload_bytes:
            self.payload += chunk

    def refuse_payload(self) -> None:
        self.preflight()
        self.set_status(413)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(f"Payload over {self.server.max_payload_bytes} bytes.")

    def deliver(self, session_id: str, payload: bytes) -> bool:
        """Hand the payload's messages to the session, or answer with the protocol's error;
        True when delivered."""
        if self.payload_size > self.server.max_payload_bytes:
            self.refuse_payload()
            return False
        self.preflight()
        self.handle_session_cookie()
        self.disable_cache()
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        session = self.server.get_session(session_id)
        if session is None or session.is_closed:
            self.set_status(404)
            return False
        if not self.server.belongs_to(session, self.request):
            log.info("SockJS session %s sent to from %s, opened from %s: refused", session_id,
                     client_address(self.request), session.conn_info.ip if session.conn_info else None)
            self.set_status(403)
            self.write(_OTHER_ADDRESS[1] + ".")
            return False
        if not payload:
            self.set_status(500)
            self.write("Payload expected.")
            return False
        messages = _decoded_messages(payload)
        if messages is None:
            self.set_status(500)
            self.write("Broken JSON encoding.")
            return False
        try:
            session.on_messages(messages)
        except Exception:
            log.exception("SockJS on_message failed; closing the session")
            session.close(*_INTERNAL_ERROR)
            self.set_status(500)
            self.write("Message handler failed.")
            return False
        return True


class _XhrSend(_SendHandler):
    def post(self, session_id: str) -> None:
        if self.deliver(session_id, bytes(self.payload)):
            self.set_status(204)

    def flush(self, include_footers: bool = False) -> asyncio.Future[None]:
        """Keep ``Content-Type: text/plain`` on the 204, which Tornado strips from bodiless
        responses: the protocol asks for it, as Firefox parses a typeless reply as XML."""
        if self.get_status() == 204:
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
        return super().flush(include_footers)


class _JsonpSend(_SendHandler):
    def post(self, session_id: str) -> None:
        """sockjs-client posts a form with the payload in field ``d``; other clients may post
        the JSON itself. The form targets a hidden frame of the page using the transport, so
        the answer may be framed where the origin policy allows."""
        self.frame_only_where_allowed()
        content_type = self.request.headers.get("Content-Type", "")
        payload = bytes(self.payload)
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            fields = parse_qs_bytes(payload, keep_blank_values=True).get("d")
            payload = fields[0] if fields else b""
        if self.deliver(session_id, payload):
            self.write("ok")


def _frame_header(first_byte: int, size: int) -> bytes:
    """An unmasked websocket frame header (RFC 6455 5.2): servers never mask."""
    if size < 126:
        return bytes((first_byte, size))
    if size < 1 << 16:
        return struct.pack("!BBH", first_byte, 126, size)
    return struct.pack("!BBQ", first_byte, 127, size)


class _WebSocketFixes(SockJSWebSocketHandler):
    """Fixes for both websocket endpoints."""

    server: SockJSRouter
    pending_bytes = 0
    """Size (in characters) of frames written but not yet flushed to the socket, for
    `SockJSConnection.transport_backlog`."""
    sent_this_turn = 0
    """Size of frames sent straight to the socket in loop turn `sent_turn` (see `send_frame`)."""
    sent_turn = -1

    def unsent_bytes(self) -> int:
        return self.pending_bytes + (self.sent_this_turn if self.sent_turn == self.server.turn else 0)

    def set_default_headers(self) -> None:
        for name, value in _SECURITY_HEADERS.items():
            self.set_header(name, value)

    def get_conn_info(self) -> ConnectionInfo:
        return _connection_info(self.request)

    def _execute(self, transforms: list[Any], *args: bytes, **kwargs: bytes) -> Coroutine[Any, Any, None]:
        """A valid upgrade goes straight to Tornado; anything else gets the library's refusal.

        The library checks the upgrade inside a ``gen.coroutine`` whose runner and frame (the
        request headers among its locals) then live as long as the websocket: about 2 KiB for
        each open connection."""
        headers = self.request.headers
        if (self.request.method == "GET" and headers.get("Upgrade", "").lower() == "websocket"
                and "upgrade" in {part.strip().lower() for part in headers.get("Connection", "").split(",")}):
            return super(SockJSWebSocketHandler, self)._execute(transforms, *args, **kwargs)
        return _awaited(super()._execute(transforms, *args, **kwargs))

    def _release_upgrade_state(self) -> None:
        """Once the session is open, let go of what only the HTTP upgrade needed (about 3 KiB
        per connection): the response headers, already sent; the template namespace; the
        request's links to the HTTP connection the websocket has taken over."""
        self._headers = httputil.HTTPHeaders()
        self.ui = None  # as Tornado leaves it after the close
        self.request.connection = None
        self.request.server_connection = None

    @property
    def max_message_size(self) -> int:
        """Tornado closes the websocket (1009) on a larger message before buffering it whole."""
        return self.server.max_payload_bytes

    def check_origin(self, origin: str) -> bool:
        """Our origin policy instead of the library's default of any origin. Tornado asks only
        when the request looks cross-origin and carries an Origin."""
        return self.server.origin_policy.allows(origin, self.request.host)

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> asyncio.Future[None]:
        """The library's 405 for non-GET requests carries a body; the protocol wants none."""
        if self.get_status() == 405:
            self.clear_header("Content-Type")
            chunk = None
        return super().finish(chunk)

    def get_compression_options(self) -> None:
        """No permessage-deflate: `send_pack` writes frames as they are, and compressing each
        subscriber's copy of a change would cost more than sending it."""
        return None

    def send_pack(self, message: str | bytes, binary: bool = False) -> None:
        """Write a frame; if the client is gone, end the session quietly. The library caught
        IOError, but Tornado raises StreamClosedError here, and reports a write that fails later
        through the returned future, which nobody read (an "exception never retrieved").

        The frame goes straight to the connection's stream: Tornado's ``write_message`` wraps
        every write in a new Task, which costs more than the write itself when one change goes
        out to thousands of sockets (without compression the bytes are the same). When the
        stream has nothing queued, the frame goes to the socket itself, sparing the stream's
        buffer and future; what the kernel does not take then queues in the stream as usual."""
        payload = message.encode("utf-8") if isinstance(message, str) else message
        self.send_frame(_frame_header(0x82 if binary else 0x81, len(payload)) + payload, len(message))

    def send_frame(self, frame: bytes, size: int) -> None:
        """Write a complete frame (see `send_pack`); ``size`` is what it counts as backlog."""
        connection = self.ws_connection
        stream = connection.stream if connection is not None and not connection.is_closing() else None
        if stream is None:
            self._client_gone()
            return
        if type(stream) is IOStream and not stream.writing():
            try:
                sent = stream.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._client_gone()
                return
            if sent == len(frame):
                self.server.count_sent(self, size)
                return
            frame = frame[sent:]
        try:
            written = stream.write(frame)
        except StreamClosedError:
            self._client_gone()
            return
        self.pending_bytes += size
        written.add_done_callback(lambda future: self._check_written(future, size))

    def _check_written(self, written: asyncio.Future[None], size: int) -> None:
        self.pending_bytes -= size
        if written.cancelled() or written.exception() is not None:
            self._client_gone()

    def _client_gone(self) -> None:
        """Close the session on the next loop turn; Tornado's own on_close then finds it gone."""
        self.server.io_loop.add_callback(self.on_close)


class _WebSocket(_WebSocketFixes, WebSocketTransport):
    def open(self, session_id: str) -> None:
        super().open(session_id)
        self._release_upgrade_state()

    def on_message(self, message: str | bytes) -> None:
        """Deliver a frame's messages. A malformed frame aborts the connection, as the protocol
        says, logged without a traceback: it is the client's error, not ours."""
        if not message or self.session is None:
            return
        messages = _decoded_messages(message)
        if messages is None:
            log.info("SockJS websocket from %s sent a malformed frame", self.request.remote_ip)
            self.abort_connection()
            return
        try:
            self.session.on_messages(messages)
        except Exception:
            log.exception("SockJS on_message failed; closing the connection")
            self.abort_connection()


class _RawWebSocket(_WebSocketFixes, RawWebSocketTransport):
    def open(self) -> None:
        """The library's, with our session class."""
        self.server.stats.on_conn_opened()
        self.set_nodelay(True)
        self.session = _RawSession(self.server.get_connection_class(), self.server)
        self.session.set_handler(self)
        self.session.verify_state()
        self._release_upgrade_state()

    def session_closed(self) -> None:
        """Close the websocket with the session's code and reason: without SockJS framing the
        close frame is the only place for them (the library sent neither)."""
        code, reason = self.session.get_close_reason() if self.session is not None else (3000, "Go away!")
        self._detach()
        self.close(code, reason.encode("utf-8")[:_CLOSE_REASON_MAX_BYTES].decode("utf-8", "ignore"))


async def _awaited(future: Awaitable[None]) -> None:
    await future


def _routes(router: SockJSRouter, settings: SockJSSettings) -> list[URLSpec]:
    """The protocol's URL scheme under the prefix, mapped to our handlers."""
    base = re.escape(settings.prefix)
    session = base + r"/[^/.]+/(?P<session_id>[^/.]+)"
    deps = {"server": router}
    receivers: dict[str, type[Any]] = {
        "websocket": _WebSocket,
        "xhr": _XhrPolling,
        "xhr_streaming": _XhrStreaming,
        "jsonp": _JsonpPolling,
        "eventsource": _EventSource,
        "htmlfile": _HtmlFile,
    }
    enabled = {name: handler for name, handler in receivers.items() if name not in settings.disabled_transports}
    senders: dict[str, tuple[type[Any], set[str]]] = {
        "xhr_send": (_XhrSend, {"xhr", "xhr_streaming", "eventsource", "htmlfile"}),
        "jsonp_send": (_JsonpSend, {"jsonp"}),
    }
    routes = [
        URLSpec(base + r"/?", _Greeting, deps),
        URLSpec(base + r"/info", _Info, deps),
        URLSpec(base + r"/iframe[0-9a-z._-]*\.html", _IFrame, deps),
    ]
    routes += [URLSpec(f"{session}/{name}", handler, deps) for name, (handler, users) in senders.items() if users & enabled.keys()]
    routes += [URLSpec(f"{session}/{name}", handler, deps) for name, handler in enabled.items()]
    if "websocket" in enabled:
        routes.append(URLSpec(base + r"/websocket", _RawWebSocket, deps))
    return routes
