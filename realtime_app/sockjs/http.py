"""What every HTTP handler of the endpoint shares: security headers, caching, the origin policy
for CORS and framed pages, callback names; and the endpoint's pages (greeting, info, iframe).

Each handler subclasses the library's handler for one URL, behind mixins holding the fixes."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING

from sockjs.tornado.basehandler import BaseHandler, PreflightHandler
from sockjs.tornado.session import ConnectionInfo
from sockjs.tornado.static import GreetingsHandler, IFrameHandler, InfoHandler
from tornado import httputil

if TYPE_CHECKING:
    from realtime_app.sockjs.router import SockJSRouter

# The protocol asks for cacheable iframe pages and CORS preflights, "one year is best".
_CACHE_SECONDS = 365 * 24 * 3600

_CALLBACK_NAME = re.compile(r"[a-zA-Z0-9_.]{1,64}")
"""Names a JSONP/htmlfile response may call: sockjs-client sends ``_jp.a1b2c3``. Anything
wider would let a crafted link run script on our origin."""

_SESSION_COOKIE_VALUE = re.compile(r"[A-Za-z0-9._~+/=-]{1,128}")
_NOT_CACHED = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
"""On every response of the endpoint: no content sniffing (a JSONP or xhr body read as HTML
would run script), no framing, no Referer leaking session URLs."""

IFRAME_PAGE = """<!DOCTYPE html>
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


def client_address(request: httputil.HTTPServerRequest) -> str:
    """The client's address: the application resolves it before routing (behind trusted proxies it
    rewrites ``request.remote_ip``), so it is the peer's address only when no proxy relayed."""
    return request.remote_ip or ""


def checked_callback(handler: BaseHandler) -> str | None:
    """The ``c`` query parameter if it is a safe callback name; otherwise answer the request
    with the protocol's error (500, the text naming the problem) and return None."""
    callback = handler.get_argument("c", None, strip=False)
    if callback and _CALLBACK_NAME.fullmatch(callback):
        return str(callback)
    handler.set_header("Content-Type", "text/plain; charset=UTF-8")
    handler.set_status(500)
    handler.finish('invalid "callback" parameter' if callback else '"callback" parameter required')
    return None


def connection_info(request: httputil.HTTPServerRequest) -> ConnectionInfo:
    """What `SockJSConnection.on_open` learns of the opening request; ``ip`` is `client_address`."""
    return ConnectionInfo(client_address(request), request.cookies, request.arguments, request.headers, request.path)


def decoded_messages(payload: str | bytes) -> list[str] | None:
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


class HandlerFixes(BaseHandler):
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
        return connection_info(self.request)

    def handle_session_cookie(self) -> None:
        """Echo a client's JSESSIONID only when well formed: Tornado refuses to set some values
        (a space, say), which made the library answer 500."""
        if not self.server.settings["jsessionid"]:
            return
        cookie = self.cookies.get("JSESSIONID")
        well_formed = cookie is not None and _SESSION_COOKIE_VALUE.fullmatch(cookie.value)
        self.set_cookie("JSESSIONID", cookie.value if well_formed else "dummy")

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
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


class CrossOriginFixes(HandlerFixes, PreflightHandler):
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


class Greeting(HandlerFixes, GreetingsHandler):
    pass


class Info(CrossOriginFixes, InfoHandler):
    pass


class IFrame(HandlerFixes, IFrameHandler):
    def get(self) -> None:
        """The iframe page loading our sockjs_url. Tornado computes a strong ETag from the body
        and answers a matching If-None-Match with a bare 304."""
        self.enable_cache()
        self.frame_only_where_allowed()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.write(self.server.iframe_page)
