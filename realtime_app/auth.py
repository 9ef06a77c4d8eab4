"""Tokens, users and logins.

Verification accepts only the configured algorithms (never "none"; HMAC and public-key
families are never mixed, so a public key cannot be replayed as an HMAC secret), requires
`exp`, checks `aud` and `iss` when configured, and tolerates a small clock skew.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from realtime_app.config import Settings, demo_jwt_secret
from realtime_app.db import Database, DuplicateKeyError
from realtime_app.errors import Conflict, NotFound, RateLimited, TokenExpired, Unauthorized
from realtime_app.principal import Principal
from realtime_app.resources import ROLES
from realtime_app.store import TENANT_PATTERN

USERS_COLLECTION = "realtime_users"
# scrypt at N=2**14, r=8 costs about 16 MiB and tens of milliseconds: slow for guessing, fine for logins.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
ACCESS, REFRESH = "access", "refresh"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


# Compared against when the user does not exist, so timing does not reveal which usernames do.
_DECOY_HASH = hash_password(secrets.token_urlsafe(16))


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

    def issue(self, user: str, tenant: str, roles: list[str], *, use: str = ACCESS, ttl_s: int | None = None) -> str:
        if not self.can_issue:
            raise Unauthorized("this server only verifies tokens; it has no private key to issue them")
        issued = int(time.time())
        lifetime = ttl_s if ttl_s is not None else (
            self.settings.access_token_ttl_s if use == ACCESS else self.settings.refresh_token_ttl_s
        )
        claims: dict[str, Any] = {
            "sub": user, "tenant": tenant, "roles": roles, "iat": issued, "exp": issued + lifetime,
            "jti": uuid.uuid4().hex, "token_use": use,
        }
        if self.settings.jwt_audience:
            claims["aud"] = self.settings.jwt_audience
        if self.settings.jwt_issuer:
            claims["iss"] = self.settings.jwt_issuer
        return jwt.encode(claims, self.signing_key, algorithm=self.signing_algorithm)

    def issue_pair(self, user: str, tenant: str, roles: list[str]) -> dict[str, Any]:
        return {
            "access_token": self.issue(user, tenant, roles, use=ACCESS),
            "refresh_token": self.issue(user, tenant, roles, use=REFRESH),
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
        }

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
        return Principal(str(claims["sub"]), tenant, frozenset(r for r in roles if r in ROLES), float(claims["exp"]))


@dataclass(frozen=True)
class User:
    username: str
    tenant: str
    roles: list[str]


class UserStore:
    """Users stored in MongoDB with scrypt password hashes."""

    def __init__(self, db: Database):
        self.collection = db.collection(USERS_COLLECTION)

    async def add(self, username: str, password: str, tenant: str, roles: list[str]) -> User:
        _validate_user(username, password, tenant, roles)
        password_hash = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
        try:
            await self.collection.insert_one({"_id": username, "password": password_hash, "tenant": tenant, "roles": roles})
        except DuplicateKeyError:
            raise Conflict(f"user {username!r} already exists") from None
        return User(username, tenant, roles)

    async def remove(self, username: str) -> None:
        result = await self.collection.delete_one({"_id": username})
        if not result.deleted_count:
            raise NotFound(f"no user {username!r}")

    async def all(self) -> list[User]:
        return [User(raw["_id"], raw["tenant"], raw["roles"]) async for raw in self.collection.find().sort("_id")]

    async def find(self, username: str) -> User | None:
        raw = await self.collection.find_one({"_id": username})
        return User(raw["_id"], raw["tenant"], raw["roles"]) if raw else None

    async def count(self) -> int:
        return int(await self.collection.count_documents({}))

    async def check_password(self, username: str, password: str) -> User | None:
        raw = await self.collection.find_one({"_id": username}) if isinstance(username, str) else None
        stored = raw["password"] if raw else _DECOY_HASH
        ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, str(password), stored)
        return User(raw["_id"], raw["tenant"], raw["roles"]) if raw and ok else None


def _validate_user(username: str, password: str, tenant: str, roles: list[str]) -> None:
    if not isinstance(username, str) or not 1 <= len(username) <= 64:
        raise ValueError("username must be 1-64 characters")
    if not isinstance(password, str) or len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    if not TENANT_PATTERN.match(tenant):
        raise ValueError("tenant must be 1-64 letters, digits, '_', '.' or '-'")
    if not roles or any(role not in ROLES for role in roles):
        raise ValueError(f"roles must be among {', '.join(ROLES)}")


class LoginLimiter:
    """Failed logins allowed per key (username, client address) in a sliding minute."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}

    def check(self, *keys: str) -> None:
        moment = time.monotonic()
        for key in keys:
            failures = self._recent(key, moment)
            if len(failures) >= self.per_minute:
                retry_after = failures[0] + self.WINDOW_S - moment
                raise RateLimited("too many failed logins; wait before trying again", max(retry_after, 1.0))

    def record_failure(self, *keys: str) -> None:
        moment = time.monotonic()
        for key in keys:
            self._recent(key, moment).append(moment)

    def forget(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def _recent(self, key: str, moment: float) -> deque[float]:
        # Prune first: pruning after setdefault would drop this key's new, still empty queue.
        if len(self._failures) > 100_000:
            self._prune(moment)
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= moment - self.WINDOW_S:
            failures.popleft()
        return failures

    def _prune(self, moment: float) -> None:
        stale = [k for k, q in self._failures.items() if not q or q[-1] <= moment - self.WINDOW_S]
        for key in stale:
            del self._failures[key]


class AuthService:
    """Login and refresh, rate-limited; what the auth handlers call."""

    def __init__(self, tokens: TokenService, users: UserStore, limiter: LoginLimiter):
        self.tokens = tokens
        self.users = users
        self.limiter = limiter

    async def login(self, username: Any, password: Any, client_address: str) -> dict[str, Any]:
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise Unauthorized("username and password are required strings")
        keys = (f"user:{username[:64]}", f"addr:{client_address}")
        self.limiter.check(*keys)
        user = await self.users.check_password(username, password)
        if user is None:
            self.limiter.record_failure(*keys)
            raise Unauthorized("unknown username or wrong password")
        self.limiter.forget(keys[0])
        return self.tokens.issue_pair(user.username, user.tenant, user.roles)

    async def refresh(self, refresh_token: Any) -> dict[str, Any]:
        claims = self.tokens.decode(refresh_token, REFRESH)
        user = await self.users.find(str(claims["sub"]))
        if user is None:
            raise Unauthorized("the user of this refresh token no longer exists")
        return self.tokens.issue_pair(user.username, user.tenant, user.roles)
