"""What the tests share besides fixtures: the settings and tokens of test servers, a small REST
client bound to one server, waiting for a condition, and failing on errors logged."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from realtime_app.app import Server
from realtime_app.auth.tokens import TokenService
from realtime_app.config import Settings, settings_from

TEST_JWT_SECRET = secrets.token_urlsafe(48)
TEST_TOKENS = TokenService(settings_from(environ={}, jwt_secret=TEST_JWT_SECRET))
"""Issues tokens for servers started with `TEST_JWT_SECRET` and no other JWT setting, such as
those in processes of their own."""


def server_settings(mongo_uri: str, data_dir: str | Path, /, **overrides: Any) -> Settings:
    """A test server's settings: a free port on loopback, a database of its own, the tests' JWT
    secret, warnings and errors logged; ``overrides`` on top."""
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": 0, "mongo_uri": mongo_uri, "mongo_db": f"test_{uuid.uuid4().hex[:12]}",
        "jwt_secret": TEST_JWT_SECRET, "data_dir": str(data_dir), "log_level": "WARNING",
    }
    values.update(overrides)
    return settings_from(environ={}, **values)


def issue_token(tokens: TokenService, user: str = "ed", tenant: str = "t1", roles: tuple[str, ...] = ("editor",), **kwargs: Any) -> str:
    """An access token for any principal (an editor of t1 unless told otherwise)."""
    return tokens.issue(user, tenant, list(roles), **kwargs)


async def eventually(condition: Callable[[], bool], what: str = "the condition", timeout: float = 15.0) -> None:
    """Wait until ``condition()`` holds, checking every few milliseconds, for at most ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"still not {what} after {timeout} s"
        await asyncio.sleep(0.01)


class ErrorRecords(logging.Handler):
    """What anything logs at ERROR, from any thread: an unhandled exception in a server shows here."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        """The records, access-log lines aside (a 5xx answer is for the test to judge)."""
        return [f"{r.name}: {r.getMessage()}" for r in self.records if r.name != "tornado.access"]


@contextmanager
def no_errors_logged() -> Iterator[ErrorRecords]:
    """Fail if anything logged an error inside the block (access-log lines aside)."""
    errors = ErrorRecords()
    logging.getLogger().addHandler(errors)
    try:
        yield errors
        gc.collect()  # "exception was never retrieved" is logged when the future is collected
    finally:
        logging.getLogger().removeHandler(errors)
    assert not errors.messages(), errors.messages()


@dataclass
class Reply:
    status: int
    headers: Any
    body: Any

    @property
    def problem(self) -> dict[str, Any]:
        assert self.headers.get("Content-Type") == "application/problem+json", (self.status, self.body)
        assert {"type", "title", "status", "detail"} <= set(self.body), self.body
        assert self.body["status"] == self.status
        return self.body  # type: ignore[no-any-return]


class ApiClient:
    def __init__(self, server: Server):
        self.server = server
        assert server.context is not None
        self.context = server.context
        self.base = f"http://127.0.0.1:{server.port}"
        self.http = AsyncHTTPClient()

    def token(self, user: str = "ed", tenant: str = "t1", roles: tuple[str, ...] = ("editor",), **kwargs: Any) -> str:
        return issue_token(self.context.tokens, user, tenant, roles, **kwargs)

    async def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                      raw_body: bytes | str | None = None, headers: dict[str, str] | None = None) -> Reply:
        all_headers = {"Content-Type": "application/json"}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        payload = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        if payload is None and method in ("POST", "PUT", "PATCH"):
            payload = b""
        response: HTTPResponse = await self.http.fetch(
            self.base + path, method=method, body=payload, headers=all_headers, raise_error=False,
            allow_nonstandard_methods=True, request_timeout=30,
        )
        text = response.body.decode() if response.body else ""
        parsed = json.loads(text) if text and "json" in response.headers.get("Content-Type", "") else text
        return Reply(response.code, response.headers, parsed)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("PUT", path, body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("PATCH", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)


async def refused_soon(api: ApiClient, token: str, timeout: float = 10.0) -> Reply:
    """The token's first 401, waiting for a change made elsewhere to reach the server through
    MongoDB."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (reply := await api.get("/api/v1/collections", token=token)).status != 401:
        assert asyncio.get_running_loop().time() < deadline, reply.body
        await asyncio.sleep(0.05)
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    return reply
