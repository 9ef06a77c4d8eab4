"""The polling transports (xhr, jsonp) and the two ways clients send (xhr_send, jsonp_send)."""

from __future__ import annotations

import asyncio
import json
import logging

from sockjs.tornado.transports import JSONPTransport, XhrPollingTransport
from sockjs.tornado.transports.pollingbase import PollingTransportBase
from tornado.escape import parse_qs_bytes
from tornado.web import stream_request_body

from realtime_app.sockjs.http import CrossOriginFixes, checked_callback, client_address, decoded_messages
from realtime_app.sockjs.sessions import OTHER_ADDRESS

log = logging.getLogger(__name__)

_INTERNAL_ERROR = (1011, "Internal error")


class _PollingFixes(CrossOriginFixes, PollingTransportBase):
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


class XhrPolling(_PollingFixes, XhrPollingTransport):
    def framed(self, message: str) -> str:
        return message + "\n"


class JsonpPolling(_PollingFixes, JSONPTransport):
    def prepare(self) -> None:
        """Refuse unsafe callback names before the library echoes the name into the script."""
        super().prepare()
        if self.origin_allowed():
            self.callback = checked_callback(self)

    def framed(self, message: str) -> str:
        """``/**/callback("frame");``: the empty comment keeps a response from starting with
        bytes a plugin could take for a Flash file of ours (the Rosetta Flash attack)."""
        return f"/**/{self.callback}({json.dumps(message)});\r\n"


@stream_request_body
class _SendHandler(CrossOriginFixes, PollingTransportBase):
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
            self.write(OTHER_ADDRESS[1] + ".")
            return False
        if not payload:
            self.set_status(500)
            self.write("Payload expected.")
            return False
        messages = decoded_messages(payload)
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


class XhrSend(_SendHandler):
    def post(self, session_id: str) -> None:
        if self.deliver(session_id, bytes(self.payload)):
            self.set_status(204)

    def flush(self, include_footers: bool = False) -> asyncio.Future[None]:
        """Keep ``Content-Type: text/plain`` on the 204, which Tornado strips from bodiless
        responses: the protocol asks for it, as Firefox parses a typeless reply as XML."""
        if self.get_status() == 204:
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
        return super().flush(include_footers)


class JsonpSend(_SendHandler):
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
