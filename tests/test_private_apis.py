"""Every private or undocumented API of a dependency the server relies on, in one table, each
checked against the installed version: an upgrade that removes or reshapes one fails here with
the dependency, the attribute and the module of ours that needs it, before it fails anywhere
else in a way that is hard to trace.

Private means a name with a leading underscore, an attribute that the library sets but does not
document, or a method of the library's that we override so that it calls ours (sockjs-tornado
documents only SockJSRouter, SockJSConnection and ConnectionInfo: everything else its handlers
and sessions do is internal). Public APIs used in documented ways are not listed.
"""

from __future__ import annotations

import importlib
import inspect
import re
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pymongo
import pytest
from pymongo.synchronous.command_cursor import CommandCursor

from realtime_app.data.db import Database, cluster_time, received_change

METHOD, ATTRIBUTE, NAME = "method", "attribute", "name"


@dataclass(frozen=True)
class PrivateApi:
    dependency: str
    """The distribution, as pip names it."""
    owner: str
    """``module:Class`` holding the attribute, or ``module`` for a module-level name."""
    attribute: str
    kind: str
    """`METHOD` (callable on the class), `ATTRIBUTE` (set on instances by the owner's code, or
    on the class), `NAME` (a module-level name)."""
    used_in: str
    """Our module that relies on it."""
    params: tuple[str, ...] = ()
    """Parameters of a method that our calls or overrides rely on, in order."""

    @property
    def id(self) -> str:
        return f"{self.owner}.{self.attribute}"


PRIVATE_APIS = [
    # pymongo and motor: taking changes the driver already holds, in the loop turn of the first.
    PrivateApi("motor", "motor.core:AgnosticChangeStream", "delegate", ATTRIBUTE, "realtime_app/data/db.py"),
    PrivateApi("pymongo", "pymongo.synchronous.change_stream:ChangeStream", "_cursor", ATTRIBUTE, "realtime_app/data/db.py"),
    PrivateApi("pymongo", "pymongo.synchronous.command_cursor:CommandCursor", "_has_next", METHOD, "realtime_app/data/db.py"),
    # Tornado: the websocket fast path, releasing upgrade state, HTTP/1.0 streams, the app's router.
    PrivateApi("tornado", "tornado.web:RequestHandler", "_execute", METHOD, "realtime_app/sockjs/websocket.py", ("transforms", "args", "kwargs")),
    PrivateApi("tornado", "tornado.web:RequestHandler", "_headers", ATTRIBUTE, "realtime_app/sockjs/websocket.py"),
    PrivateApi("tornado", "tornado.web:RequestHandler", "_finished", ATTRIBUTE, "realtime_app/sockjs/polling.py"),
    PrivateApi("tornado", "tornado.web:RequestHandler", "ui", ATTRIBUTE, "realtime_app/sockjs/websocket.py"),
    PrivateApi("tornado", "tornado.web", "_HandlerDelegate", NAME, "realtime_app/app.py"),
    PrivateApi("tornado", "tornado.httputil:HTTPServerRequest", "server_connection", ATTRIBUTE, "realtime_app/sockjs/websocket.py"),
    PrivateApi("tornado", "tornado.websocket:WebSocketHandler", "ws_connection", ATTRIBUTE, "realtime_app/sockjs/websocket.py"),
    PrivateApi("tornado", "tornado.websocket:WebSocketProtocol", "stream", ATTRIBUTE, "realtime_app/sockjs/websocket.py"),
    PrivateApi("tornado", "tornado.websocket:WebSocketProtocol", "is_closing", METHOD, "realtime_app/sockjs/websocket.py"),
    PrivateApi("tornado", "tornado.iostream:IOStream", "socket", ATTRIBUTE, "realtime_app/sockjs/websocket.py"),
    PrivateApi("tornado", "tornado.http1connection:HTTP1Connection", "stream", ATTRIBUTE, "realtime_app/sockjs/streaming.py"),
    # sockjs-tornado: the router.
    PrivateApi("sockjs-tornado", "sockjs.tornado.router:SockJSRouter", "__init__", METHOD, "realtime_app/sockjs/router.py",
               ("connection", "prefix", "user_settings", "io_loop")),
    PrivateApi("sockjs-tornado", "sockjs.tornado.router:SockJSRouter", "_session_kls", ATTRIBUTE, "realtime_app/sockjs/router.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.router:SockJSRouter", "settings", ATTRIBUTE, "realtime_app/sockjs/http.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.router:SockJSRouter", "stats", ATTRIBUTE, "realtime_app/sockjs/router.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.router:SockJSRouter", "io_loop", ATTRIBUTE, "realtime_app/sockjs/websocket.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.router:SockJSRouter", "get_session", METHOD, "realtime_app/sockjs/polling.py", ("session_id",)),
    PrivateApi("sockjs-tornado", "sockjs.tornado.router:SockJSRouter", "get_connection_class", METHOD, "realtime_app/sockjs/websocket.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.router:SockJSRouter", "apply_routes", METHOD, "realtime_app/sockjs/router.py", ("routes",)),
    PrivateApi("sockjs-tornado", "sockjs.tornado.stats:StatsCollector", "sess_transports", ATTRIBUTE, "realtime_app/sockjs/router.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.stats:StatsCollector", "on_conn_opened", METHOD, "realtime_app/sockjs/websocket.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.proto", "disconnect", NAME, "realtime_app/sockjs/sessions.py"),
    # sockjs-tornado: sessions.
    PrivateApi("sockjs-tornado", "sockjs.tornado.session", "CONNECTING", NAME, "realtime_app/sockjs/sessions.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "__init__", METHOD, "realtime_app/sockjs/connection.py", ("conn", "server")),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "handler", ATTRIBUTE, "realtime_app/sockjs/connection.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "state", ATTRIBUTE, "realtime_app/sockjs/sessions.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "conn", ATTRIBUTE, "realtime_app/sockjs/sessions.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "conn_info", ATTRIBUTE, "realtime_app/sockjs/sessions.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "transport_name", ATTRIBUTE, "realtime_app/sockjs/sessions.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "send_expects_json", ATTRIBUTE, "realtime_app/sockjs/connection.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "verify_state", METHOD, "realtime_app/sockjs/sessions.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "close", METHOD, "realtime_app/sockjs/sessions.py", ("code", "message")),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "get_close_reason", METHOD, "realtime_app/sockjs/websocket.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:BaseSession", "is_closed", ATTRIBUTE, "realtime_app/sockjs/polling.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:Session", "set_handler", METHOD, "realtime_app/sockjs/sessions.py", ("handler", "start_heartbeat")),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:Session", "send_queue", ATTRIBUTE, "realtime_app/sockjs/connection.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:Session", "send_message", METHOD, "realtime_app/sockjs/connection.py", ("msg",)),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:Session", "send_jsonified", METHOD, "realtime_app/sockjs/connection.py", ("msg",)),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:Session", "flush", METHOD, "realtime_app/sockjs/streaming.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:Session", "start_heartbeat", METHOD, "realtime_app/sockjs/streaming.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.session:Session", "on_messages", METHOD, "realtime_app/sockjs/polling.py", ("msg_list",)),
    PrivateApi("sockjs-tornado", "sockjs.tornado.sessioncontainer:SessionMixin", "session_id", ATTRIBUTE, "realtime_app/sockjs/sessions.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.rawwebsocket", "RawSession", NAME, "realtime_app/sockjs/sessions.py"),
    # sockjs-tornado: handlers, whose hooks we override so that they call ours.
    PrivateApi("sockjs-tornado", "sockjs.tornado.basehandler:BaseHandler", "initialize", METHOD, "realtime_app/sockjs/streaming.py", ("server",)),
    PrivateApi("sockjs-tornado", "sockjs.tornado.basehandler:BaseHandler", "enable_cache", METHOD, "realtime_app/sockjs/http.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.basehandler:BaseHandler", "disable_cache", METHOD, "realtime_app/sockjs/http.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.basehandler:BaseHandler", "handle_session_cookie", METHOD, "realtime_app/sockjs/http.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.basehandler:PreflightHandler", "preflight", METHOD, "realtime_app/sockjs/http.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.base:BaseTransportMixin", "get_conn_info", METHOD, "realtime_app/sockjs/http.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.base:BaseTransportMixin", "name", ATTRIBUTE, "realtime_app/sockjs/polling.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.pollingbase:PollingTransportBase", "_attach_session", METHOD,
               "realtime_app/sockjs/streaming.py", ("session_id", "start_heartbeat")),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.pollingbase:PollingTransportBase", "active", ATTRIBUTE, "realtime_app/sockjs/connection.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.pollingbase:PollingTransportBase", "session", ATTRIBUTE, "realtime_app/sockjs/streaming.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.pollingbase:PollingTransportBase", "send_complete", METHOD, "realtime_app/sockjs/polling.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.streamingbase:StreamingTransportBase", "notify_sent", METHOD,
               "realtime_app/sockjs/streaming.py", ("data_len",)),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.jsonp:JSONPTransport", "callback", ATTRIBUTE, "realtime_app/sockjs/polling.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.transports.rawwebsocket:RawWebSocketTransport", "_detach", METHOD, "realtime_app/sockjs/websocket.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.websocket:SockJSWebSocketHandler", "_execute", METHOD, "realtime_app/sockjs/websocket.py"),
    PrivateApi("sockjs-tornado", "sockjs.tornado.websocket:SockJSWebSocketHandler", "abort_connection", METHOD, "realtime_app/sockjs/websocket.py"),
]


def _assigned(cls: type, attribute: str) -> bool:
    """Whether the class (or a base) has the attribute, or its code sets it on its instances."""
    if hasattr(cls, attribute):
        return True
    assignment = re.compile(rf"\bself\.{re.escape(attribute)}\s*(?::[^=\n]+)?=(?!=)")
    return any(assignment.search(inspect.getsource(base)) for base in cls.__mro__ if base is not object)


def _problem(api: PrivateApi) -> str | None:
    """What is wrong with the installed version, or None."""
    module_name, _, class_name = api.owner.partition(":")
    try:
        owner: Any = importlib.import_module(module_name)
        if class_name:
            owner = getattr(owner, class_name)
    except (ImportError, AttributeError) as exc:
        return f"{api.owner} is gone ({exc})"
    if api.kind == NAME:
        return None if hasattr(owner, api.attribute) else "the name is gone"
    if api.kind == ATTRIBUTE:
        return None if _assigned(owner, api.attribute) else "no longer set"
    method = getattr(owner, api.attribute, None)
    if not callable(method):
        return "the method is gone"
    names = [p.name for p in inspect.signature(method).parameters.values() if p.name != "self"]
    if list(api.params) != names[:len(api.params)]:
        return f"its parameters are now {names}, we pass {list(api.params)}"
    return None


@pytest.mark.parametrize("api", PRIVATE_APIS, ids=lambda api: api.id)
def test_each_private_api_we_rely_on_is_still_there(api: PrivateApi) -> None:
    problem = _problem(api)
    assert problem is None, (f"{api.dependency} {version(api.dependency)}: {api.id} ({api.kind}): {problem}. "
                             f"{api.used_in} relies on it; adapt it to this version, then update the table in {__file__}.")


def test_the_table_fails_when_an_attribute_is_gone() -> None:
    assert _problem(PrivateApi("tornado", "tornado.web:RequestHandler", "_no_such_thing", ATTRIBUTE, "nowhere")) == "no longer set"
    assert _problem(PrivateApi("tornado", "tornado.web:RequestHandler", "_execute", METHOD, "nowhere", ("args",))) is not None
    assert _problem(PrivateApi("tornado", "tornado.gone:Nothing", "x", NAME, "nowhere")) is not None


@pytest.fixture
def database(mongo_uri: str) -> Any:
    db = Database(mongo_uri, f"test_{uuid.uuid4().hex[:12]}")
    yield db
    db.close()
    with pymongo.MongoClient(mongo_uri) as client:
        client.drop_database(db.name)


async def test_received_change_takes_what_the_driver_holds_without_waiting(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one use of pymongo's private `_has_next` (see `received_change`), and its fallback:
    without it, changes still all arrive, one per `try_next`."""
    start = await cluster_time(database)
    await database.collection("things").insert_many([{"n": n} for n in range(4)])
    async with database.db.watch(start_at_operation_time=start, max_await_time_ms=200) as stream:
        first = await stream.try_next()
        while first is None:
            first = await stream.try_next()
        second = received_change(stream)
        assert second is not None, "the driver received the inserts in one batch; they should be taken without waiting"
        with monkeypatch.context() as patched:
            [defining] = [cls for cls in CommandCursor.__mro__ if "_has_next" in vars(cls)]
            patched.delattr(defining, "_has_next")
            assert received_change(stream) is None
        third = await stream.try_next()
        fourth = received_change(stream)
        assert fourth is not None and received_change(stream) is None
    assert [change["fullDocument"]["n"] for change in (first, second, third, fourth)] == [0, 1, 2, 3]
