"""Tokens, users and logins.

Verification accepts only the configured algorithms (never "none"; HMAC and public-key
families are never mixed, so a public key cannot be replayed as an HMAC secret), requires
`exp`, checks `aud` and `iss` when configured, and tolerates a small clock skew.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from realtime_app.auth.loginlimits import LoginLimiter
from realtime_app.auth.passwords import check_policy, hash_password, verify_password
from realtime_app.auth.sessions import NEXT_EPOCH, USERS_COLLECTION, Sessions
from realtime_app.config import Settings, demo_jwt_secret
from realtime_app.data.db import Database, DuplicateKeyError
from realtime_app.data.principal import Principal
from realtime_app.data.resources import ROLES
from realtime_app.data.store import TENANT_PATTERN
from realtime_app.errors import Conflict, NotFound, TokenExpired, Unauthorized

# Compared against when the user does not exist, so timing does not reveal which usernames do.
_DECOY_HASH = hash_password(secrets.token_urlsafe(16))

ACCESS, REFRESH = "access", "refresh"


class TokenService:
    """Issues and verifies JWTs with the keys and rules from Settings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.algorithms = settings.algorithms
        self.signing_algorithm = self.algorithms[0]
        self.signing_key: Any
        self.verification_key: Any
        if settings.uses_public_key:
            self.verification_key = Path(settings.jwt_public_key_file).read_bytes()
            self.signing_key = Path(settings.jwt_private_key_file).read_bytes() if settings.jwt_private_key_file else None
        else:
            secret = settings.jwt_secret or demo_jwt_secret(settings.data_dir)
            self.signing_key = self.verification_key = secret

    @property
    def can_issue(self) -> bool:
        return self.signing_key is not None

    def issue(self, user: str, tenant: str, roles: list[str], *, use: str = ACCESS, ttl_s: int | None = None,
              epoch: int | None = None, family: str | None = None, token_id: str | None = None) -> str:
        """A signed token; `epoch` and `family` tie it to its stored user and its login session."""
        if not self.can_issue:
            raise Unauthorized("this server only verifies tokens; it has no private key to issue them")
        issued = int(time.time())
        lifetime = ttl_s if ttl_s is not None else (
            self.settings.access_token_ttl_s if use == ACCESS else self.settings.refresh_token_ttl_s
        )
        claims: dict[str, Any] = {
            "sub": user, "tenant": tenant, "roles": roles, "iat": issued, "exp": issued + lifetime,
            "jti": token_id or uuid.uuid4().hex, "token_use": use,
        }
        if epoch is not None:
            claims["epoch"] = epoch
        if family is not None:
            claims["fam"] = family
        if self.settings.jwt_audience:
            claims["aud"] = self.settings.jwt_audience
        if self.settings.jwt_issuer:
            claims["iss"] = self.settings.jwt_issuer
        return jwt.encode(claims, self.signing_key, algorithm=self.signing_algorithm)

    def decode(self, token: str, use: str = ACCESS) -> dict[str, Any]:
        """Verified claims of a token meant for `use`; Unauthorized names what is wrong."""
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise Unauthorized("missing or oversized token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.verification_key,
                algorithms=self.algorithms,
                audience=self.settings.jwt_audience or None,
                issuer=self.settings.jwt_issuer or None,
                leeway=self.settings.jwt_leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": bool(self.settings.jwt_audience)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the token has expired; log in again or refresh it") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token comes from another issuer") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthorized(f"the token's algorithm is not accepted (accepted: {', '.join(self.algorithms)})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:  # also InvalidKeyError: a header naming an accepted algorithm of another key type
            raise Unauthorized(f"invalid token: {exc}") from None
        token_use = claims.get("token_use", ACCESS)
        if token_use != use:
            raise Unauthorized(f"a {token_use} token cannot be used as a {use} token")
        return claims

    def principal(self, token: str) -> Principal:
        claims = self.decode(token, ACCESS)
        tenant = claims.get("tenant")
        roles = claims.get("roles")
        if not isinstance(tenant, str) or not tenant:
            raise Unauthorized("the token has no 'tenant' claim")
        if not isinstance(roles, list) or not any(role in ROLES for role in roles):
            raise Unauthorized(f"the token's 'roles' claim names none of {', '.join(ROLES)}")
        epoch, family, issued_at = claims.get("epoch"), claims.get("fam"), claims.get("iat")
        if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
            raise Unauthorized("the token's 'epoch' claim is not an integer")
        if family is not None and not isinstance(family, str):
            raise Unauthorized("the token's 'fam' claim is not a string")
        return Principal(str(claims["sub"]), tenant, frozenset(r for r in roles if r in ROLES), float(claims["exp"]),
                         epoch=epoch, family=family, issued_at=float(issued_at) if isinstance(issued_at, (int, float)) else None)


@dataclass(frozen=True)
class User:
    username: str
    tenant: str
    roles: list[str]
    epoch: int = 0
    disabled: bool = False


def _user(raw: dict[str, Any]) -> User:
    return User(raw["_id"], raw["tenant"], raw["roles"], int(raw.get("token_epoch", 0)), bool(raw.get("disabled", False)))


def _literal(value: Any) -> dict[str, Any]:
    """A value for an update pipeline, where a string starting with `$` would name a field."""
    return {"$literal": value}


class UserStore:
    """Users stored in MongoDB with scrypt password hashes. Every change that must end the
    user's access (see realtime_app/auth/sessions.py) moves its token epoch on."""

    def __init__(self, db: Database):
        self.collection = db.collection(USERS_COLLECTION)

    async def add(self, username: str, password: str, tenant: str, roles: list[str]) -> User:
        _validate_user(username, tenant, roles)
        password_hash = await _policy_hash(password, username, tenant)
        fields = {"password": password_hash, "tenant": tenant, "roles": roles}
        try:
            # An upsert, so that the first epoch comes from the database's clock like every later
            # one; no stored user lacks a password, so an existing name fails on the unique _id.
            await self.collection.update_one(
                {"_id": username, "password": {"$exists": False}},
                [{"$set": {**{name: _literal(value) for name, value in fields.items()}, "token_epoch": NEXT_EPOCH}}],
                upsert=True,
            )
        except DuplicateKeyError:
            raise Conflict(f"user {username!r} already exists") from None
        return User(username, tenant, roles)

    async def remove(self, username: str) -> None:
        result = await self.collection.delete_one({"_id": username})
        if not result.deleted_count:
            raise NotFound(f"no user {username!r}")

    async def set_password(self, username: str, password: str) -> None:
        user = await self._existing(username)
        await self._revoke(username, password=await _policy_hash(password, username, user.tenant))

    async def set_roles(self, username: str, roles: list[str]) -> None:
        _validate_roles(roles)
        await self._revoke(username, roles=roles)

    async def set_disabled(self, username: str, disabled: bool) -> None:
        await self._revoke(username, disabled=disabled)

    async def _revoke(self, username: str, **changes: Any) -> None:
        """Apply `changes` and end every token issued to the user before them."""
        result = await self.collection.update_one(
            {"_id": username}, [{"$set": {**{name: _literal(value) for name, value in changes.items()}, "token_epoch": NEXT_EPOCH}}],
        )
        if not result.matched_count:
            raise NotFound(f"no user {username!r}")

    async def _existing(self, username: str) -> User:
        user = await self.find(username)
        if user is None:
            raise NotFound(f"no user {username!r}")
        return user

    async def all(self) -> list[User]:
        return [_user(raw) async for raw in self.collection.find().sort("_id")]

    async def find(self, username: str) -> User | None:
        raw = await self.collection.find_one({"_id": username})
        return _user(raw) if raw else None

    async def count(self) -> int:
        return int(await self.collection.count_documents({}))

    async def check_password(self, username: str, password: str) -> User | None:
        raw = await self.collection.find_one({"_id": username}) if isinstance(username, str) else None
        stored = raw["password"] if raw else _DECOY_HASH
        ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, str(password), stored)
        return _user(raw) if raw and ok else None


async def _policy_hash(password: str, username: str, tenant: str) -> str:
    """The hash of a password that meets the policy (WeakPassword, a ValueError, otherwise)."""
    check_policy(password, username, tenant)
    return await asyncio.get_running_loop().run_in_executor(None, hash_password, password)


def _validate_user(username: str, tenant: str, roles: list[str]) -> None:
    if not isinstance(username, str) or not 1 <= len(username) <= 64:
        raise ValueError("username must be 1-64 characters")
    if not TENANT_PATTERN.match(tenant):
        raise ValueError("tenant must be 1-64 letters, digits, '_', '.' or '-'")
    _validate_roles(roles)


def _validate_roles(roles: list[str]) -> None:
    if not roles or any(role not in ROLES for role in roles):
        raise ValueError(f"roles must be among {', '.join(ROLES)}")


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
        refusal = self.sessions.refusal(principal)
        if refusal is not None:
            raise refusal
        return principal

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
