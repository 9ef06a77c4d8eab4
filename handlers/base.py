"""The base of every API handler: auth by default, bounded JSON bodies, problem+json errors."""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from tornado import httputil, web

from realtime_app import jsoncodec
from realtime_app.clientaddr import client_address
from realtime_app.context import Context
from realtime_app.data.db import describe, is_connection_error
from realtime_app.data.principal import Principal
from realtime_app.errors import AppError, PayloadTooLarge, RateLimited, Unauthorized
from realtime_app.logs import bind_request_id

if TYPE_CHECKING:
    from realtime_app.stats import Stats

log = logging.getLogger("realtime_app.http")
access_log = logging.getLogger("realtime_app.access")

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's (or a proxy's) request id is kept when it looks like one; anything else is replaced.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
# Query arguments whose values access lines show; any other value could be personal or secret.
LOGGED_QUERY_VALUES = frozenset({"limit", "sort"})

PROBLEM_TYPE_BASE = "https://realtime-app.invalid/problems/"
API_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@web.stream_request_body
class APIHandler(web.RequestHandler):
    """Deny by default: set `public = True` on handlers anyone may call."""

    public = False
    probe = False
    """A load balancer's health or readiness probe: its successes are logged at DEBUG, as
    it comes every second or so from every balancer."""
    context: Context
    principal: Principal

    def initialize(self, context: Context) -> None:
        self.context = context
        self._body_chunks: list[bytes] = []
        self._body_size = 0

    @functools.cached_property
    def request_id(self) -> str:
        incoming = self.request.headers.get(REQUEST_ID_HEADER, "")
        return incoming if _SANE_REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)

    def set_default_headers(self) -> None:
        for name, value in API_HEADERS.items():
            self.set_header(name, value)
        self.set_header(REQUEST_ID_HEADER, self.request_id)

    async def prepare(self) -> None:
        bind_request_id(self.request_id)
        limit = self.context.settings.max_body_bytes
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
        if not self.public:
            self.principal = self.context.auth.principal(self._bearer_token())

    def _bearer_token(self) -> str:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <token>'; get a token from POST /api/v1/auth/login")
        return token.strip()

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_size <= self.context.settings.max_body_bytes:
            self._body_chunks.append(chunk)

    def json_body(self) -> Any:
        limit = self.context.settings.max_body_bytes
        if self._body_size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        content_type = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if content_type not in ("application/json", "application/merge-patch+json") and not content_type.endswith("+json"):
            raise AppError(f"send JSON (Content-Type: application/json), not {content_type[:60]!r}")
        if not self._body_size:
            raise AppError("the request needs a JSON body")
        return jsoncodec.loads(b"".join(self._body_chunks))

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(jsoncodec.dumps(value))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place an exception becomes an HTTP answer."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, AppError):
            status, title, detail, code = exc.status, exc.title, exc.detail, exc.code
            if isinstance(exc, RateLimited):
                self.set_header("Retry-After", str(int(exc.retry_after + 0.999)))
            if status == 401:
                self.set_header("WWW-Authenticate", 'Bearer realm="realtime-app"')
        elif exc is not None and is_connection_error(exc):
            status, title, code = 503, "Database unavailable", "unavailable"
            detail = f"MongoDB is not reachable right now; retry shortly ({describe(exc)})"
            self.set_header("Retry-After", "5")
        elif isinstance(exc, web.HTTPError) or exc is None:
            status = exc.status_code if isinstance(exc, web.HTTPError) else status_code
            title = httputil.responses.get(status, "Error")
            detail = _http_error_detail(exc) or title
            code = title.lower().replace(" ", "_")
        else:
            status, title, code = 500, "Internal server error", "internal"
            detail = "an unexpected error occurred; it has been logged"
        problem: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status, "detail": detail}
        if isinstance(exc, AppError) and exc.errors:
            problem["errors"] = [error.as_dict() for error in exc.errors]
        self.clear_header("ETag")
        self.set_status(status)
        self.set_header("Content-Type", "application/problem+json")
        self.finish(jsoncodec.dumps(problem))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected failures are answers, not crashes: no stack trace for them. (Tornado's own
        version would also log the query string whole.)"""
        method, path = self.request.method, self.request.path
        if isinstance(value, AppError):
            log.info("%s %s -> %s %s", method, path, value.status, value.detail)
        elif value is not None and is_connection_error(value):
            log.warning("%s %s -> 503 %s", method, path, describe(value))
        elif isinstance(value, web.HTTPError):
            if detail := _http_error_detail(value):
                log.info("%s %s -> %s %s", method, path, value.status_code, detail)
        else:
            log.error("%s %s -> 500 unexpected error", method, path, exc_info=(typ, value, tb))


def _http_error_detail(exc: BaseException | None) -> str:
    if not isinstance(exc, web.HTTPError) or not exc.log_message:
        return ""
    return exc.log_message % exc.args if exc.args else exc.log_message


class NotFoundHandler(APIHandler):
    """Unknown URLs answer problem+json 404 rather than Tornado's HTML page."""

    public = True

    async def prepare(self) -> None:
        await super().prepare()
        raise web.HTTPError(404, "no such endpoint: %s", self.request.path[:200])


def loggable_target(request: httputil.HTTPServerRequest) -> str:
    """The path, and the query with the values of arguments outside `LOGGED_QUERY_VALUES` masked."""
    if not request.query:
        return request.path
    pairs = [(name, value if name in LOGGED_QUERY_VALUES else "***") for name, value in parse_qsl(request.query, keep_blank_values=True)]
    return f"{request.path}?{urlencode(pairs, safe='*')}"


def request_logger(stats: Stats) -> Callable[[web.RequestHandler], None]:
    """Tornado's `log_function`: an access line per request, and API requests counted in `stats`.

    It replaces Tornado's access log, which prints query strings whole. API lines are INFO;
    the SockJS transports', static files' and successful probes' are DEBUG, as they come by the
    thousand. A 5xx answer is a WARNING here: a crash behind it is already logged as an ERROR,
    with its trace.
    """

    def log_request(handler: web.RequestHandler) -> None:
        request, status = handler.request, handler.get_status()
        method = request.method if request.method in handler.SUPPORTED_METHODS else "OTHER"
        duration_ms = round(request.request_time() * 1000, 3)
        extra: dict[str, Any] = {"method": method, "path": loggable_target(request), "status": status, "duration_ms": duration_ms,
                                 "client": client_address(request)}
        level = logging.WARNING if status >= 500 else logging.DEBUG
        if isinstance(handler, APIHandler):
            stats.observe_request(type(handler).__name__, method, status, request.request_time())
            extra["request_id"] = handler.request_id
            level = max(level, logging.DEBUG if handler.probe and status < 400 else logging.INFO)
        access_log.log(level, "%s %s %s %d %.1f ms", extra["client"], method, extra["path"], status, duration_ms, extra=extra)

    return log_request
