"""Test helpers: a small REST client bound to one server, with tokens for any principal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from realtime_app.app import Server


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
        return self.context.tokens.issue(user, tenant, list(roles), **kwargs)

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
