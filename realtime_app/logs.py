"""Logging set-up: plain text for people, JSON lines for log collectors.

Every line logged while a REST request is handled carries its request id, and both formats
mask bearer tokens and JWTs wherever they appear: a URL, an exception, a third-party message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from contextvars import ContextVar
from typing import TextIO

# A JWT (its header is base64url JSON, so it starts "eyJ") or whatever follows "Bearer".
_SECRET = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|(?i:bearer)\s+[A-Za-z0-9._~+/-]+=*")
REDACTED = "<redacted>"

# Set per asyncio task: each request's handler runs in a task of its own.
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def bind_request_id(request_id: str) -> None:
    """Tag every line logged from now on in the current request's task with `request_id`."""
    _request_id.set(request_id)


def redact(text: str) -> str:
    return _SECRET.sub(REDACTED, text)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = _request_id.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, process_name: str = "") -> None:
        process = f"[{process_name}] " if process_name else ""
        super().__init__(f"%(asctime)s %(levelname)-7s {process}%(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        return f"{text} [request {request_id}]" if request_id else text

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str = "") -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process_name:
            entry["process"] = self.process_name
        for key in ("request_id", "client", "method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False))


def log_handler(log_format: str, stream: TextIO | None = None, process_name: str = "") -> logging.Handler:
    """A handler writing `log_format` ("text" or "json") lines to `stream` (stderr by default),
    each naming the process when `process_name` is given, so the lines of several processes
    can be told apart."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(process_name) if log_format == "json" else TextFormatter(process_name))
    handler.addFilter(RequestIdFilter())
    return handler


def setup_logging(log_format: str, level: str, process_name: str = "") -> None:
    root = logging.getLogger()
    root.handlers[:] = [log_handler(log_format, process_name=process_name)]
    root.setLevel(level.upper())
