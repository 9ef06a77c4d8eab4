"""Failed-login limits, per process: one username from one address, one address, one username.

An attempt takes a slot in every window that applies to it *before* the password is hashed,
so parallel guesses cannot all slip in while the first ones are still being checked; a login
that succeeds gives its slots back. The username-and-address pair has the tightest limit, so
an attacker who fails from one address does not lock the owner out of another; the per-user
limit over all addresses is slower, to bound guessing spread over many addresses.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass

from realtime_app.config import Settings
from realtime_app.errors import RateLimited

# Above this many keys, windows with nothing recent in them are dropped; the next pruning waits
# until the table has doubled, so a table full of recent attempts is not scanned on every login.
PRUNE_ABOVE_KEYS = 100_000


@dataclass(frozen=True)
class Limit:
    scope: str
    """What is counted, for the refusal: "for this username from this address", ..."""
    setting: str
    count: int
    window_s: float
    per: str


def limits_from(settings: Settings) -> tuple[Limit, Limit, Limit]:
    """The pair, address and user limits, in that order."""
    return (
        Limit("for this username from this address", "login_attempts_per_minute", settings.login_attempts_per_minute, 60.0, "a minute"),
        Limit("from this address", "login_attempts_per_address_per_minute", settings.login_attempts_per_address_per_minute, 60.0, "a minute"),
        Limit("for this username", "login_attempts_per_user_per_hour", settings.login_attempts_per_user_per_hour, 3600.0, "an hour"),
    )


@dataclass(frozen=True)
class Reservation:
    """Slots taken by one attempt: (window key, the attempt's moment) for each limit."""

    slots: tuple[tuple[tuple[str, ...], float], ...]


class LoginLimiter:
    """Sliding windows of recent failed (or still running) login attempts, by key."""

    def __init__(self, pair: Limit, address: Limit, user: Limit):
        self.pair, self.address, self.user = pair, address, user
        self._attempts: dict[tuple[str, ...], deque[float]] = {}
        self._prune_above = PRUNE_ABOVE_KEYS

    def reserve(self, username: str, client_address: str) -> Reservation:
        """Count an attempt now, or raise RateLimited (with the limit's name and Retry-After)
        when any window it falls in is full; nothing is counted then."""
        moment = time.monotonic()
        keyed = [(("pair", username, client_address), self.pair), (("addr", client_address), self.address),
                 (("user", username), self.user)]
        for key, limit in keyed:
            attempts = self._recent(key, limit, moment)
            if attempts is not None and len(attempts) >= limit.count:
                retry_after = max(attempts[0] + limit.window_s - moment, 1.0)
                raise RateLimited(f"too many failed logins {limit.scope}: the limit is {limit.count} {limit.per} "
                                  f"({limit.setting}); retry in {retry_after:.0f} s", retry_after)
        if len(self._attempts) > self._prune_above:
            self._prune(moment)
        for key, _ in keyed:
            self._attempts.setdefault(key, deque()).append(moment)
        return Reservation(tuple((key, moment) for key, _ in keyed))

    def release(self, reservation: Reservation) -> None:
        """The attempt succeeded: it is not a failure. The pair's earlier failures are forgiven
        too (the owner's typos); the per-user count is not, so a success does not reopen it to
        guessing from elsewhere."""
        for key, moment in reservation.slots:
            attempts = self._attempts.get(key)
            if attempts is None:
                continue
            if key[0] == "pair":
                attempts.clear()
            else:
                with contextlib.suppress(ValueError):  # already out of its window
                    attempts.remove(moment)
            if not attempts:
                del self._attempts[key]

    def _recent(self, key: tuple[str, ...], limit: Limit, moment: float) -> deque[float] | None:
        attempts = self._attempts.get(key)
        while attempts and attempts[0] <= moment - limit.window_s:
            attempts.popleft()
        return attempts

    def _window(self, key: tuple[str, ...]) -> float:
        return {"pair": self.pair, "addr": self.address, "user": self.user}[key[0]].window_s

    def _prune(self, moment: float) -> None:
        stale = [key for key, attempts in self._attempts.items() if not attempts or attempts[-1] <= moment - self._window(key)]
        for key in stale:
            del self._attempts[key]
        self._prune_above = max(PRUNE_ABOVE_KEYS, 2 * len(self._attempts))
