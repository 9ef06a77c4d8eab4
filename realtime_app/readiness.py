"""Why a process cannot serve: what /api/v1/ready answers, as the checks report it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotReady:
    """A reason anyone may read, and the error behind it (driver text, addresses), which only
    admins and the log see."""

    reason: str
    detail: str | None = None
