"""Login and token refresh: /api/v1/auth/login and /api/v1/auth/refresh."""

from __future__ import annotations

from handlers.base import APIHandler
from realtime_app.errors import BadRequest


class LoginHandler(APIHandler):
    public = True

    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise BadRequest('send {"username": "...", "password": "..."}')
        tokens = await self.context.auth.login(body.get("username"), body.get("password"), self.request.remote_ip or "")
        self.write_json(tokens)


class RefreshHandler(APIHandler):
    public = True

    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict) or "refresh_token" not in body:
            raise BadRequest('send {"refresh_token": "..."}')
        self.write_json(await self.context.auth.refresh(body["refresh_token"]))


def urls(context: object) -> list[tuple[str, type, dict[str, object]]]:
    deps = {"context": context}
    return [
        (r"/api/v1/auth/login", LoginHandler, deps),
        (r"/api/v1/auth/refresh", RefreshHandler, deps),
    ]
