"""Which issued tokens still hold: user states and login sessions, shared through MongoDB.

Every stored user has a `token_epoch`, a number from the database's clock (milliseconds) that
grows whenever the user's access must end: created, removed, disabled, given other roles or
another password. Tokens this server issues carry the epoch they were issued under (`epoch`)
and the login session they belong to (`fam`: the refresh-token family). A token is refused when

- it carries an epoch and its user is gone, or the user's epoch is now higher;
- it carries no epoch (the `token` command's, an outside issuer's) and names a stored user whose
  epoch is later than the second of the token's `iat` (a token issued in the same second as the
  change is kept: `iat` counts whole seconds); a user this server does not store has nothing to
  revoke;
- its user is disabled;
- its login session was ended (logout, or an old refresh token coming back).

Several processes may serve one database, so each keeps these states in memory and follows the
users and session collections with a change stream of its own, and a change made anywhere
(`realtime-app users ...`, a logout on another process) reaches every process within the
stream's latency. A second, small stream rather than a branch of the change feed: the feed's
positions and replay buffer are about served documents, the feed may be polling instead, and
these states must be loaded before the first request is served. A standalone mongod, which has
no change streams, is read again every second instead.

The states of all users are held (a few dozen bytes each); ended sessions only as long as an
access token issued before the end could live.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from realtime_app.data import db as dbmod
from realtime_app.data.principal import Principal
from realtime_app.errors import Unauthorized

log = logging.getLogger(__name__)

USERS_COLLECTION = "realtime_users"
SESSIONS_COLLECTION = "realtime_login_sessions"
# The user's next epoch: past the current one, and never behind the database's clock, so a user
# removed and added again starts past every token the first one had.
NEXT_EPOCH = {"$max": [{"$add": [{"$ifNull": ["$token_epoch", 0]}, 1]}, {"$toLong": "$$NOW"}]}


@dataclass(frozen=True)
class UserState:
    epoch: int
    disabled: bool


def _state(doc: dict[str, Any]) -> UserState:
    return UserState(int(doc.get("token_epoch", 0)), bool(doc.get("disabled", False)))


def _predates(principal: Principal, state: UserState) -> bool:
    """Whether the token was issued before the user's latest change (see the module's rules)."""
    if principal.epoch is not None:
        return principal.epoch < state.epoch
    return principal.issued_at is None or (principal.issued_at + 1) * 1000 <= state.epoch


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Sessions:
    """This process's view of user states and ended login sessions, and the login-session store."""

    def __init__(self, database: dbmod.Database, access_token_lifetime_s: float):
        self.database = database
        self.users = database.collection(USERS_COLLECTION)
        self.families = database.collection(SESSIONS_COLLECTION)
        self.access_token_lifetime_s = access_token_lifetime_s
        self.on_change: Callable[[str], None] = lambda user: None
        """Called with a user whose tokens may no longer hold: the live sockets are checked again."""
        self.running = False
        self.last_error: str | None = None
        self._users: dict[str, UserState] = {}
        self._ended: dict[str, float] = {}  # session -> until when it matters (its access tokens' end)
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    # -- the rule --------------------------------------------------------------------------

    def refusal(self, principal: Principal) -> Unauthorized | None:
        """Why the token behind `principal` no longer holds, or None while it does."""
        state = self._users.get(principal.user)
        if state is None:
            if principal.epoch is not None:
                return Unauthorized("the user of this token no longer exists")
        elif state.disabled:
            return Unauthorized("this user is disabled")
        elif _predates(principal, state):
            return Unauthorized("the token was revoked: the user's password, roles or status changed after it was issued; log in again")
        if principal.family is not None and self._session_ended(principal.family):
            return Unauthorized("this login session has ended (signed out); log in again")
        return None

    def _session_ended(self, family: str) -> bool:
        until = self._ended.get(family)
        if until is None:
            return False
        if until < time.time():
            del self._ended[family]
            return False
        return True

    # -- login sessions (refresh-token families) ------------------------------------------

    async def open(self, family: str, user: str, refresh_id: str, expires_at: float) -> None:
        await self.families.insert_one({"_id": family, "user": user, "current": refresh_id,
                                        "expires_at": dt.datetime.fromtimestamp(expires_at, dt.UTC)})

    async def rotate(self, family: str, user: str, refresh_id: str, next_id: str, expires_at: float) -> None:
        """Make `next_id` the session's one valid refresh token in place of `refresh_id`. A
        refresh token that is not the current one has been used before: someone else may hold
        a copy, so the whole session ends."""
        rotated = await self.families.find_one_and_update(
            {"_id": family, "user": user, "current": refresh_id, "ended_at": None},
            {"$set": {"current": next_id, "expires_at": dt.datetime.fromtimestamp(expires_at, dt.UTC)}},
        )
        if rotated is not None:
            return
        session = await self.families.find_one({"_id": family, "user": user})
        if session is None:
            raise Unauthorized("this login session has ended or expired; log in again")
        if session.get("ended_at") is not None:
            raise Unauthorized("this login session has ended (signed out); log in again")
        await self.end(family, user)
        raise Unauthorized("this refresh token was used before, so the session has been ended in case it was stolen; log in again")

    async def end(self, family: str, user: str) -> None:
        """End a login session: no more refreshes, and its access tokens are refused (here at
        once, elsewhere when the change arrives). Ending an ended one changes nothing."""
        until = time.time() + self.access_token_lifetime_s
        await self.families.update_one(
            {"_id": family, "user": user, "ended_at": None},
            {"$set": {"ended_at": _now(), "expires_at": dt.datetime.fromtimestamp(until, dt.UTC)}},
        )
        self._note_ended(family, user, until)

    def _note_ended(self, family: str, user: str, until: float) -> None:
        now = time.time()
        if until > now and family not in self._ended:
            for stale in [key for key, ends in self._ended.items() if ends < now]:
                del self._ended[stale]
            self._ended[family] = until
            self.on_change(user)

    # -- following MongoDB -----------------------------------------------------------------

    async def start(self) -> None:
        """Load the states and follow their changes; returns once loaded."""
        await self.families.create_index("expires_at", expireAfterSeconds=0)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="Sessions")
        await self._loaded.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.running = False

    async def _run(self) -> None:
        streams = await self.database.supports_change_streams()
        resume_token: Any = None
        attempt = 0
        while True:
            try:
                if streams:
                    resume_token = await self._follow(resume_token)
                else:
                    await self._load()
                    self.running = True
                    await asyncio.sleep(dbmod.POLL_INTERVAL_S)
                attempt = 0
                continue
            except asyncio.CancelledError:
                raise
            except dbmod.OperationFailure as exc:
                if exc.code in dbmod.HISTORY_LOST_CODES:
                    resume_token = None
                self._down(exc)
            except Exception as exc:  # any driver or network failure: retry with backoff
                self._down(exc)
            attempt += 1
            await asyncio.sleep(dbmod.STREAM_RETRY_DELAYS_S[min(attempt, len(dbmod.STREAM_RETRY_DELAYS_S)) - 1])

    def _down(self, exc: BaseException) -> None:
        if self.running:
            log.warning("user and session changes are not followed: %s", dbmod.describe(exc))
        self.running = False
        self.last_error = dbmod.describe(exc)
        self._loaded.set()  # start-up does not wait forever; readiness reports the failure

    async def _follow(self, resume_token: Any) -> Any:
        """Follow changes until the stream ends; returns the token to resume from (None: load afresh)."""
        options: dict[str, Any] = {"full_document": "updateLookup"}
        if resume_token is None:
            options["start_at_operation_time"] = await dbmod.cluster_time(self.database)
            await self._load()  # what changes after that time comes through the stream as well
        else:
            options["start_after"] = resume_token
        pipeline: list[dict[str, Any]] = [{"$match": {"$or": [
            {"ns.coll": USERS_COLLECTION},
            {"ns.coll": SESSIONS_COLLECTION, "updateDescription.updatedFields.ended_at": {"$exists": True}},
            {"operationType": {"$in": ["dropDatabase", "invalidate"]}},
        ]}}, {"$unset": "fullDocument.password"}]
        async with self.database.db.watch(pipeline, **options) as stream:
            self.running, self.last_error = True, None
            async for change in stream:
                if not self._apply(change):
                    return None
                resume_token = stream.resume_token
        return resume_token

    def _apply(self, change: dict[str, Any]) -> bool:
        """Take one change into the states; False when only loading everything again will do."""
        operation = change["operationType"]
        if operation not in ("insert", "update", "replace", "delete"):
            return False
        doc = change.get("fullDocument")
        if change["ns"]["coll"] == SESSIONS_COLLECTION:
            if doc is not None and doc.get("ended_at") is not None:
                self._note_ended(doc["_id"], doc["user"], doc["ended_at"].timestamp() + self.access_token_lifetime_s)
            return True
        user = change["documentKey"]["_id"]
        state = _state(doc) if doc is not None and operation != "delete" else None
        if self._users.get(user) != state:
            if state is None:
                self._users.pop(user, None)
            else:
                self._users[user] = state
            self.on_change(user)
        return True

    async def _load(self) -> None:
        users = {doc["_id"]: _state(doc) async for doc in self.users.find({}, {"token_epoch": 1, "disabled": 1})}
        changed = {user for user in users.keys() | self._users.keys() if users.get(user) != self._users.get(user)}
        self._users = users
        horizon = dt.datetime.fromtimestamp(time.time() - self.access_token_lifetime_s, dt.UTC)
        async for session in self.families.find({"ended_at": {"$gte": horizon}}, {"user": 1, "ended_at": 1}):
            self._note_ended(session["_id"], session["user"], session["ended_at"].timestamp() + self.access_token_lifetime_s)
        self._loaded.set()
        for user in changed:
            self.on_change(user)
