"""How one SockJS endpoint behaves (`SockJSSettings`), and the protocol's names and defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from realtime_app.sockjs.origins import normalized_origin

VENDOR_SOCKJS_URL = "/vendor/sockjs.min.js"
"""Where `vendor_urls` serves sockjs-client, and what the iframe page loads by default."""

SESSION_TRANSPORTS = ("websocket", "xhr", "xhr_streaming", "jsonp", "eventsource", "htmlfile")
"""Transport names as they appear in session URLs, in `SockJSSettings.disabled_transports` and
in `SockJSConnection.transport` (which can also be ``"rawwebsocket"`` for ``<prefix>/websocket``)."""

OVER_ADDRESS_CAP = (4008, "too many connections from this address")
"""How a session over `SockJSSettings.max_sessions_per_address` is closed, right after it opens."""

# Protocol defaults: a session outlives its last request by 5 s, and a heartbeat every 25 s
# keeps proxies with idle timeouts from cutting quiet connections.
DEFAULT_DISCONNECT_DELAY = 5.0
DEFAULT_HEARTBEAT_DELAY = 25.0
# A streaming response is restarted after this many bytes so the browser can free what it holds.
DEFAULT_RESPONSE_LIMIT = 128 * 1024
# A client's batch of messages (sockjs-client sends what queued while a send was in flight).
# Tornado would otherwise buffer up to 100 MB per xhr_send and 10 MiB per websocket message.
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024


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
            if origin != "*" and normalized_origin(origin) is None:
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
