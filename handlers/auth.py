"""Login, token refresh and logout: /api/v1/auth/login, /refresh and /logout."""

from __future__ import annotations

from typing import Any

from handlers.base import APIHandler
from realtime_app.clientaddr import client_address
from realtime_app.errors import BadRequest


class LoginHandler(APIHandler):
    public = True

    async def post(self) -> None:
        body = self.json_body()
        if not isinstance(body, dict):
            raise BadRequest('send {"username": "...", "password": "..."}')
        tokens = await self.context.auth.login(body.get("username"), body.get("password"), client_address(self.request))
        self.write_json(tokens)


class RefreshHandler(APIHandler):
    public = True

    async def post(self) -> None:
        self.write_json(await self.context.auth.refresh(self._refresh_token()))

    def _refresh_token(self) -> Any:
        body = self.json_body()
        if not isinstance(body, dict) or "refresh_token" not in body:
            raise BadRequest('send {"refresh_token": "..."}')
        return body["refresh_token"]


class LogoutHandler(RefreshHandler):
    """Ends the login session of a refresh token: it and the session's access tokens stop working."""

    async def post(self) -> None:
        await self.context.auth.logout(self._refresh_token())
        self.set_status(204)
        self.finish()


def urls(context: object) -> list[tuple[str, type, dict[str, object]]]:
    deps = {"context": context}
    return [
        (r"/api/v1/auth/login", LoginHandler, deps),
        (r"/api/v1/auth/refresh", RefreshHandler, deps),
        (r"/api/v1/auth/logout", LogoutHandler, deps),
    ]
