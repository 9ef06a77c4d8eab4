"""The SockJS protocol's public conformance suite, ported: one test for each of the 68 tests of
``sockjs-protocol.py`` in sockjs/sockjs-protocol (main branch, the current protocol, not 0.3.3),
named ``test_<UpstreamClass>_<upstream_test>`` and checking the same behaviour against the
services of scripts/sockjs-test-server (``/echo``, ``/close``, ``/disabled_websocket_echo``,
``/cookie_needed_echo``), served in this process on a free port.

A test that cannot pass for a reason outside our code is marked ``xfail(strict=True)`` with the
reason. The run ends with a one-line count (see ``pytest_terminal_summary`` in conftest.py); the
README's conformance table lists the results.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.machinery
import importlib.util
import json
import random
import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from tornado.httpclient import HTTPResponse
from tornado.httputil import HTTPHeaders
from tornado.ioloop import IOLoop

from tests.helpers import eventually, no_errors_logged
from tests.sockjs_wire import Peer, RawHttp, ws_close, ws_frames

ROOT = Path(__file__).resolve().parent.parent

UPSTREAM_TESTS = {
    "BaseUrlGreeting": ["greeting", "notFound"],
    "IframePage": ["simpleUrl", "versionedUrl", "queriedUrl", "invalidUrl", "cacheability"],
    "InfoTest": ["basic", "entropy", "options", "options_null_origin", "disabled_websocket"],
    "SessionURLs": ["anyValue", "invalidPaths", "ignoringServerId"],
    "Protocol": ["simpleSession", "closeSession"],
    "WebsocketHttpErrors": ["httpMethod", "invalidConnectionHeader", "invalidMethod"],
    "Websocket": ["transport", "close", "headersSanity", "empty_frame", "reuseSessionId", "haproxy", "broken_json"],
    "XhrPolling": ["options", "transport", "invalid_session", "invalid_json", "content_types", "request_headers_cors",
                   "sending_empty_frame"],
    "XhrStreaming": ["options", "transport", "response_limit"],
    "EventSource": ["transport", "response_limit"],
    "HtmlFile": ["transport", "no_callback", "invalid_callback", "response_limit"],
    "JsonPolling": ["transport", "no_callback", "invalid_callback", "invalid_json", "content_types", "close",
                    "sending_empty_frame"],
    "JsessionidCookie": ["basic", "xhr", "xhr_streaming", "eventsource", "htmlfile", "jsonp"],
    "RawWebsocket": ["transport", "close"],
    "JSONEncoding": ["xhr_server_encodes", "xhr_server_decodes"],
    "HandlingClose": ["close_frame", "close_request", "abort_xhr_streaming", "abort_xhr_polling"],
    "Http10": ["synchronous", "streaming"],
    "Http11": ["synchronous", "streaming"],
}
"""The upstream suite's test classes and their tests, in its order."""

GREETING = "Welcome to SockJS!\n"
CLOSE_FRAME = 'c[3000,"Go away!"]'
ANOTHER_CONNECTION = 'c[2010,"Another connection still open"]'
INTERRUPTED = 'c[1002,"Connection interrupted"]'
NOT_CACHED = "no-store, no-cache, no-transform, must-revalidate, max-age=0"
PRELUDE = "h" * 2048 + "\n"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

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
"""The iframe page the protocol specifies, word for word but for the client script's URL."""

HTMLFILE_HEAD = """<!doctype html>
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

# Characters a server must escape when it sends them (beyond the control characters): zero-width
# and direction marks, line and paragraph separators, invisible operators and specials.
SERVER_ESCAPED = [*range(0x200C, 0x2010), *range(0x2028, 0x2030), *range(0x2060, 0x2070), *range(0xFFF0, 0x10000)]


def _load_test_server() -> ModuleType:
    path = ROOT / "scripts" / "sockjs-test-server"
    loader = importlib.machinery.SourceFileLoader("sockjs_test_server", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


TEST_SERVER = _load_test_server()


@dataclass
class Services(Peer):
    """The test server's services, and a look at their sessions for barriers."""

    routers: list[Any] = field(default_factory=list)

    def session(self, session_url: str) -> Any:
        session_id = session_url.rsplit("/", 1)[1]
        found = [router.get_session(session_id) for router in self.routers]
        return next((session for session in found if session is not None), None)


@pytest.fixture
def sockjs(io_loop: IOLoop) -> Iterator[Services]:
    with no_errors_logged():

        async def start() -> tuple[tornado.httpserver.HTTPServer, Services]:
            app = TEST_SERVER.build_app()
            routers = [rule.target_kwargs["server"] for rule in app.wildcard_router.rules if "server" in rule.target_kwargs]
            sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
            server = tornado.httpserver.HTTPServer(app)
            server.add_sockets(sockets)
            return server, Services(sockets[0].getsockname()[1], routers=list(dict.fromkeys(routers)))

        server, services = io_loop.run_sync(start)
        try:
            yield services
        finally:
            services.close()
            server.stop()
            io_loop.run_sync(server.close_all_connections)


def session_url(service: str = "echo") -> str:
    return f"/{service}/000/{uuid.uuid4()}"


# What many tests check


def content_type(headers: HTTPHeaders) -> str:
    return str(headers.get("Content-Type", "")).replace(" ", "")


def assert_not_cached(headers: HTTPHeaders) -> None:
    assert headers.get("Cache-Control") == NOT_CACHED
    assert "Expires" not in headers and "Last-Modified" not in headers


def assert_cors(headers: HTTPHeaders, origin: str) -> None:
    """The request's origin echoed, with credentials (for JSESSIONID)."""
    assert (headers.get("Access-Control-Allow-Origin"), headers.get("Access-Control-Allow-Credentials")) == (origin, "true")


def assert_no_cookie(headers: HTTPHeaders) -> None:
    assert "Set-Cookie" not in headers


def assert_session_cookie(headers: HTTPHeaders, value: str = "dummy") -> None:
    cookie = [part.strip() for part in headers["Set-Cookie"].split(";")]
    assert cookie[0] == f"JSESSIONID={value}" and cookie[1].lower() == "path=/"


def assert_long_cached(headers: HTTPHeaders) -> None:
    cache_control = headers.get("Cache-Control", "")
    assert "public" in cache_control and re.search(r"max-age=[1-9][0-9]{6}", cache_control), cache_control
    assert headers.get("Expires")


async def assert_preflight(sockjs: Services, path: str, methods: str) -> None:
    """A cacheable CORS preflight answer, for an ordinary origin and for ``null``."""
    for origin in ("test", "null"):
        r = await sockjs.fetch(path, "OPTIONS", **{"Origin": origin, "Access-Control-Request-Method": methods})
        assert r.code in (200, 204) and r.body == b""
        assert_long_cached(r.headers)
        assert int(r.headers["Access-Control-Max-Age"]) > 1_000_000
        allowed = r.headers.get("Access-Control-Allow-Methods", "")
        assert all(method.strip() in allowed for method in methods.split(",")), allowed
        assert_cors(r.headers, origin)


def assert_405(r: HTTPResponse) -> None:
    assert r.code == 405 and r.body == b""
    assert "Content-Type" not in r.headers and r.headers.get("Allow")


def jsonp_frame(callback: str, frame: str) -> bytes:
    return f"/**/{callback}({json.dumps(frame)});\r\n".encode()


def htmlfile_frame(frame: str) -> str:
    return f"<script>\np({json.dumps(frame)});\n</script>\r\n"


async def open_xhr_session(sockjs: Services, url: str) -> None:
    r = await sockjs.fetch(url + "/xhr", "POST")
    assert (r.code, r.body) == (200, b"o\n")


async def xhr_send(sockjs: Services, url: str, payload: str, **headers: str) -> None:
    r = await sockjs.fetch(url + "/xhr_send", "POST", payload, **headers)
    assert (r.code, r.body) == (204, b"")


async def streaming(sockjs: Services, url: str, **headers: str) -> RawHttp:
    """An xhr_streaming response past its prelude."""
    stream = await RawHttp.open(sockjs.port, "POST", url + "/xhr_streaming", **headers)
    assert stream.status == 200 and await stream.chunk() == PRELUDE
    return stream


async def waiting_poll(sockjs: Services, url: str) -> RawHttp:
    """An xhr poll the server holds open (nothing to send yet), once it is attached."""
    poll = await sockjs.raw()
    await poll.send("POST", url + "/xhr")
    await eventually(lambda: sockjs.session(url).handler is not None, "attached to the session")
    return poll


def websocket_accept(key: str) -> str:
    """Sec-WebSocket-Accept for a key (RFC 6455 section 4.2.2)."""
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    return base64.b64encode(digest).decode()


def hixie76_answer(key1: str, key2: str, nonce: bytes) -> bytes:
    """The 16-byte handshake answer of the hixie-76 draft."""

    def part(key: str) -> bytes:
        return struct.pack(">I", int("".join(c for c in key if c.isdigit())) // key.count(" "))

    return hashlib.md5(part(key1) + part(key2) + nonce).digest()


def test_port_covers_all_68_upstream_tests() -> None:
    ported = {name for name in globals() if re.fullmatch(r"test_[A-Z][A-Za-z0-9]*_\w+", name)}
    expected = {f"test_{suite}_{test}" for suite, tests in UPSTREAM_TESTS.items() for test in tests}
    assert len(expected) == 68 and ported == expected, (expected - ported, ported - expected)


# Greeting: /


async def test_BaseUrlGreeting_greeting(sockjs: Services) -> None:
    for path in ("/echo", "/echo/"):
        r = await sockjs.fetch(path)
        assert (r.code, r.body.decode(), content_type(r.headers)) == (200, GREETING, "text/plain;charset=UTF-8")
        assert_no_cookie(r.headers)


async def test_BaseUrlGreeting_notFound(sockjs: Services) -> None:
    for suffix in ("/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"):
        assert (await sockjs.fetch("/echo" + suffix)).code == 404, suffix


# The iframe page: /iframe*.html


async def assert_iframe_page(sockjs: Services, path: str) -> None:
    r = await sockjs.fetch(path)
    assert r.code == 200 and content_type(r.headers) == "text/html;charset=UTF-8", path
    assert_long_cached(r.headers)
    assert r.headers.get("ETag") and "Last-Modified" not in r.headers
    before, after = IFRAME_PAGE.split("{sockjs_url}")
    body = r.body.decode().strip()
    assert body.startswith(before) and body.endswith(after), body
    sockjs_url = body[len(before):-len(after)]
    assert '"' not in sockjs_url and sockjs_url.startswith(("/", "http")), sockjs_url
    assert_no_cookie(r.headers)


async def test_IframePage_simpleUrl(sockjs: Services) -> None:
    await assert_iframe_page(sockjs, "/echo/iframe.html")


async def test_IframePage_versionedUrl(sockjs: Services) -> None:
    for name in ("iframe-a.html", "iframe-.html", "iframe-0.1.2.html", "iframe-0.1.2abc-dirty.2144.html"):
        await assert_iframe_page(sockjs, "/echo/" + name)


async def test_IframePage_queriedUrl(sockjs: Services) -> None:
    for name in ("iframe-a.html?t=1234", "iframe-0.1.2.html?t=123414", "iframe-0.1.2abc-dirty.2144.html?t=qweqweq123"):
        await assert_iframe_page(sockjs, "/echo/" + name)


async def test_IframePage_invalidUrl(sockjs: Services) -> None:
    for name in ("iframe.htm", "iframe", "IFRAME.HTML", "IFRAME", "iframe.HTML", "iframe.xml", "iframe-/.html"):
        assert (await sockjs.fetch("/echo/" + name)).code == 404, name


async def test_IframePage_cacheability(sockjs: Services) -> None:
    first, second = await sockjs.fetch("/echo/iframe.html"), await sockjs.fetch("/echo/iframe.html")
    assert first.headers.get("ETag") and first.headers["ETag"] == second.headers["ETag"]
    cached = await sockjs.fetch("/echo/iframe.html", **{"If-None-Match": first.headers["ETag"]})
    assert cached.code == 304 and cached.body == b"" and "Content-Type" not in cached.headers


# /info


async def test_InfoTest_basic(sockjs: Services) -> None:
    r = await sockjs.fetch("/echo/info", Origin="test")
    assert r.code == 200 and content_type(r.headers) == "application/json;charset=UTF-8"
    assert_no_cookie(r.headers)
    assert_not_cached(r.headers)
    assert_cors(r.headers, "test")
    info = json.loads(r.body)
    assert info["websocket"] is True and info["cookie_needed"] in (True, False) and info["origins"] == ["*:*"]
    assert isinstance(info["entropy"], int)


async def test_InfoTest_entropy(sockjs: Services) -> None:
    first, second = [json.loads((await sockjs.fetch("/echo/info")).body)["entropy"] for _ in range(2)]
    assert isinstance(first, int) and isinstance(second, int) and first != second


async def test_InfoTest_options(sockjs: Services) -> None:
    await assert_preflight(sockjs, "/echo/info", "OPTIONS, GET")


async def test_InfoTest_options_null_origin(sockjs: Services) -> None:
    """Pages from file:// URLs and sandboxed frames send ``Origin: null``: it must be echoed."""
    r = await sockjs.fetch("/echo/info", "OPTIONS", **{"Origin": "null", "Access-Control-Request-Method": "POST"})
    assert r.code in (200, 204) and r.body == b""
    assert r.headers.get("Access-Control-Allow-Origin") == "null"


async def test_InfoTest_disabled_websocket(sockjs: Services) -> None:
    r = await sockjs.fetch("/disabled_websocket_echo/info")
    assert r.code == 200 and json.loads(r.body)["websocket"] is False


# Session URLs: /<server>/<session>/<transport>


async def test_SessionURLs_anyValue(sockjs: Services) -> None:
    """Any server and session id without dots or slashes opens a session."""
    salt = str(random.randint(0, 1 << 30))
    for ids in (f"/a/a{salt}", f"/_/_{salt}", f"/1/{salt}", f"/abcdefgh_i-j%20/abcdefg_i-j%20{salt}"):
        await open_xhr_session(sockjs, "/echo" + ids)


async def test_SessionURLs_invalidPaths(sockjs: Services) -> None:
    for ids in ("//", "/a./a", "/a/a.", "/./.", "/", "///"):
        for method in ("GET", "POST"):
            assert (await sockjs.fetch(f"/echo{ids}/xhr", method)).code == 404, (ids, method)


async def test_SessionURLs_ignoringServerId(sockjs: Services) -> None:
    """Only the session id names a session; the server id is for load balancers."""
    session_id = str(uuid.uuid4())
    await open_xhr_session(sockjs, f"/echo/000/{session_id}")
    await xhr_send(sockjs, f"/echo/000/{session_id}", '["a"]')
    r = await sockjs.fetch(f"/echo/999/{session_id}/xhr", "POST")
    assert (r.code, r.body) == (200, b'a["a"]\n')


# The protocol, on xhr polling


async def test_Protocol_simpleSession(sockjs: Services) -> None:
    url = session_url()
    await open_xhr_session(sockjs, url)
    await xhr_send(sockjs, url, '["a"]')
    r = await sockjs.fetch(url + "/xhr", "POST")
    assert (r.code, r.body) == (200, b'a["a"]\n')
    assert (await sockjs.fetch("/echo/000/bad_session/xhr_send", "POST", '["a"]')).code == 404
    # A session has one receiving request at a time; another one is told so and closed.
    waiting = await waiting_poll(sockjs, url)
    second = await sockjs.fetch(url + "/xhr", "POST")
    assert (second.code, second.body.decode()) == (200, ANOTHER_CONNECTION + "\n")
    waiting.close()


async def test_Protocol_closeSession(sockjs: Services) -> None:
    """A closed session answers every later request with its close frame."""
    url = session_url("close")
    await open_xhr_session(sockjs, url)
    for _ in range(2):
        r = await sockjs.fetch(url + "/xhr", "POST")
        assert (r.code, r.body.decode()) == (200, CLOSE_FRAME + "\n")


# Websocket: /<server>/<session>/websocket


async def test_WebsocketHttpErrors_httpMethod(sockjs: Services) -> None:
    assert (await sockjs.fetch("/echo/0/0/websocket")).code == 400


async def test_WebsocketHttpErrors_invalidConnectionHeader(sockjs: Services) -> None:
    """A proxy that rewrote Connection: the upgrade cannot happen."""
    r = await sockjs.fetch("/echo/0/0/websocket", Upgrade="WebSocket", Connection="close")
    assert r.code == 400


async def test_WebsocketHttpErrors_invalidMethod(sockjs: Services) -> None:
    for headers in ({"Upgrade": "WebSocket", "Connection": "Upgrade"}, {}):
        assert_405(await sockjs.fetch("/echo/0/0/websocket", "POST", **headers))


async def test_Websocket_transport(sockjs: Services) -> None:
    ws = await sockjs.websocket(session_url() + "/websocket")
    assert await ws_frames(ws, 1) == ["o"]
    ws.write_message('["a"]')
    assert await ws_frames(ws, 1) == ['a["a"]']
    await ws_close(ws)


async def test_Websocket_close(sockjs: Services) -> None:
    ws = await sockjs.websocket(session_url("close") + "/websocket")
    assert await ws_frames(ws, 3) == ["o", CLOSE_FRAME, None]
    ws.close()


async def test_Websocket_headersSanity(sockjs: Services) -> None:
    key = base64.b64encode(uuid.uuid4().bytes).decode()
    handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Origin": "http://asd", "Sec-WebSocket-Key": key}
    r = await RawHttp.open(sockjs.port, "GET", session_url() + "/websocket", **handshake)
    assert r.status == 101 and r.headers["Sec-WebSocket-Accept"] == websocket_accept(key)
    assert r.headers["Connection"].lower() == "upgrade" and r.headers["Upgrade"].lower() == "websocket"
    assert "Content-Length" not in r.headers
    r.close()


async def test_Websocket_empty_frame(sockjs: Services) -> None:
    """Empty messages and frames without messages are ignored."""
    ws = await sockjs.websocket(session_url() + "/websocket")
    assert await ws_frames(ws, 1) == ["o"]
    for message in ("", "[]", '["a"]'):
        ws.write_message(message)
    assert await ws_frames(ws, 1) == ['a["a"]']
    await ws_close(ws)


async def test_Websocket_reuseSessionId(sockjs: Services) -> None:
    """A websocket session lives as long as its connection: two may share an id, at once or in turn."""
    url = session_url() + "/websocket"
    first, second = await sockjs.websocket(url), await sockjs.websocket(url)
    assert await ws_frames(first, 1) == ["o"] and await ws_frames(second, 1) == ["o"]
    first.write_message('["a"]')
    second.write_message('["b"]')
    assert await ws_frames(first, 1) == ['a["a"]'] and await ws_frames(second, 1) == ['a["b"]']
    await ws_close(first)
    await ws_close(second)
    again = await sockjs.websocket(url)
    assert await ws_frames(again, 1) == ["o"]
    again.write_message('["a"]')
    assert await ws_frames(again, 1) == ['a["a"]']
    await ws_close(again)


@pytest.mark.xfail(strict=True, reason="hixie-76 (a 2010 draft, before RFC 6455): Tornado implements RFC 6455 only and "
                                       "answers 426 Upgrade Required; no browser in use today speaks the draft")
async def test_Websocket_haproxy(sockjs: Services) -> None:
    """hixie-76 through HAProxy: the server answers the handshake's headers before the client
    sends the 8-byte nonce, then answers the nonce."""
    key1, key2, nonce = "4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00", b"nonce-76"
    url = session_url() + "/websocket"
    r = await RawHttp.connect(sockjs.port)
    await r.send("GET", url, Connection="Upgrade", Upgrade="WebSocket", Origin=sockjs.base,
                 **{"Sec-WebSocket-Key1": key1, "Sec-WebSocket-Key2": key2})
    await r.response()
    assert r.status == 101
    assert r.headers["Sec-WebSocket-Location"] == f"ws://127.0.0.1:{sockjs.port}{url}"
    assert r.headers["Sec-WebSocket-Origin"] == sockjs.base and "Content-Length" not in r.headers
    await r.stream.write(nonce)
    assert (await r.stream.read_bytes(16)) == hixie76_answer(key1, key2, nonce)
    r.close()


async def test_Websocket_broken_json(sockjs: Services) -> None:
    """Malformed JSON ends the connection at once."""
    ws = await sockjs.websocket(session_url() + "/websocket")
    assert await ws_frames(ws, 1) == ["o"]
    ws.write_message('["a')
    assert await ws_frames(ws, 1) == [None]
    ws.close()


# xhr polling: /xhr and /xhr_send


async def test_XhrPolling_options(sockjs: Services) -> None:
    for transport in ("xhr", "xhr_send"):
        await assert_preflight(sockjs, "/echo/abc/abc/" + transport, "OPTIONS, POST")


async def test_XhrPolling_transport(sockjs: Services) -> None:
    url = session_url()
    r = await sockjs.fetch(url + "/xhr", "POST", Origin="test")
    assert (r.code, r.body, content_type(r.headers)) == (200, b"o\n", "application/javascript;charset=UTF-8")
    assert_cors(r.headers, "test")
    assert_not_cached(r.headers)
    # The 204 carries text/plain: Firefox takes a typeless answer for XML and complains.
    r = await sockjs.fetch(url + "/xhr_send", "POST", '["x"]', Origin="test")
    assert (r.code, r.body, content_type(r.headers)) == (204, b"", "text/plain;charset=UTF-8")
    assert_cors(r.headers, "test")
    assert_not_cached(r.headers)
    assert (await sockjs.fetch(url + "/xhr", "POST")).body == b'a["x"]\n'


async def test_XhrPolling_invalid_session(sockjs: Services) -> None:
    assert (await sockjs.fetch(session_url() + "/xhr_send", "POST", '["x"]')).code == 404


async def test_XhrPolling_invalid_json(sockjs: Services) -> None:
    url = session_url()
    await open_xhr_session(sockjs, url)
    for payload, error in (('["x', b"Broken JSON encoding."), ("", b"Payload expected.")):
        r = await sockjs.fetch(url + "/xhr_send", "POST", payload)
        assert r.code == 500 and error in r.body
    await xhr_send(sockjs, url, '["a"]')
    assert (await sockjs.fetch(url + "/xhr", "POST")).body == b'a["a"]\n'


async def test_XhrPolling_content_types(sockjs: Services) -> None:
    url = session_url()
    await open_xhr_session(sockjs, url)
    types = ["text/plain", "T", "application/json", "application/xml", "", "application/json; charset=utf-8",
             "text/xml; charset=utf-8", "text/xml"]
    for kind in types:
        await xhr_send(sockjs, url, '["a"]', **{"Content-Type": kind})
    r = await sockjs.fetch(url + "/xhr", "POST")
    assert r.body.decode() == "a[" + ",".join(['"a"'] * len(types)) + "]\n"


async def test_XhrPolling_request_headers_cors(sockjs: Services) -> None:
    """Requested headers are allowed back, and only when some were requested."""
    for requested, allowed in (("a, b, c", "a, b, c"), ("", None), (None, None)):
        headers = {"Origin": "test", "Access-Control-Request-Method": "POST"}
        if requested is not None:
            headers["Access-Control-Request-Headers"] = requested
        r = await sockjs.fetch(session_url() + "/xhr", "OPTIONS", **headers)
        assert r.code in (200, 204)
        assert_cors(r.headers, "test")
        assert r.headers.get("Access-Control-Allow-Headers") == allowed


async def test_XhrPolling_sending_empty_frame(sockjs: Services) -> None:
    """A frame without messages (a client's heartbeat) is accepted."""
    url = session_url()
    await open_xhr_session(sockjs, url)
    await xhr_send(sockjs, url, "[]")
    await xhr_send(sockjs, url, '["a"]')
    assert (await sockjs.fetch(url + "/xhr", "POST")).body == b'a["a"]\n'


# xhr streaming: /xhr_streaming


async def test_XhrStreaming_options(sockjs: Services) -> None:
    await assert_preflight(sockjs, "/echo/abc/abc/xhr_streaming", "OPTIONS, POST")


async def test_XhrStreaming_transport(sockjs: Services) -> None:
    url = session_url()
    stream = await RawHttp.open(sockjs.port, "POST", url + "/xhr_streaming", Origin="test")
    assert stream.status == 200 and content_type(stream.headers) == "application/javascript;charset=UTF-8"
    assert_cors(stream.headers, "test")
    assert_not_cached(stream.headers)
    assert [await stream.chunk(), await stream.chunk()] == [PRELUDE, "o\n"]
    await xhr_send(sockjs, url, '["x"]')
    assert await stream.chunk() == 'a["x"]\n'
    stream.close()


async def test_XhrStreaming_response_limit(sockjs: Services) -> None:
    """The test server ends a streaming response after 4 KiB, so browsers free what they hold."""
    url = session_url()
    stream = await streaming(sockjs, url)
    assert await stream.chunk() == "o\n"
    message = json.dumps("x" * 128)
    for _ in range(31):
        await xhr_send(sockjs, url, f"[{message}]")
        assert await stream.chunk() == f"a[{message}]\n"
    assert await stream.chunk() == ""
    stream.close()


# EventSource: /eventsource


async def test_EventSource_transport(sockjs: Services) -> None:
    url = session_url()
    stream = await RawHttp.open(sockjs.port, "GET", url + "/eventsource")
    assert stream.status == 200 and content_type(stream.headers) == "text/event-stream"
    assert_not_cached(stream.headers)
    assert [await stream.chunk(), await stream.chunk()] == ["\r\n", "data: o\r\n\r\n"]
    await xhr_send(sockjs, url, '["x"]')
    assert await stream.chunk() == 'data: a["x"]\r\n\r\n'
    # Leading spaces, NUL and line breaks cannot break the event framing: they leave escaped.
    await xhr_send(sockjs, url, r'["  \u0000\n\r "]')
    assert await stream.chunk() == 'data: a["  \\u0000\\n\\r "]\r\n\r\n'
    stream.close()


async def test_EventSource_response_limit(sockjs: Services) -> None:
    url = session_url()
    stream = await RawHttp.open(sockjs.port, "GET", url + "/eventsource")
    assert [await stream.chunk(), await stream.chunk()] == ["\r\n", "data: o\r\n\r\n"]
    message = json.dumps("x" * 4096)
    await xhr_send(sockjs, url, f"[{message}]")
    assert [await stream.chunk(), await stream.chunk()] == [f"data: a[{message}]\r\n\r\n", ""]
    stream.close()


# htmlfile: /htmlfile?c=<callback>


async def test_HtmlFile_transport(sockjs: Services) -> None:
    url = session_url()
    stream = await RawHttp.open(sockjs.port, "GET", url + "/htmlfile?c=%63allback")
    assert stream.status == 200 and content_type(stream.headers) == "text/html;charset=UTF-8"
    assert_not_cached(stream.headers)
    head = await stream.chunk()
    assert head.strip() == HTMLFILE_HEAD.format(callback="callback") and len(head) > 1024
    assert await stream.chunk() == htmlfile_frame("o")
    await xhr_send(sockjs, url, '["x"]')
    assert await stream.chunk() == htmlfile_frame('a["x"]')
    stream.close()


async def assert_missing_callback(sockjs: Services, transport: str) -> None:
    r = await sockjs.fetch(f"/echo/a/a/{transport}")
    assert r.code == 500 and b'"callback" parameter required' in r.body


async def assert_invalid_callbacks(sockjs: Services, transport: str) -> None:
    """Callback names may hold letters, digits, ``_`` and ``.``; anything else is refused."""
    for callback in ("%20", "*", "abc(", "abc%28"):
        r = await sockjs.fetch(f"/echo/a/a/{transport}?c={callback}")
        assert r.code == 500 and b'invalid "callback" parameter' in r.body, callback


async def test_HtmlFile_no_callback(sockjs: Services) -> None:
    await assert_missing_callback(sockjs, "htmlfile")


async def test_HtmlFile_invalid_callback(sockjs: Services) -> None:
    await assert_invalid_callbacks(sockjs, "htmlfile")


async def test_HtmlFile_response_limit(sockjs: Services) -> None:
    url = session_url()
    stream = await RawHttp.open(sockjs.port, "GET", url + "/htmlfile?c=callback")
    assert await stream.chunk() and await stream.chunk() == htmlfile_frame("o")
    message = json.dumps("x" * 4096)
    await xhr_send(sockjs, url, f"[{message}]")
    assert [await stream.chunk(), await stream.chunk()] == [htmlfile_frame(f"a[{message}]"), ""]
    stream.close()


# JSONP polling: /jsonp?c=<callback> and /jsonp_send


async def test_JsonPolling_transport(sockjs: Services) -> None:
    """Frames start with an empty comment, so no response can begin like a Flash file."""
    url = session_url()
    r = await sockjs.fetch(url + "/jsonp?c=%63allback")
    assert (r.code, content_type(r.headers)) == (200, "application/javascript;charset=UTF-8")
    assert_not_cached(r.headers)
    assert r.body == jsonp_frame("callback", "o")
    # Konqueror mishandles 204, so jsonp_send answers "ok".
    r = await sockjs.fetch(url + "/jsonp_send", "POST", "d=%5B%22x%22%5D", **FORM)
    assert (r.code, r.body, content_type(r.headers)) == (200, b"ok", "text/plain;charset=UTF-8")
    assert_not_cached(r.headers)
    r = await sockjs.fetch(url + "/jsonp?c=%63allback")
    assert (r.code, r.body) == (200, jsonp_frame("callback", 'a["x"]'))


async def test_JsonPolling_no_callback(sockjs: Services) -> None:
    await assert_missing_callback(sockjs, "jsonp")


async def test_JsonPolling_invalid_callback(sockjs: Services) -> None:
    await assert_invalid_callbacks(sockjs, "jsonp")


async def test_JsonPolling_invalid_json(sockjs: Services) -> None:
    url = session_url()
    assert (await sockjs.fetch(url + "/jsonp?c=x")).body == jsonp_frame("x", "o")
    r = await sockjs.fetch(url + "/jsonp_send", "POST", "d=%5B%22x", **FORM)
    assert r.code == 500 and b"Broken JSON encoding." in r.body
    for body in ("", "d=", "p=p"):
        r = await sockjs.fetch(url + "/jsonp_send", "POST", body, **FORM)
        assert r.code == 500 and b"Payload expected." in r.body, body
    assert (await sockjs.fetch(url + "/jsonp_send", "POST", "d=%5B%22b%22%5D", **FORM)).body == b"ok"
    r = await sockjs.fetch(url + "/jsonp?c=x")
    assert (r.code, r.body) == (200, jsonp_frame("x", 'a["b"]'))


async def test_JsonPolling_content_types(sockjs: Services) -> None:
    """A form's field ``d``, or the JSON itself."""
    url = session_url()
    assert (await sockjs.fetch(url + "/jsonp?c=x")).body == jsonp_frame("x", "o")
    assert (await sockjs.fetch(url + "/jsonp_send", "POST", "d=%5B%22abc%22%5D", **FORM)).body == b"ok"
    assert (await sockjs.fetch(url + "/jsonp_send", "POST", '["%61bc"]', **{"Content-Type": "text/plain"})).body == b"ok"
    r = await sockjs.fetch(url + "/jsonp?c=x")
    assert (r.code, r.body) == (200, jsonp_frame("x", 'a["abc","%61bc"]'))


async def test_JsonPolling_close(sockjs: Services) -> None:
    url = session_url("close")
    bodies = [(await sockjs.fetch(url + "/jsonp?c=x")).body for _ in range(3)]
    assert bodies == [jsonp_frame("x", "o"), jsonp_frame("x", CLOSE_FRAME), jsonp_frame("x", CLOSE_FRAME)]


async def test_JsonPolling_sending_empty_frame(sockjs: Services) -> None:
    url = session_url()
    assert (await sockjs.fetch(url + "/jsonp?c=x")).body == jsonp_frame("x", "o")
    for form in ("d=%5B%5D", "d=%5B%22x%22%5D"):
        assert (await sockjs.fetch(url + "/jsonp_send", "POST", form, **FORM)).body == b"ok"
    r = await sockjs.fetch(url + "/jsonp?c=x")
    assert (r.code, r.body) == (200, jsonp_frame("x", 'a["x"]'))


# JSESSIONID, for load balancers that keep sessions sticky by that cookie


async def test_JsessionidCookie_basic(sockjs: Services) -> None:
    r = await sockjs.fetch("/cookie_needed_echo/info")
    assert r.code == 200 and json.loads(r.body)["cookie_needed"] is True
    assert_no_cookie(r.headers)


async def test_JsessionidCookie_xhr(sockjs: Services) -> None:
    r = await sockjs.fetch(session_url("cookie_needed_echo") + "/xhr", "POST")
    assert (r.code, r.body) == (200, b"o\n")
    assert_session_cookie(r.headers)
    r = await sockjs.fetch(session_url("cookie_needed_echo") + "/xhr", "POST", Cookie="JSESSIONID=abcdef")
    assert (r.code, r.body) == (200, b"o\n")
    assert_session_cookie(r.headers, "abcdef")


async def test_JsessionidCookie_xhr_streaming(sockjs: Services) -> None:
    stream = await RawHttp.open(sockjs.port, "POST", session_url("cookie_needed_echo") + "/xhr_streaming")
    assert stream.status == 200
    assert_session_cookie(stream.headers)
    stream.close()


async def test_JsessionidCookie_eventsource(sockjs: Services) -> None:
    stream = await RawHttp.open(sockjs.port, "GET", session_url("cookie_needed_echo") + "/eventsource")
    assert stream.status == 200
    assert_session_cookie(stream.headers)
    stream.close()


async def test_JsessionidCookie_htmlfile(sockjs: Services) -> None:
    stream = await RawHttp.open(sockjs.port, "GET", session_url("cookie_needed_echo") + "/htmlfile?c=%63allback")
    assert stream.status == 200
    assert_session_cookie(stream.headers)
    stream.close()


async def test_JsessionidCookie_jsonp(sockjs: Services) -> None:
    url = session_url("cookie_needed_echo")
    r = await sockjs.fetch(url + "/jsonp?c=%63allback")
    assert (r.code, r.body) == (200, jsonp_frame("callback", "o"))
    assert_session_cookie(r.headers)
    r = await sockjs.fetch(url + "/jsonp_send", "POST", "d=%5B%22x%22%5D", **FORM)
    assert (r.code, r.body) == (200, b"ok")
    assert_session_cookie(r.headers)


# The raw websocket: /websocket, no SockJS framing


async def test_RawWebsocket_transport(sockjs: Services) -> None:
    ws = await sockjs.websocket("/echo/websocket")
    ws.write_message("Hello world!\uffff")
    assert await ws_frames(ws, 1) == ["Hello world!\uffff"]
    await ws_close(ws)


async def test_RawWebsocket_close(sockjs: Services) -> None:
    """Without SockJS framing, the close code and reason travel in the websocket close frame."""
    ws = await sockjs.websocket("/close/websocket")
    assert await ws_frames(ws, 1) == [None]
    ws.close()
    assert (ws.close_code, ws.close_reason) == (3000, "Go away!")


# JSON and Unicode: any string a browser sends comes back equal


async def echoed_through_xhr(sockjs: Services, payload: str) -> str:
    """The frame /echo answers a payload with, over a new xhr-polling session."""
    url = session_url()
    await open_xhr_session(sockjs, url)
    await xhr_send(sockjs, url, payload)
    r = await sockjs.fetch(url + "/xhr", "POST")
    assert r.code == 200
    return r.body.decode().strip()


async def test_JSONEncoding_xhr_server_encodes(sockjs: Services) -> None:
    """Characters that browsers or proxies mangle leave the server escaped as \\uXXXX."""
    frame = await echoed_through_xhr(sockjs, '["' + "".join(map(chr, SERVER_ESCAPED)) + '"]')
    assert frame[2:-1] == '"' + "".join(f"\\u{code:04x}" for code in SERVER_ESCAPED) + '"'


async def test_JSONEncoding_xhr_server_decodes(sockjs: Services) -> None:
    """Every character of the Basic Multilingual Plane but surrogates, sent escaped as a client
    does, arrives and comes back as the same string."""
    codes = [code for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF]
    frame = await echoed_through_xhr(sockjs, '["' + "".join(f"\\u{code:04x}" for code in codes) + '"]')
    assert json.loads(frame[2:-1]) == "".join(map(chr, codes))


# Closing


async def test_HandlingClose_close_frame(sockjs: Services) -> None:
    """A session the server closed unlinks its request: a new one gets the close frame, not 2010."""
    url = session_url("close")
    first = await streaming(sockjs, url)
    assert [await first.chunk(), await first.chunk()] == ["o\n", CLOSE_FRAME + "\n"]
    second = await streaming(sockjs, url)
    assert await second.chunk() == CLOSE_FRAME + "\n"
    assert [await first.chunk(), await second.chunk()] == ["", ""]
    first.close()
    second.close()


async def refused_second_receiver(sockjs: Services, url: str) -> tuple[RawHttp, RawHttp]:
    """An xhr_streaming session, and a second receiving request told 2010 and ended."""
    first = await streaming(sockjs, url)
    assert await first.chunk() == "o\n"
    second = await streaming(sockjs, url)
    assert [await second.chunk(), await second.chunk()] == [ANOTHER_CONNECTION + "\n", ""]
    return first, second


async def test_HandlingClose_close_request(sockjs: Services) -> None:
    for request in await refused_second_receiver(sockjs, session_url()):
        request.close()


async def test_HandlingClose_abort_xhr_streaming(sockjs: Services) -> None:
    """A receiving request cut by the network ends its session (or leaves it closed with 1002)."""
    url = session_url()
    first, second = await refused_second_receiver(sockjs, url)
    second.close()
    first.close()
    await eventually(lambda: sockjs.session(url) is None or sockjs.session(url).is_closed, "closed after the abort")
    third = await streaming(sockjs, url)
    assert await third.chunk() in ("o\n", INTERRUPTED + "\n")
    third.close()


async def test_HandlingClose_abort_xhr_polling(sockjs: Services) -> None:
    url = session_url()
    await open_xhr_session(sockjs, url)
    waiting = await waiting_poll(sockjs, url)
    assert (await sockjs.fetch(url + "/xhr", "POST")).body.decode() == ANOTHER_CONNECTION + "\n"
    waiting.close()
    await eventually(lambda: sockjs.session(url) is None or sockjs.session(url).is_closed, "closed after the abort")
    assert (await sockjs.fetch(url + "/xhr", "POST")).body.decode() in ("o\n", INTERRUPTED + "\n")


# HTTP/1.0 and HTTP/1.1 framing of responses


async def test_Http10_synchronous(sockjs: Services) -> None:
    """HTTP/1.0 has no chunked encoding: Content-Length (and maybe keep-alive), or a close."""
    conn = await sockjs.raw()
    await conn.send("GET", "/echo", "HTTP/1.0", Connection="Keep-Alive")
    await conn.response()
    assert conn.status == 200 and conn.version in ("HTTP/1.0", "HTTP/1.1")
    assert "Transfer-Encoding" not in conn.headers
    if "Content-Length" not in conn.headers:
        assert conn.headers["Connection"].lower() == "close" and await conn.until_closed() == GREETING
        return
    assert int(conn.headers["Content-Length"]) == len(GREETING) and await conn.read(len(GREETING)) == GREETING
    connection = conn.headers.get("Connection", "").lower()
    if connection in ("close", ""):
        assert await conn.is_closed_by_server()
    else:
        assert connection == "keep-alive"
        await conn.send("GET", "/echo", "HTTP/1.0", Connection="Keep-Alive")
        assert (await conn.response()).status == 200
    conn.close()


async def test_Http10_streaming(sockjs: Services) -> None:
    """Without chunked encoding and with no length known, a stream ends with the connection."""
    conn = await sockjs.raw()
    await conn.send("POST", session_url("close") + "/xhr_streaming", "HTTP/1.0", Connection="Keep-Alive")
    await conn.response()
    assert conn.status == 200 and "Transfer-Encoding" not in conn.headers and "Content-Length" not in conn.headers
    assert (await conn.read(len(PRELUDE)))[0] == "h"
    assert await conn.read(2) == "o\n" and await conn.read(len(CLOSE_FRAME) + 1) == CLOSE_FRAME + "\n"
    assert await conn.is_closed_by_server()


async def test_Http11_synchronous(sockjs: Services) -> None:
    conn = await sockjs.raw()
    await conn.send("GET", "/echo", "HTTP/1.1", Connection="Keep-Alive")
    await conn.response()
    assert conn.headers.get("Connection", "").lower() in ("keep-alive", ""), "keep-alive is HTTP/1.1's default"
    if "Content-Length" in conn.headers:
        assert int(conn.headers["Content-Length"]) == len(GREETING) and "Transfer-Encoding" not in conn.headers
        assert await conn.read(len(GREETING)) == GREETING
    else:
        assert conn.headers["Transfer-Encoding"].lower() == "chunked"
        assert [await conn.chunk(), await conn.chunk()] == [GREETING, ""]
    await conn.send("GET", "/echo", "HTTP/1.1", Connection="Keep-Alive")
    assert (await conn.response()).status == 200
    conn.close()


async def test_Http11_streaming(sockjs: Services) -> None:
    conn = await RawHttp.open(sockjs.port, "POST", session_url("close") + "/xhr_streaming", Connection="Keep-Alive")
    assert conn.status == 200 and conn.headers["Transfer-Encoding"].lower() == "chunked"
    assert "Content-Length" not in conn.headers
    assert (await conn.chunk())[0] == "h"
    assert [await conn.chunk(), await conn.chunk(), await conn.chunk()] == ["o\n", CLOSE_FRAME + "\n", ""]
    conn.close()
