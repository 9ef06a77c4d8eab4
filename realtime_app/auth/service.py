"""Logins, refreshes and logouts, and the one check every access token passes."""

from __future__ import annotations

import time
import uuid
from typing import Any

from realtime_app.auth.loginlimits import LoginLimiter
from realtime_app.auth.sessions import Sessions
from realtime_app.auth.tokens import ACCESS, REFRESH, TokenService
from realtime_app.auth.users import User, UserStore
from realtime_app.data.principal import Principal
from realtime_app.errors import Unauthorized


class AuthService:
    """Logins, refreshes and logouts, rate-limited; the one check every token passes."""

    def __init__(self, tokens: TokenService, users: UserStore, limiter: LoginLimiter, sessions: Sessions):
        self.tokens = tokens
        self.users = users
        self.limiter = limiter
        self.sessions = sessions

    def principal(self, token: str) -> Principal:
        """Who an access token speaks for, if it is valid and still holds (Unauthorized if not)."""
        principal = self.tokens.principal(token)
        refusal = self.refusal(principal)
        if refusal is not None:
            raise refusal
        return principal

    def refusal(self, principal: Principal) -> Unauthorized | None:
        """Why the token behind `principal` no longer holds (its user changed, its login session
        ended), or None while it does: asked again of open sockets when their user changes."""
        return self.sessions.refusal(principal)

    async def login(self, username: Any, password: Any, client_address: str) -> dict[str, Any]:
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise Unauthorized("username and password are required strings")
        reservation = self.limiter.reserve(username[:64], client_address)
        try:
            user = await self.users.check_password(username, password)
        except BaseException:
            self.limiter.release(reservation)
            raise
        if user is None:
            raise Unauthorized("unknown username or wrong password")
        self.limiter.release(reservation)
        if user.disabled:
            raise Unauthorized("this user is disabled; ask an administrator")
        family, refresh_id = uuid.uuid4().hex, uuid.uuid4().hex
        await self.sessions.open(family, user.username, refresh_id, time.time() + self.tokens.settings.refresh_token_ttl_s)
        return self._pair(user, family, refresh_id)

    async def refresh(self, refresh_token: Any) -> dict[str, Any]:
        """A new pair for the session's current refresh token, which is used up by it."""
        claims, family = self._session_claims(refresh_token)
        user = await self.users.find(str(claims["sub"]))
        if user is None:
            raise Unauthorized("the user of this refresh token no longer exists")
        if user.disabled:
            raise Unauthorized("this user is disabled; ask an administrator")
        if not isinstance(claims.get("epoch"), int) or claims["epoch"] < user.epoch:
            raise Unauthorized("the refresh token was revoked: the user's password, roles or status changed after it was issued; log in again")
        next_id = uuid.uuid4().hex
        await self.sessions.rotate(family, user.username, str(claims.get("jti")), next_id,
                                   time.time() + self.tokens.settings.refresh_token_ttl_s)
        return self._pair(user, family, next_id)

    async def logout(self, refresh_token: Any) -> None:
        """End the login session of `refresh_token`: its refresh token and access tokens."""
        claims, family = self._session_claims(refresh_token)
        await self.sessions.end(family, str(claims["sub"]))

    def _session_claims(self, refresh_token: Any) -> tuple[dict[str, Any], str]:
        claims = self.tokens.decode(refresh_token, REFRESH)
        family = claims.get("fam")
        if not isinstance(family, str):
            raise Unauthorized("this refresh token belongs to no login session; log in again")
        return claims, family

    def _pair(self, user: User, family: str, refresh_id: str) -> dict[str, Any]:
        issue = self.tokens.issue
        return {
            "access_token": issue(user.username, user.tenant, user.roles, use=ACCESS, epoch=user.epoch, family=family),
            "refresh_token": issue(user.username, user.tenant, user.roles, use=REFRESH, epoch=user.epoch, family=family,
                                   token_id=refresh_id),
            "token_type": "Bearer",
            "expires_in": self.tokens.settings.access_token_ttl_s,
        }
