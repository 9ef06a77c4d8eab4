"""Strict JSON in, compact JSON out: one codec for REST bodies and socket frames."""

from __future__ import annotations

import json
from typing import Any

from realtime_app.errors import BadRequest

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes | str, what: str = "body") -> Any:
    """Parse JSON, refusing NaN/Infinity, invalid UTF-8 and other non-standard input."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise BadRequest(f"the {what} is not valid UTF-8") from None
    except RecursionError:
        raise BadRequest(f"the {what} is nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"the {what} is not valid JSON: {exc}") from None


def dumps(value: Any) -> str:
    return _encoder.encode(value)
