"""Start-up and shutdown in one place: MongoDB (embedded or configured), services, HTTP."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tornado import httpserver, httputil, web

import handlers.auth
import handlers.documents
import handlers.meta
import handlers.static
import handlers.stats
from handlers.base import NotFoundHandler, request_logger
from realtime_app import demo
from realtime_app.auth.loginlimits import LoginLimiter, limits_from
from realtime_app.auth.service import AuthService
from realtime_app.auth.sessions import Sessions
from realtime_app.auth.tokens import TokenService
from realtime_app.auth.users import UserStore
from realtime_app.clientaddr import TrustedProxies
from realtime_app.config import Settings
from realtime_app.context import Context
from realtime_app.data.db import ConfigurationError, Database, describe
from realtime_app.data.embedded_mongo import EmbeddedMongo, find_mongod
from realtime_app.data.resources import Resources, default_resources
from realtime_app.data.store import DocumentStore
from realtime_app.live.service import Realtime
from realtime_app.readiness import NotReady
from realtime_app.sockjs import vendor_urls
from realtime_app.stats import Stats

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = REPO_ROOT / "static"
# How long start-up waits for a configured MongoDB before giving up with a clear message.
MONGO_CONNECT_TIMEOUT_S = 15.0
# Slow clients may not hold a connection for Tornado's default hour: a keep-alive connection
# idle this long, or a request body still arriving after this long, is closed.
HTTP_IDLE_TIMEOUT_S = 120.0
HTTP_BODY_TIMEOUT_S = 60.0
# Browsers that saw this over HTTPS keep to HTTPS for a year. No includeSubDomains: other hosts
# under the same domain are not ours to speak for.
STRICT_TRANSPORT_SECURITY = "max-age=31536000"


# Generation-0 collections happen every this many container allocations (CPython's default is 700).
# A change fanned out to thousands of subscribers allocates tens of thousands of short-lived
# objects; at the default the collector runs dozens of times per change and its older
# generations, which hold every connection's state, get walked often enough to stall the loop
# for hundreds of milliseconds.
GC_GEN0_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Once, after start-up: move what start-up built (modules, app, settings) out of the
    collector's sight for good, and let generation 0 grow larger before it is collected."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class StartupError(RuntimeError):
    """Start-up cannot go on; the message tells the operator what to fix."""


class ResponseHeaders(web.OutputTransform):
    """What every response gets, whichever handler wrote it (API, static, SockJS): no Server
    header, which named Tornado's version, and Strict-Transport-Security when the client came
    over HTTPS, directly or through a TLS proxy (`behind_tls_proxy`)."""

    def __init__(self, request: httputil.HTTPServerRequest, behind_tls_proxy: bool = False):
        super().__init__(request)
        self.https = behind_tls_proxy or request.protocol == "https"

    def transform_first_chunk(self, status_code: int, headers: httputil.HTTPHeaders, chunk: bytes,
                              finishing: bool) -> tuple[int, httputil.HTTPHeaders, bytes]:
        headers.pop("Server", None)
        if self.https:
            headers["Strict-Transport-Security"] = STRICT_TRANSPORT_SECURITY
        return status_code, headers, chunk


class Application(web.Application):
    """Tornado's application, which first finds the client's address behind trusted proxies."""

    def __init__(self, *args: Any, proxies: TrustedProxies, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.proxies = proxies

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> web._HandlerDelegate:
        self.proxies.resolve(request)
        return super().find_handler(request, **kwargs)


async def start_or_undo(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
    """`start`; if it fails part way, `stop` (which must cope with a half start), then raise."""
    try:
        await start()
    except BaseException:
        await stop()
        raise


def make_app(context: Context, realtime_urls: list[Any], stats: Stats) -> web.Application:
    settings = context.settings
    urls: list[Any] = [
        *realtime_urls,
        *vendor_urls(REPO_ROOT),
        *handlers.meta.urls(context),
        *handlers.stats.urls(context, stats),
        *handlers.auth.urls(context),
        *handlers.documents.urls(context),
    ]
    return Application(
        [
            *handlers.static.urls(STATIC_DIR),
            *urls,
        ],
        proxies=TrustedProxies(settings.proxies, settings.proxy_header),
        transforms=[functools.partial(ResponseHeaders, behind_tls_proxy=settings.behind_tls_proxy)],
        default_handler_class=NotFoundHandler,
        default_handler_args={"context": context},
        log_function=request_logger(stats),
    )


def load_resources(settings: Settings) -> Resources:
    return Resources.from_file(settings.resources_file) if settings.resources_file else default_resources()


class Server:
    """One process: owns the embedded mongod (if any), the database client and the HTTP server."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.embedded: EmbeddedMongo | None = None
        self.db: Database | None = None
        self.http: httpserver.HTTPServer | None = None
        self.context: Context | None = None
        self.realtime: Realtime | None = None
        self.sessions: Sessions | None = None
        self.stats: Stats | None = None
        self.port = settings.port

    async def start(self) -> None:
        """Bring everything up; on any failure, tear down what already started and raise."""
        await start_or_undo(self._start, self.stop)

    async def start_database_only(self) -> None:
        """For the command-line tools and the supervisor: MongoDB (embedded or configured), no HTTP."""
        await start_or_undo(self._start_database, self.stop)

    async def _start_database(self) -> None:
        uri = self.settings.mongo_uri or await self._start_embedded()
        try:
            self.db = Database(uri, self.settings.mongo_db)
        except (ValueError, ConfigurationError) as exc:
            raise StartupError(f"REALTIME_MONGO_URI is not a usable MongoDB URI: {exc}") from None
        await self._wait_for_mongo()

    async def _start(self) -> None:
        settings = self.settings
        resources = load_resources(settings)
        await self._start_database()
        assert self.db is not None
        store = DocumentStore(self.db, resources, default_limit=settings.list_default_limit, max_limit=settings.list_max_limit,
                              max_filter_depth=settings.max_filter_depth, max_filter_cost=settings.max_filter_cost)
        await store.prepare()
        users = UserStore(self.db)
        tokens = TokenService(settings)
        self.sessions = Sessions(self.db, settings.access_token_ttl_s + settings.jwt_leeway_s)
        auth = AuthService(tokens, users, LoginLimiter(*limits_from(settings)), self.sessions)
        if settings.demo:
            await demo.seed(users, store)
        await self.sessions.start()
        self.context = Context(settings, self.db, resources, store, tokens, auth)
        self.context.readiness_checks.append(self._sessions_readiness)
        self.realtime = Realtime(settings, self.db, resources, store, auth)
        await self.realtime.start()
        self.context.readiness_checks.append(self.realtime.readiness)
        self.sessions.on_change = self.realtime.end_refused_sessions
        self.stats = Stats(self.context, self.realtime)
        self.stats.start()
        self.http = httpserver.HTTPServer(
            make_app(self.context, self.realtime.urls, self.stats),
            idle_connection_timeout=HTTP_IDLE_TIMEOUT_S, body_timeout=HTTP_BODY_TIMEOUT_S,
        )
        sockets = self.http_sockets()
        self.http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]

    async def _sessions_readiness(self) -> NotReady | None:
        if self.sessions is None or self.sessions.running:
            return None
        return NotReady("changes to users and login sessions are not being followed", self.sessions.last_error)

    def http_sockets(self) -> list[Any]:
        from tornado.netutil import bind_sockets

        return bind_sockets(self.settings.port, self.settings.host)

    async def _start_embedded(self) -> str:
        binary = find_mongod(self.settings.mongod_path)
        self.embedded = EmbeddedMongo(binary, Path(self.settings.data_dir) / "mongo")
        await asyncio.get_running_loop().run_in_executor(None, self.embedded.start)
        return self.embedded.uri

    async def _wait_for_mongo(self) -> None:
        assert self.db is not None
        try:
            await asyncio.wait_for(self._ping_until_up(), MONGO_CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise StartupError(
                f"MongoDB at the configured URI did not answer within {MONGO_CONNECT_TIMEOUT_S:.0f}s; "
                "check REALTIME_MONGO_URI, or unset it to use the embedded mongod"
            ) from None
        if not await self.db.supports_change_streams():
            log.warning("MongoDB is not a replica set: live updates need change streams")

    async def _ping_until_up(self) -> None:
        assert self.db is not None
        while True:
            try:
                await self.db.ping()
                return
            except Exception as exc:  # retried until the timeout above
                log.info("waiting for MongoDB: %s", describe(exc))
                await asyncio.sleep(0.5)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "", "::") else self.settings.host
        return f"http://{host}:{self.port}/"

    async def stop(self) -> None:
        """Idempotent; safe after a start-up that failed half way."""
        if self.http is not None:
            self.http.stop()
        if self.stats is not None:
            self.stats.stop()
            self.stats = None
        if self.realtime is not None:
            await self.realtime.stop()
            self.realtime = None
        if self.sessions is not None:
            await self.sessions.stop()
            self.sessions = None
        if self.http is not None:
            await self.http.close_all_connections()
            self.http = None
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.embedded is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.embedded.stop)
            self.embedded = None
