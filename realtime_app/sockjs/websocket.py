"""The websocket transports: SockJS over websocket, and the raw websocket endpoint
(``<prefix>/websocket``, one message per websocket message)."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from sockjs.tornado.session import ConnectionInfo
from sockjs.tornado.transports import RawWebSocketTransport, WebSocketTransport
from sockjs.tornado.websocket import SockJSWebSocketHandler
from tornado import httputil
from tornado.iostream import IOStream, StreamClosedError

from realtime_app.sockjs.http import SECURITY_HEADERS, connection_info, decoded_messages

if TYPE_CHECKING:
    from realtime_app.sockjs.router import SockJSRouter

log = logging.getLogger(__name__)

# A websocket close frame holds at most 125 bytes: the 2-byte code and the reason.
_CLOSE_REASON_MAX_BYTES = 123


def frame_header(first_byte: int, size: int) -> bytes:
    """An unmasked websocket frame header (RFC 6455 5.2): servers never mask."""
    if size < 126:
        return bytes((first_byte, size))
    if size < 1 << 16:
        return struct.pack("!BBH", first_byte, 126, size)
    return struct.pack("!BBQ", first_byte, 127, size)


class WebSocketFixes(SockJSWebSocketHandler):
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
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def get_conn_info(self) -> ConnectionInfo:
        return connection_info(self.request)

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
        self.send_frame(frame_header(0x82 if binary else 0x81, len(payload)) + payload, len(message))

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


class WebSocket(WebSocketFixes, WebSocketTransport):
    def open(self, session_id: str) -> None:
        super().open(session_id)
        self._release_upgrade_state()

    def on_message(self, message: str | bytes) -> None:
        """Deliver a frame's messages. A malformed frame aborts the connection, as the protocol
        says, logged without a traceback: it is the client's error, not ours."""
        if not message or self.session is None:
            return
        messages = decoded_messages(message)
        if messages is None:
            log.info("SockJS websocket from %s sent a malformed frame", self.request.remote_ip)
            self.abort_connection()
            return
        try:
            self.session.on_messages(messages)
        except Exception:
            log.exception("SockJS on_message failed; closing the connection")
            self.abort_connection()


class RawWebSocket(WebSocketFixes, RawWebSocketTransport):
    def open(self) -> None:
        """The library's, with our session class."""
        self.server.stats.on_conn_opened()
        self.set_nodelay(True)
        self.session = self.server.raw_session_class(self.server.get_connection_class(), self.server)
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
