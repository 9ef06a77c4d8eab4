"""The long-lived pieces of one process, handed to every handler through `initialize`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from realtime_app.auth.service import AuthService
from realtime_app.auth.tokens import TokenService
from realtime_app.config import Settings
from realtime_app.data.db import Database, describe
from realtime_app.data.resources import Resources
from realtime_app.data.store import DocumentStore
from realtime_app.readiness import NotReady

# A readiness probe that takes longer than this is itself a failure.
READY_TIMEOUT_S = 2.0

ReadinessCheck = Callable[[], Awaitable[NotReady | None]]


@dataclass
class Context:
    settings: Settings
    db: Database
    resources: Resources
    store: DocumentStore
    tokens: TokenService
    auth: AuthService
    readiness_checks: list[ReadinessCheck] = field(default_factory=list)

    async def not_ready_reasons(self) -> list[NotReady]:
        """Why the process cannot serve now; empty when MongoDB answers and every check passes."""
        reasons = []
        try:
            await asyncio.wait_for(self.db.ping(), READY_TIMEOUT_S)
        except Exception as exc:  # any failure to ping is a reason to report, not to raise
            reasons.append(NotReady("MongoDB does not answer", describe(exc)))
        for check in self.readiness_checks:
            try:
                reason = await asyncio.wait_for(check(), READY_TIMEOUT_S)
            except Exception as exc:  # a failing probe is a reason to report, not a 500
                reason = NotReady("a readiness check failed", describe(exc))
            if reason is not None:
                reasons.append(reason)
        return reasons
