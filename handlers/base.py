"""The base of every API handler: auth by default, bounded JSON bodies, problem+json errors."""

from __future__ import annotations

import logging
from typing import Any

from tornado import httputil, web

from realtime_app import jsoncodec
from realtime_app.context import Context
from realtime_app.db import describe, is_connection_error
from realtime_app.errors import AppError, PayloadTooLarge, RateLimited, Unauthorized
from realtime_app.principal import Principal

log = logging.getLogger("realtime_app.http")

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
    context: Context
    principal: Principal

    def initialize(self, context: Context) -> None:
        self.context = context
        self._body_chunks: list[bytes] = []
        self._body_size = 0

    def set_default_headers(self) -> None:
        for name, value in API_HEADERS.items():
            self.set_header(name, value)

    async def prepare(self) -> None:
        limit = self.context.settings.max_body_bytes
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
        if not self.public:
            self.principal = self.context.tokens.principal(self._bearer_token())

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
        """Expected failures are answers, not crashes: no stack trace for them."""
        if isinstance(value, AppError):
            log.info("%s %s -> %s %s", self.request.method, self.request.path, value.status, value.detail)
        elif value is not None and is_connection_error(value):
            log.warning("%s %s -> 503 %s", self.request.method, self.request.path, describe(value))
        else:
            super().log_exception(typ, value, tb)


def _http_error_detail(exc: BaseException | None) -> str:
    if not isinstance(exc, web.HTTPError) or not exc.log_message:
        return ""
    return exc.log_message % exc.args if exc.args else exc.log_message


class NotFoundHandler(APIHandler):
    """Unknown URLs answer problem+json 404 rather than Tornado's HTML page."""

    public = True

    async def prepare(self) -> None:
        raise web.HTTPError(404, "no such endpoint: %s", self.request.path[:200])
