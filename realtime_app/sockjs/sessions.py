"""Sessions: counted against their client's address, bound to it, and named after the
transport that opened them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sockjs.tornado import proto
from sockjs.tornado.session import CONNECTING, BaseSession, ConnectionInfo, Session
from sockjs.tornado.transports.rawwebsocket import RawSession

from realtime_app.sockjs.connection import SockJSConnection
from realtime_app.sockjs.http import client_address
from realtime_app.sockjs.settings import OVER_ADDRESS_CAP

if TYPE_CHECKING:
    from realtime_app.sockjs.router import SockJSRouter

log = logging.getLogger(__name__)

OTHER_ADDRESS = (2010, "Session belongs to another client address")
"""Close frame answering a poll for a session from another address than the one that opened it
(2010, as for a second receiving request: this request may not receive from the session)."""


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


class SockJSSession(_AddressCountedSession, Session):
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
            handler.send_pack(proto.disconnect(*OTHER_ADDRESS))
            return False
        opened_as = self.transport_name if self.conn_info is not None else None
        attached = bool(super().set_handler(handler, start_heartbeat))
        if opened_as is not None:
            self.transport_name = opened_as
        return attached


class RawWebSocketSession(_AddressCountedSession, RawSession):
    """The raw websocket's session, counted against its client's address."""
