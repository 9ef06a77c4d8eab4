"""The application's side of a session: subclass `SockJSConnection` and override its hooks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sockjs.tornado import SockJSConnection as _LibraryConnection
from sockjs.tornado.session import ConnectionInfo

from realtime_app.sockjs.websocket import WebSocketFixes


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
            if isinstance(handler, WebSocketFixes) and handler.active and not self.session.send_queue:
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
        return queued + (handler.unsent_bytes() if isinstance(handler, WebSocketFixes) else 0)

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


ConnectionFactory = Callable[[Any], SockJSConnection]
"""What the router calls with each new session to get the application's connection for it: a
`SockJSConnection` subclass, or a function binding one to what it needs (a `functools.partial`)."""
