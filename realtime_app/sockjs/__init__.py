"""SockJS for realtime-app: the one package that imports sockjs-tornado, and it imports nothing
else of the application.

sockjs-tornado 1.0.7 speaks SockJS protocol 0.3.3 and has gaps on Tornado 6. This package keeps
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
- a session belongs to the client address that opened it (``request.remote_ip``, which the
  application resolves behind trusted proxies): polls and sends from another address are refused; open sessions per address can be capped;
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
        router = build_router(EchoConnection, SockJSSettings(prefix="/realtime"))
        app = tornado.web.Application([*api_urls, *router.urls, *vendor_urls()])

The library's internals these modules subclass or read are listed, and checked against the
installed version, in tests/test_private_apis.py.

`build_router` takes a connection class, or any function of the session returning a connection
(`ConnectionFactory`), which is how an application hands its connections their collaborators.

The modules, by concern: `settings` (`SockJSSettings`), `origins` (the origin policy),
`connection` (`SockJSConnection`), `sessions` (address-bound sessions), `router` (the endpoint
and its URL table), `http` (what every HTTP handler shares, and the endpoint's pages), `polling`,
`streaming` and `websocket` (the transports), `vendor` (sockjs-client's file).
"""

from __future__ import annotations

from realtime_app.sockjs.connection import ConnectionFactory, ConnectionInfo, SockJSConnection
from realtime_app.sockjs.router import SockJSRouter, build_router
from realtime_app.sockjs.settings import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    OVER_ADDRESS_CAP,
    SESSION_TRANSPORTS,
    VENDOR_SOCKJS_URL,
    SockJSSettings,
)
from realtime_app.sockjs.vendor import VendorAssetMissingError, vendor_urls

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "OVER_ADDRESS_CAP",
    "SESSION_TRANSPORTS",
    "VENDOR_SOCKJS_URL",
    "ConnectionFactory",
    "ConnectionInfo",
    "SockJSConnection",
    "SockJSRouter",
    "SockJSSettings",
    "VendorAssetMissingError",
    "build_router",
    "vendor_urls",
]
