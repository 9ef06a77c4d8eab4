"""Which browser origins may use the endpoint: same-origin, plus an allow-list."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


class OriginPolicy:
    """Which browser origins may use an endpoint: the page's own host, plus an allow-list."""

    def __init__(self, allowed: Iterable[str]) -> None:
        entries = list(allowed)
        self.allows_any = "*" in entries
        normalized = (normalized_origin(entry) for entry in entries if entry != "*")
        self._allowed = frozenset(origin for origin in normalized if origin is not None)
        self.frame_ancestors = None if self.allows_any else " ".join(["frame-ancestors 'self'", *sorted(self._allowed)])
        """CSP for the pages sockjs-client frames (iframe, htmlfile): they relay for whatever
        page embeds them, so only pages the policy allows may embed them."""
        self.same_origin_only = not self.allows_any and not self._allowed

    def allows(self, origin: str, host: str) -> bool:
        """Same-origin is the Origin's host equal to the Host header, as Tornado judges it."""
        if self.allows_any:
            return True
        normalized = normalized_origin(origin)
        if normalized is None:
            return False
        return urlsplit(origin).netloc.lower() == host.lower() or normalized in self._allowed


def normalized_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port (a trailing slash, common
    in configuration, is dropped), or None if ``value`` is not an http(s) origin (``"null"``,
    sent by sandboxed pages and file URLs, is not)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username is not None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = 80 if parts.scheme == "http" else 443
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default_port) else "")
