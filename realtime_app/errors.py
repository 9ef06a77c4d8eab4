"""Domain errors with machine-readable codes.

Each error maps to an HTTP status in one place (handlers/base.py) and to a protocol error
frame in one place (realtime_app/live/connection.py); nothing else decides how an error looks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class AppError(Exception):
    """Base of every expected failure; `code` is the protocol error code."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, errors: list[FieldError] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class BadRequest(AppError):
    status, code, title = 400, "bad_request", "Malformed request"


class BadFilter(AppError):
    status, code, title = 400, "bad_filter", "Invalid filter"


class Unauthorized(AppError):
    status, code, title = 401, "auth_failed", "Authentication required"


class TokenExpired(Unauthorized):
    code, title = "token_expired", "Token expired"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class UnknownCollection(NotFound):
    code, title = "unknown_collection", "Unknown collection"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class PreconditionFailed(AppError):
    status, code, title = 412, "precondition_failed", "Precondition failed"


class PayloadTooLarge(AppError):
    status, code, title = 413, "too_large", "Payload too large"


class InvalidDocument(AppError):
    status, code, title = 422, "invalid_document", "Invalid document"


class RateLimited(AppError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str, retry_after: float):
        super().__init__(detail)
        self.retry_after = retry_after



class AuthRequired(Unauthorized):
    code, title = "auth_required", "Authentication required"


class TooManySubscriptions(AppError):
    status, code, title = 429, "too_many_subscriptions", "Too many subscriptions"


class UnknownSubscription(NotFound):
    code, title = "unknown_subscription", "Unknown subscription"
