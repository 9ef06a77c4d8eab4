"""realtime_app.sockjs over real HTTP and websockets, against a server on a free port.

Every test also fails if anything was logged at ERROR or above (access-log lines aside): the
fixes are about failures the library used to log, or worse, hid.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from tornado.httpclient import HTTPClientError
from tornado.ioloop import IOLoop, PeriodicCallback

from realtime_app.sockjs import (
    ConnectionInfo,
    SockJSConnection,
    SockJSRouter,
    SockJSSettings,
    VendorAssetMissingError,
    build_router,
    vendor_urls,
)
from tests.helpers import eventually
from tests.sockjs_wire import OTHER_ADDRESS, WAIT, Peer, RawHttp, ws_close, ws_frames

ROOT = Path(__file__).resolve().parent.parent
SESSION = "/000/s1"
CLOSE_FRAME = 'c[3000,"Go away!"]'
NOT_CACHED = "no-store, no-cache, no-transform, must-revalidate, max-age=0"


class Echo(SockJSConnection):
    def on_message(self, message: str) -> None:
        self.send(message)


class Close(SockJSConnection):
    def on_open(self, info: ConnectionInfo) -> None:
        self.close(3000, "Go away!")


pytestmark = pytest.mark.usefixtures("errors_fail_the_test")


@dataclass
class Served(Peer):
    routers: dict[str, SockJSRouter] = field(default_factory=dict)


@asynccontextmanager
async def serve(**endpoints: tuple[type[SockJSConnection], dict[str, Any]]) -> AsyncIterator[Served]:
    """A server with one SockJS endpoint per keyword (prefix "/name"), plus the vendor route."""
    routers = {name: build_router(connection_class, SockJSSettings(prefix=f"/{name}", **options)) for name, (connection_class, options) in endpoints.items()}
    urls = [url for router in routers.values() for url in router.urls] + vendor_urls()
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application(urls))
    server.add_sockets(sockets)
    served = Served(sockets[0].getsockname()[1], routers=routers)
    try:
        yield served
    finally:
        served.close()
        server.stop()
        await server.close_all_connections()


def echo_and_close(**options: Any) -> dict[str, tuple[type[SockJSConnection], dict[str, Any]]]:
    return {"echo": (Echo, options), "close": (Close, options)}


# Settings and mounting


def test_settings_are_validated() -> None:
    for bad in (
        {"prefix": "realtime"},
        {"prefix": "/realtime/"},
        {"sockjs_url": "javascript:x"},
        {"allowed_origins": ["https://a.example/path"]},
        {"allowed_origins": "https://a.example"},
        {"disabled_transports": ["carrier-pigeon"]},
        {"heartbeat_delay": 0},
    ):
        with pytest.raises(ValueError):
            SockJSSettings(**bad)
    SockJSSettings(allowed_origins=["*", "https://A.example:443", "http://[::1]:8080", "https://b.example/"])


def test_router_needs_the_running_loop() -> None:
    with pytest.raises(RuntimeError, match="running event loop"):
        build_router(Echo, SockJSSettings())


def test_vendor_urls_explain_a_missing_npm_install(tmp_path: Path) -> None:
    with pytest.raises(VendorAssetMissingError, match="npm ci"):
        vendor_urls(tmp_path)


# Static endpoints


async def test_greeting_and_info(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {}), nows=(Echo, {"disabled_transports": ["websocket"]})) as s:
        for path in ("/echo", "/echo/"):
            r = await s.fetch(path)
            assert (r.code, r.body, r.headers["Content-Type"]) == (200, b"Welcome to SockJS!\n", "text/plain; charset=UTF-8")
        for path in ("/echo//", "/echo/a", "/echo/a.html", "/echo/a/a/"):
            assert (await s.fetch(path)).code == 404
        r = await s.fetch("/echo/info")
        info = json.loads(r.body)
        assert (info["websocket"], info["cookie_needed"], info["origins"]) == (True, False, ["*:*"])
        assert r.headers["Content-Type"] == "application/json; charset=UTF-8"
        assert r.headers["Cache-Control"] == NOT_CACHED
        assert "Set-Cookie" not in r.headers and "Access-Control-Allow-Origin" not in r.headers
        assert json.loads((await s.fetch("/nows/info")).body)["websocket"] is False
        assert (await s.fetch("/nows/websocket")).code == 404


async def test_iframe_page_loads_our_client_and_is_cacheable(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {}), open=(Echo, {"allowed_origins": ["*"]})) as s:
        r = await s.fetch("/echo/iframe.html")
        assert r.code == 200 and r.headers["Content-Type"] == "text/html; charset=UTF-8"
        assert b'<script src="/vendor/sockjs.min.js"></script>' in r.body
        assert "public" in r.headers["Cache-Control"] and "max-age=31536000" in r.headers["Cache-Control"]
        assert r.headers["Expires"].endswith(" GMT") and r.headers["ETag"].startswith('"')
        assert "Last-Modified" not in r.headers
        assert r.headers["Content-Security-Policy"] == "frame-ancestors 'self'"
        for variant in ("/echo/iframe-0.1.2.html", "/echo/iframe-a.html?t=1234"):
            assert (await s.fetch(variant)).body == r.body
        for invalid in ("/echo/iframe.htm", "/echo/IFRAME.HTML", "/echo/iframe-/.html"):
            assert (await s.fetch(invalid)).code == 404
        cached = await s.fetch("/echo/iframe.html", **{"If-None-Match": r.headers["ETag"]})
        assert cached.code == 304 and not cached.body and "Content-Type" not in cached.headers
        assert "Content-Security-Policy" not in (await s.fetch("/open/iframe.html")).headers
        script = await s.fetch("/vendor/sockjs.min.js")
        assert script.code == 200 and b"SockJS" in script.body


# Echo on each transport


async def test_websocket_echo_and_transport_count(io_loop: IOLoop) -> None:
    opened: list[str] = []

    class Recording(Echo):
        def on_open(self, info: ConnectionInfo) -> None:
            opened.append(self.transport)

    async with serve(echo=(Recording, {})) as s:
        ws = await s.websocket("/echo" + SESSION + "/websocket")
        assert await ws_frames(ws, 1) == ["o"]
        ws.write_message("")  # empty frames are ignored
        ws.write_message('["a","b"]')
        assert await ws_frames(ws, 2) == ['a["a"]', 'a["b"]']
        assert opened == ["websocket"] and s.routers["echo"].sessions_by_transport() == {"websocket": 1}
        await ws_close(ws)
        raw = await s.websocket("/echo/websocket")
        raw.write_message("plain text\uffff")
        assert await ws_frames(raw, 1) == ["plain text\uffff"]
        await ws_close(raw)
        assert s.routers["echo"].sessions_by_transport() == {}


async def test_xhr_polling_echo(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {})) as s:
        url = "/echo" + SESSION
        r = await s.fetch(url + "/xhr", "POST")
        assert (r.code, r.body, r.headers["Content-Type"]) == (200, b"o\n", "application/javascript; charset=UTF-8")
        assert r.headers["Cache-Control"] == NOT_CACHED
        sent = await s.fetch(url + "/xhr_send", "POST", '["x", "y"]')
        assert (sent.code, sent.body, sent.headers["Content-Type"]) == (204, b"", "text/plain; charset=UTF-8")
        assert (await s.fetch(url + "/xhr", "POST")).body == b'a["x","y"]\n'
        assert (await s.fetch("/echo/000/nosuchsession/xhr_send", "POST", '["x"]')).code == 404
        for bad, error in (
            ("", b"Payload expected."),
            ('["x', b"Broken JSON encoding."),
            ("[1]", b"Broken JSON encoding."),
            ('{"a":"b"}', b"Broken JSON encoding."),
        ):
            r = await s.fetch(url + "/xhr_send", "POST", bad)
            assert (r.code, r.body) == (500, error)


async def test_jsonp_polling_echo(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {})) as s:
        url = "/echo" + SESSION
        r = await s.fetch(url + "/jsonp?c=_jp.a1b2c3")
        assert (r.code, r.body, r.headers["Content-Type"]) == (200, b'/**/_jp.a1b2c3("o");\r\n', "application/javascript; charset=UTF-8")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        sent = await s.fetch(url + "/jsonp_send", "POST", "d=%5B%22x%22%5D", **form)
        assert (sent.code, sent.body) == (200, b"ok")
        assert (await s.fetch(url + "/jsonp_send", "POST", '["%61bc"]', **{"Content-Type": "text/plain"})).body == b"ok"
        assert (await s.fetch(url + "/jsonp?c=_jp.a1b2c3")).body == b'/**/_jp.a1b2c3("a[\\"x\\",\\"%61bc\\"]");\r\n'
        for bad in ("", "d=", "p=p"):
            r = await s.fetch(url + "/jsonp_send", "POST", bad, **form)
            assert (r.code, r.body) == (500, b"Payload expected.")


async def test_xhr_streaming_echo(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {})) as s:
        stream = await RawHttp.open(s.port, "POST", "/echo" + SESSION + "/xhr_streaming")
        assert stream.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in stream.headers
        assert [await stream.chunk(), await stream.chunk()] == ["h" * 2048 + "\n", "o\n"]
        assert (await s.fetch("/echo" + SESSION + "/xhr_send", "POST", '["x"]')).code == 204
        assert await stream.chunk() == 'a["x"]\n'
        stream.close()


async def test_eventsource_echo(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {})) as s:
        stream = await RawHttp.open(s.port, "GET", "/echo" + SESSION + "/eventsource")
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert [await stream.chunk(), await stream.chunk()] == ["\r\n", "data: o\r\n\r\n"]
        await s.fetch("/echo" + SESSION + "/xhr_send", "POST", r'["  \u0000\n"]')
        assert await stream.chunk() == 'data: a["  \\u0000\\n"]\r\n\r\n'
        stream.close()


async def test_htmlfile_echo_keeps_the_callback_and_escapes_script(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {})) as s:
        stream = await RawHttp.open(s.port, "GET", "/echo" + SESSION + "/htmlfile?c=_jp.a1b2c3")
        assert stream.headers["Content-Type"] == "text/html; charset=UTF-8"
        head = await stream.chunk()
        assert "var c = parent._jp.a1b2c3;" in head and len(head) > 1024
        assert await stream.chunk() == '<script>\np("o");\n</script>\r\n'
        await s.fetch("/echo" + SESSION + "/xhr_send", "POST", '["</script><b>&"]')
        frame = await stream.chunk()
        assert frame == '<script>\np("a[\\"\\u003c/script\\u003e\\u003cb\\u003e\\u0026\\"]");\n</script>\r\n'
        stream.close()


async def test_unsafe_callbacks_are_refused(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {})) as s:
        for transport in ("jsonp", "htmlfile"):
            url = f"/echo{SESSION}/{transport}"
            missing = await s.fetch(url)
            assert (missing.code, missing.body) == (500, b'"callback" parameter required')
            for bad in ("alert(1)//", "a%3Cb", "x" * 65, "a%0Ab", "a-b", "%20"):
                r = await s.fetch(f"{url}?c={bad}")
                assert (r.code, r.body, r.headers["Content-Type"]) == (500, b'invalid "callback" parameter', "text/plain; charset=UTF-8"), bad
        assert s.routers["echo"].sessions_by_transport() == {}


async def test_polling_frames_with_non_ascii_text_state_their_length_in_bytes(io_loop: IOLoop) -> None:
    """Packed messages are JSON texts as the application made them, non-ASCII included; the
    library stated their length in characters and the response was cut short."""

    class Packed(SockJSConnection):
        def on_message(self, message: str) -> None:
            self.send_packed(['{"name":"Zoë ✓"}'])

    async with serve(packed=(Packed, {})) as s:
        await s.fetch("/packed/000/p1/xhr", "POST")
        await s.fetch("/packed/000/p1/xhr_send", "POST", '["go"]')
        frame = 'a[{"name":"Zoë ✓"}]'
        r = await s.fetch("/packed/000/p1/xhr", "POST")
        assert (r.code, r.body.decode()) == (200, frame + "\n")
        assert int(r.headers["Content-Length"]) == len(r.body)
        await s.fetch("/packed/000/p2/jsonp?c=cb")
        await s.fetch("/packed/000/p2/jsonp_send", "POST", "d=%5B%22go%22%5D", **{"Content-Type": "application/x-www-form-urlencoded"})
        r = await s.fetch("/packed/000/p2/jsonp?c=cb")
        assert (r.code, r.body.decode()) == (200, f"/**/cb({json.dumps(frame)});\r\n")
        assert int(r.headers["Content-Length"]) == len(r.body)


async def test_send_packed_and_transport_backlog(io_loop: IOLoop) -> None:
    backlogs: list[tuple[int, int]] = []

    class Packed(SockJSConnection):
        def on_message(self, message: str) -> None:
            before = self.transport_backlog()
            self.send_packed(['{"n":1}', '"two"'])
            backlogs.append((before, self.transport_backlog()))

    async with serve(packed=(Packed, {})) as s:
        ws = await s.websocket("/packed" + SESSION + "/websocket")
        ws.write_message('["go"]')
        assert await ws_frames(ws, 2) == ["o", 'a[{"n":1},"two"]']
        await ws_close(ws)
        raw = await s.websocket("/packed/websocket")
        raw.write_message("go")
        assert await ws_frames(raw, 2) == ['{"n":1}', "two"]
        await ws_close(raw)
        await s.fetch("/packed/000/p1/xhr", "POST")
        await s.fetch("/packed/000/p1/xhr_send", "POST", '["go"]')  # no poll waiting: the frame is queued
        assert (await s.fetch("/packed/000/p1/xhr", "POST")).body == b'a[{"n":1},"two"]\n'
    # SockJS websocket: the whole frame, its 2-byte header included; raw websocket: the texts; xhr: the queued text.
    assert backlogs == [(0, 2 + len('a[{"n":1},"two"]')), (0, len('{"n":1}two')), (0, len('{"n":1},"two"'))]


# Closing from on_open, and the close reason


@pytest.mark.parametrize(
    ("transport", "method", "framed"),
    [("xhr", "POST", lambda frame: frame + "\n"), ("jsonp?c=cb", "GET", lambda frame: f"/**/cb({json.dumps(frame)});\r\n")],
)
async def test_close_on_open_polling(io_loop: IOLoop, transport: str, method: str, framed: Callable[[str], str]) -> None:
    async with serve(**echo_and_close()) as s:
        bodies = [(await asyncio.wait_for(s.fetch(f"/close{SESSION}/{transport}", method), WAIT)).body.decode() for _ in range(3)]
        assert bodies == [framed("o"), framed(CLOSE_FRAME), framed(CLOSE_FRAME)]


@pytest.mark.parametrize(
    ("transport", "method", "prelude", "frames"),
    [
        ("xhr_streaming", "POST", "h" * 2048 + "\n", ["o\n", CLOSE_FRAME + "\n"]),
        ("eventsource", "GET", "\r\n", ["data: o\r\n\r\n", f"data: {CLOSE_FRAME}\r\n\r\n"]),
        ("htmlfile?c=cb", "GET", "<!doctype html>", ['<script>\np("o");\n</script>\r\n', f"<script>\np({json.dumps(CLOSE_FRAME)});\n</script>\r\n"]),
    ],
)
async def test_close_on_open_streaming(io_loop: IOLoop, transport: str, method: str, prelude: str, frames: list[str]) -> None:
    async with serve(**echo_and_close()) as s:
        stream = await RawHttp.open(s.port, method, f"/close{SESSION}/{transport}")
        assert (await stream.chunk()).startswith(prelude)
        assert [await stream.chunk() for _ in frames] == frames
        assert await stream.chunk() == ""  # end of the response
        stream.close()


async def test_close_on_open_websocket(io_loop: IOLoop) -> None:
    async with serve(**echo_and_close()) as s:
        ws = await s.websocket("/close" + SESSION + "/websocket")
        assert await ws_frames(ws, 3) == ["o", CLOSE_FRAME, None]
        ws.close()


class Goodbye(SockJSConnection):
    def on_open(self, info: ConnectionInfo) -> None:
        self.send("goodbye")
        self.close(4001, "auth failed")


async def test_messages_sent_before_close_arrive_before_the_close_frame(io_loop: IOLoop) -> None:
    bye, close = 'a["goodbye"]', 'c[4001,"auth failed"]'
    async with serve(bye=(Goodbye, {})) as s:
        polls = [(await s.fetch("/bye/000/p1/xhr", "POST")).body.decode() for _ in range(3)]
        assert polls == ["o\n", bye + "\n", close + "\n"]
        stream = await RawHttp.open(s.port, "POST", "/bye/000/p2/xhr_streaming")
        assert [await stream.chunk() for _ in range(5)] == ["h" * 2048 + "\n", "o\n", bye + "\n", close + "\n", ""]
        stream.close()
        html = await RawHttp.open(s.port, "GET", "/bye/000/p3/htmlfile?c=cb")
        assert [await html.chunk() for _ in range(5)][2:] == [
            f"<script>\np({json.dumps(bye)});\n</script>\r\n",
            f"<script>\np({json.dumps(close)});\n</script>\r\n",
            "",
        ]
        html.close()
        ws = await s.websocket("/bye" + SESSION + "/websocket")
        assert await ws_frames(ws, 4) == ["o", bye, close, None]
        ws.close()


async def test_raw_websocket_closes_with_the_code_and_reason(io_loop: IOLoop) -> None:
    """No SockJS close frame there: the websocket close frame carries them, the reason as
    given and cut to the 123 bytes that frame holds."""
    long_reason = "é" * 100

    class Refuse(SockJSConnection):
        def on_open(self, info: ConnectionInfo) -> None:
            self.close(4001, 'bad "token" é')

    class Chatty(Echo):
        def on_message(self, message: str) -> None:
            self.close(4008, long_reason)

    async with serve(**echo_and_close(), bye=(Goodbye, {}), refuse=(Refuse, {}), chatty=(Chatty, {})) as s:
        for prefix, messages, code, reason in (
            ("close", [], 3000, "Go away!"),
            ("bye", ["goodbye"], 4001, "auth failed"),
            ("refuse", [], 4001, 'bad "token" é'),
        ):
            ws = await s.websocket(f"/{prefix}/websocket")
            assert await ws_frames(ws, len(messages) + 1) == [*messages, None]
            ws.close()
            assert (ws.close_code, ws.close_reason) == (code, reason), prefix
        ws = await s.websocket("/chatty/websocket")
        ws.write_message("go")
        assert await ws_frames(ws, 1) == [None]
        ws.close()
        assert (ws.close_code, ws.close_reason) == (4008, long_reason[:61])


async def test_close_reason_is_escaped(io_loop: IOLoop) -> None:
    class Refuse(SockJSConnection):
        def on_open(self, info: ConnectionInfo) -> None:
            self.close(4001, 'bad "token" é')

    async with serve(refuse=(Refuse, {})) as s:
        await s.fetch("/refuse" + SESSION + "/xhr", "POST")
        frame = (await s.fetch("/refuse" + SESSION + "/xhr", "POST")).body.decode()
        assert frame[0] == "c" and json.loads(frame[1:]) == [4001, 'bad "token" é']


# Origin policy


async def test_websocket_origin_policy(io_loop: IOLoop) -> None:
    endpoints = {"same": (Echo, {}), "listed": (Echo, {"allowed_origins": ["https://app.example/"]}), "any": (Echo, {"allowed_origins": ["*"]})}
    async with serve(**endpoints) as s:
        for prefix, origin, allowed in [
            ("same", "https://evil.example", False),
            ("same", "null", False),
            ("same", f"http://127.0.0.1:{s.port}", True),
            ("listed", "https://evil.example", False),
            ("listed", "https://APP.example:443", True),
            ("any", "https://evil.example", True),
        ]:
            for path in (f"/{prefix}{SESSION}/websocket", f"/{prefix}/websocket"):
                if allowed:
                    await ws_close(await s.websocket(path, Origin=origin))
                else:
                    with pytest.raises(HTTPClientError) as refused:
                        await s.websocket(path, Origin=origin)
                    assert refused.value.code == 403, (path, origin)


async def test_cors_origin_policy(io_loop: IOLoop) -> None:
    async with serve(same=(Echo, {}), listed=(Echo, {"allowed_origins": ["https://app.example"]}), any=(Echo, {"allowed_origins": ["*"]})) as s:
        foreign = {"Origin": "https://evil.example"}
        for path, method in (
            (f"/same{SESSION}/xhr", "POST"),
            ("/same/info", "GET"),
            (f"/same{SESSION}/xhr", "OPTIONS"),
            (f"/listed{SESSION}/eventsource", "GET"),
        ):
            r = await s.fetch(path, method, **foreign)
            assert r.code == 403 and "Access-Control-Allow-Origin" not in r.headers, path
        assert s.routers["same"].sessions_by_transport() == {}

        same = await s.fetch("/same/info", Origin=f"http://127.0.0.1:{s.port}")
        assert same.code == 200 and same.headers["Access-Control-Allow-Origin"] == f"http://127.0.0.1:{s.port}"
        preflight = await s.fetch(f"/listed{SESSION}/xhr_send", "OPTIONS", Origin="https://app.example", **{"Access-Control-Request-Headers": "a, b"})
        assert preflight.code == 204
        assert (preflight.headers["Access-Control-Allow-Origin"], preflight.headers["Access-Control-Allow-Credentials"]) == ("https://app.example", "true")
        assert (preflight.headers["Access-Control-Allow-Methods"], preflight.headers["Access-Control-Allow-Headers"]) == ("OPTIONS, POST", "a, b")
        assert int(preflight.headers["Access-Control-Max-Age"]) > 1_000_000 and "Origin" in preflight.headers["Vary"]

        assert (await s.fetch(f"/any{SESSION}/xhr", "POST", **foreign)).headers["Access-Control-Allow-Origin"] == "https://evil.example"
        # Never "*" with credentials, which browsers refuse: "null" (a file: page, a sandboxed
        # frame) is echoed like any origin; a request without Origin gets "*" alone.
        null = await s.fetch("/any/info", Origin="null")
        assert (null.headers["Access-Control-Allow-Origin"], null.headers["Access-Control-Allow-Credentials"]) == ("null", "true")
        plain = await s.fetch("/any/info")
        assert plain.headers["Access-Control-Allow-Origin"] == "*" and "Access-Control-Allow-Credentials" not in plain.headers
        assert (await s.fetch("/same/info", Origin="null")).code == 403


async def test_jsonp_send_may_be_framed_where_the_origin_policy_allows(io_loop: IOLoop) -> None:
    """sockjs-client posts jsonp_send from a form into a hidden frame of its page."""
    async with serve(same=(Echo, {}), listed=(Echo, {"allowed_origins": ["https://app.example"]})) as s:
        for prefix, frame_options, policy in (("same", "SAMEORIGIN", "frame-ancestors 'self'"),
                                              ("listed", None, "frame-ancestors 'self' https://app.example")):
            await s.fetch(f"/{prefix}{SESSION}/jsonp?c=cb")
            r = await s.fetch(f"/{prefix}{SESSION}/jsonp_send", "POST", "d=%5B%22x%22%5D", **{"Content-Type": "application/x-www-form-urlencoded"})
            assert (r.code, r.body) == (200, b"ok")
            assert (r.headers.get("X-Frame-Options"), r.headers.get("Content-Security-Policy")) == (frame_options, policy), prefix
        assert (await s.fetch(f"/same{SESSION}/xhr_send", "POST", '["x"]')).headers["X-Frame-Options"] == "DENY"


# Sessions and client addresses


class Counting(Echo):
    """Echo that records the sessions the application saw open and close."""

    opened: list[str] = []
    closed: list[str] = []

    def on_open(self, info: ConnectionInfo) -> None:
        self.opened.append(info.ip)

    def on_close(self) -> None:
        self.closed.append(self.transport)


@pytest.fixture
def counting() -> Iterator[type[Counting]]:
    Counting.opened, Counting.closed = [], []
    yield Counting


async def test_a_polling_session_takes_polls_and_sends_only_from_its_client_address(io_loop: IOLoop, counting: type[Counting]) -> None:
    async with serve(echo=(counting, {}), unbound=(Echo, {"bind_to_client_address": False})) as s:
        other = Peer(s.port, OTHER_ADDRESS)
        url = "/echo" + SESSION
        assert (await s.fetch(url + "/xhr", "POST")).body == b"o\n"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for transport, body, headers in (("xhr_send", '["injected"]', {}), ("jsonp_send", "d=%5B%22injected%22%5D", form)):
            r = await other.fetch(f"{url}/{transport}", "POST", body, **headers)
            assert (r.code, r.body) == (403, b"Session belongs to another client address."), transport
        refused_poll = await other.fetch(url + "/xhr", "POST")
        assert refused_poll.body == b'c[2010,"Session belongs to another client address"]\n'
        assert (await s.fetch(url + "/xhr_send", "POST", '["mine"]')).code == 204
        assert (await s.fetch(url + "/xhr", "POST")).body == b'a["mine"]\n'
        assert counting.opened == ["127.0.0.1"] and counting.closed == []

        await s.fetch("/unbound" + SESSION + "/xhr", "POST")
        assert (await other.fetch("/unbound" + SESSION + "/xhr_send", "POST", '["x"]')).code == 204
        assert (await other.fetch("/unbound" + SESSION + "/xhr", "POST")).body == b'a["x"]\n'
        other.close()


async def test_open_sessions_per_address_are_capped(io_loop: IOLoop, counting: type[Counting]) -> None:
    """Over the cap a session opens and closes at once with 4008 on every transport; the
    application never sees it. Closing one makes room again."""
    async with serve(echo=(counting, {"max_sessions_per_address": 2, "disconnect_delay": 0.3})) as s:
        router = s.routers["echo"]
        ws = await s.websocket("/echo/000/w1/websocket")
        assert await ws_frames(ws, 1) == ["o"]
        assert (await s.fetch("/echo/000/x1/xhr", "POST")).body == b"o\n"
        assert router.sessions_of("127.0.0.1") == 2
        refused = 'c[4008,"too many connections from this address"]'
        over = await s.websocket("/echo/000/w2/websocket")
        assert await ws_frames(over, 3) == ["o", refused, None]
        over.close()
        assert [(await s.fetch("/echo/000/x2/xhr", "POST")).body.decode() for _ in range(2)] == ["o\n", refused + "\n"]
        stream = await RawHttp.open(s.port, "POST", "/echo/000/x3/xhr_streaming")
        assert [await stream.chunk() for _ in range(4)][1:] == ["o\n", refused + "\n", ""]
        stream.close()
        raw = await s.websocket("/echo/websocket")
        assert await ws_frames(raw, 1) == [None]
        raw.close()
        assert (raw.close_code, raw.close_reason) == (4008, "too many connections from this address")
        other = Peer(s.port, OTHER_ADDRESS)
        assert (await other.fetch("/echo/000/y1/xhr", "POST")).body == b"o\n"
        other.close()
        assert router.refused_over_address_cap == 4 and counting.opened == ["127.0.0.1", "127.0.0.1", OTHER_ADDRESS]

        await ws_close(ws)
        await eventually(lambda: router.sessions_of("127.0.0.1") == 1, "released by the closed websocket")
        again = await s.websocket("/echo/000/w3/websocket")
        assert await ws_frames(again, 1) == ["o"]
        await ws_close(again)
        await eventually(lambda: router.sessions_of("127.0.0.1") == router.sessions_of(OTHER_ADDRESS) == 0, "all released")
        assert sorted(counting.closed) == ["websocket", "websocket", "xhr", "xhr"]


async def test_disabled_transports_take_their_send_urls_along(io_loop: IOLoop) -> None:
    """A send URL is served while a transport that needs it is: xhr_send for xhr, xhr_streaming,
    eventsource and htmlfile; jsonp_send for jsonp."""
    xhr_only = {"disabled_transports": ["websocket", "xhr_streaming", "eventsource", "htmlfile", "jsonp"]}
    jsonp_only = {"disabled_transports": ["xhr", "xhr_streaming", "eventsource", "htmlfile"]}
    sends = {"xhr_send": ('["x"]', "text/plain"), "jsonp_send": ("d=%5B%22x%22%5D", "application/x-www-form-urlencoded")}
    async with serve(modern=(Echo, {"disabled_transports": ["jsonp", "htmlfile"]}), xhr=(Echo, xhr_only), jsonp=(Echo, jsonp_only)) as s:
        for path in (f"/modern{SESSION}/jsonp?c=cb", f"/modern{SESSION}/htmlfile?c=cb", "/xhr/websocket"):
            assert (await s.fetch(path)).code == 404, path
        for prefix, opening, served in (("modern", "xhr", "xhr_send"), ("xhr", "xhr", "xhr_send"), ("jsonp", "jsonp?c=cb", "jsonp_send")):
            url = f"/{prefix}{SESSION}"
            assert (await s.fetch(f"{url}/{opening}", "POST" if opening == "xhr" else "GET")).code == 200
            for send, (body, kind) in sends.items():
                r = await s.fetch(f"{url}/{send}", "POST", body, **{"Content-Type": kind})
                assert r.code == ({"xhr_send": 204, "jsonp_send": 200}[send] if send == served else 404), (prefix, send)


# HTTP/1.0, heartbeats, cookies, broken input


async def test_http10_streaming_ends_with_the_connection(io_loop: IOLoop) -> None:
    async with serve(**echo_and_close()) as s:
        for session, keep_alive in (("/000/k1", {"Connection": "Keep-Alive"}), ("/000/k2", {})):
            response = await RawHttp.open(s.port, "POST", f"/close{session}/xhr_streaming", "HTTP/1.0", **keep_alive)
            assert response.status == 200
            assert "Transfer-Encoding" not in response.headers and "Content-Length" not in response.headers
            assert await response.until_closed() == "h" * 2048 + "\n" + "o\n" + CLOSE_FRAME + "\n"
        greeting = await RawHttp.open(s.port, "GET", "/echo", "HTTP/1.0", Connection="Keep-Alive")
        assert greeting.headers["Content-Length"] == "19" and "Transfer-Encoding" not in greeting.headers
        greeting.close()


async def test_streaming_transports_send_heartbeats(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {"heartbeat_delay": 0.1})) as s:
        stream = await RawHttp.open(s.port, "POST", "/echo" + SESSION + "/xhr_streaming")
        assert [await stream.chunk() for _ in range(3)] == ["h" * 2048 + "\n", "o\n", "h\n"]
        stream.close()


async def test_jsessionid_cookie(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {"jsessionid": True}), plain=(Echo, {})) as s:
        r = await s.fetch("/echo/000/c1/xhr", "POST")
        assert r.headers["Set-Cookie"] == "JSESSIONID=dummy; Path=/"
        assert (await s.fetch("/echo/000/c2/xhr", "POST", Cookie="JSESSIONID=abc-123")).headers["Set-Cookie"] == "JSESSIONID=abc-123; Path=/"
        odd = await s.fetch("/echo/000/c3/xhr", "POST", Cookie='JSESSIONID="a b"')
        assert (odd.code, odd.headers["Set-Cookie"]) == (200, "JSESSIONID=dummy; Path=/")
        assert "Set-Cookie" not in (await s.fetch("/echo/info")).headers
        assert "Set-Cookie" not in (await s.fetch("/plain/000/c4/xhr", "POST")).headers
        assert json.loads((await s.fetch("/echo/info")).body)["cookie_needed"] is True


async def test_websocket_protocol_errors(io_loop: IOLoop) -> None:
    async with serve(echo=(Echo, {})) as s:
        r = await s.fetch("/echo" + SESSION + "/websocket", "POST")
        assert (r.code, r.body, r.headers.get("Content-Type"), r.headers["Allow"]) == (405, b"", None, "GET")
        r = await s.fetch("/echo" + SESSION + "/websocket")
        assert r.code == 400 and b'Can "Upgrade" only to "WebSocket".' in r.body
        ws = await s.websocket("/echo" + SESSION + "/websocket")
        assert await ws_frames(ws, 1) == ["o"]
        ws.write_message('["a')  # malformed: the server drops the connection
        assert await ws_frames(ws, 1) == [None]
        ws.close()


async def test_websocket_client_gone_while_server_sends(io_loop: IOLoop) -> None:
    closed = asyncio.Event()

    class Flood(SockJSConnection):
        def on_open(self, info: ConnectionInfo) -> None:
            self.ticker = PeriodicCallback(lambda: self.send("x" * 65536), 1)
            self.ticker.start()

        def on_close(self) -> None:
            self.ticker.stop()
            closed.set()

    async with serve(flood=(Flood, {})) as s:
        stream = await RawHttp.open(
            s.port,
            "GET",
            "/flood" + SESSION + "/websocket",
            Upgrade="websocket",
            Connection="Upgrade",
            **{"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"},
        )
        assert stream.status == 101
        await asyncio.wait_for(stream.stream.read_bytes(64 * 1024), WAIT)  # the flood is on
        await asyncio.sleep(0.3)  # not reading: socket buffers fill, the server's writes pend
        assert stream.stream.socket is not None
        stream.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.close()  # reset, mid-flood
        await asyncio.wait_for(closed.wait(), WAIT)
        await asyncio.sleep(0.05)  # writes already queued fail now
        assert s.routers["flood"].sessions_by_transport() == {}


# The test server script


def test_sockjs_test_server_script() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(ROOT / "scripts" / "sockjs-test-server"), "--port", "0", "--log-level", "WARNING"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as server:
        try:
            assert server.stdout is not None
            base = server.stdout.readline().split()[-1]
            assert base.startswith("http://127.0.0.1:")

            def get(path: str, method: str = "GET") -> bytes:
                with urllib.request.urlopen(urllib.request.Request(base + path, data=b"" if method == "POST" else None), timeout=WAIT) as r:
                    return bytes(r.read())

            assert json.loads(get("/echo/info"))["websocket"] is True
            assert json.loads(get("/disabled_websocket_echo/info"))["websocket"] is False
            assert json.loads(get("/cookie_needed_echo/info"))["cookie_needed"] is True
            assert [get("/close/000/s/xhr", "POST"), get("/close/000/s/xhr", "POST")] == [b"o\n", CLOSE_FRAME.encode() + b"\n"]
            assert b"/vendor/sockjs.min.js" in get("/echo/iframe.html") and get("/vendor/sockjs.min.js")
        finally:
            server.terminate()
        assert server.wait(WAIT) == 0
