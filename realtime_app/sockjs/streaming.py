"""The streaming transports: xhr_streaming, eventsource, htmlfile."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from sockjs.tornado.transports import EventSourceTransport, HtmlFileTransport, XhrStreamingTransport
from sockjs.tornado.transports.streamingbase import StreamingTransportBase
from tornado.http1connection import HTTP1Connection

from realtime_app.sockjs.http import CrossOriginFixes, checked_callback

if TYPE_CHECKING:
    from realtime_app.sockjs.router import SockJSRouter

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


def _script_safe_json(text: str) -> str:
    """JSON string literal that cannot end an inline ``<script>``: the htmlfile transport puts
    frames inside one, so ``</script>`` in a message must not reach the page as is."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _StreamingFixes(CrossOriginFixes, StreamingTransportBase):
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


class XhrStreaming(_StreamingFixes, XhrStreamingTransport):
    def post(self, session_id: str) -> None:
        super().post(session_id)
        self.attached()


class EventSource(_StreamingFixes, EventSourceTransport):
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


class HtmlFile(_StreamingFixes, _ScriptSafeHtmlFile):
    """htmlfile with the callback name kept as sent (the library stripped ``[\\W_]`` from it,
    so ``_jp.a1b2c3`` named nothing) and checked, and with script-safe frames."""

    def prepare(self) -> None:
        super().prepare()
        self.callback = checked_callback(self) if self.origin_allowed() else None

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
