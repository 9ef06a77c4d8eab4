"""Strict JSON in, compact JSON out: one codec for REST bodies and socket frames."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from realtime_app.errors import BadRequest

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# Deeper values are refused before anything walks them recursively (MongoDB itself stops at 100 levels).
MAX_DEPTH = 64
# Only a \uD800-\uDFFF escape can put a lone surrogate, which UTF-8 and BSON cannot hold, into a string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is too large for a number")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads(raw: bytes | str, what: str = "body") -> Any:
    """Parse JSON, refusing NaN/Infinity, numbers beyond a double, lone surrogates, invalid UTF-8 and deep nesting."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        if _SURROGATE_ESCAPE.search(text):
            _encoder.encode(value).encode("utf-8")
    except UnicodeError:
        raise BadRequest(f"the {what} is not valid UTF-8 (or escapes a lone surrogate)") from None
    except RecursionError:
        raise BadRequest(f"the {what} is nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"the {what} is not valid JSON: {exc}") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise BadRequest(f"the {what} is nested deeper than {MAX_DEPTH} levels")
    return value


def dumps(value: Any) -> str:
    return _encoder.encode(value)
