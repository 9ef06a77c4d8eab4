"""Users stored in MongoDB: their tenant, roles and password hash, and the changes that end
their access."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

from realtime_app.auth.passwords import check_policy, hash_password, verify_password
from realtime_app.auth.sessions import NEXT_EPOCH, USERS_COLLECTION
from realtime_app.data.db import Database, DuplicateKeyError
from realtime_app.data.resources import ROLES
from realtime_app.data.store import TENANT_PATTERN
from realtime_app.errors import Conflict, NotFound

# Compared against when the user does not exist, so timing does not reveal which usernames do.
_DECOY_HASH = hash_password(secrets.token_urlsafe(16))


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
