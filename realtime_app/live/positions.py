"""Positions: where a change sits in the database's history, as an opaque wire string.

A position is a MongoDB cluster time (seconds, increment) plus an index among the events that
share it (a transaction's writes do). Being cluster times, positions mean the same thing on
every process of a deployment, so a client may resume on another process. On the wire they are
fixed-width hex, so string order is history order.
"""

from __future__ import annotations

import re

from bson.timestamp import Timestamp

_WIRE = re.compile(r"^[0-9a-f]{20}$")
# Index given to a snapshot's position: after every event at the same cluster time.
LAST_INDEX = 0xFFFF


def encode(seconds: int, increment: int, index: int = 0) -> int:
    return (seconds << 48) | (increment << 16) | index


def of_timestamp(ts: Timestamp, index: int = 0) -> int:
    return encode(ts.time, ts.inc, index)


def after_all_at(ts: Timestamp) -> int:
    """The position just after every event at cluster time `ts` (for snapshot reads at ts)."""
    return encode(ts.time, ts.inc, LAST_INDEX)


def to_wire(position: int) -> str:
    return f"{position:020x}"


def from_wire(text: object) -> int | None:
    """The position a client sent back, or None when it is not one of ours."""
    if not isinstance(text, str) or not _WIRE.match(text):
        return None
    return int(text, 16)


def seconds(position: int) -> int:
    return position >> 48

