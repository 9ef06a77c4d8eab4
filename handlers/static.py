"""The dashboard's files under /static, the redirect to it from /, and the npm package it draws
its chart with (smoothie, pinned in package-lock.json) under /vendor, with security headers.

The dashboard shows documents that any writer of a tenant controls, so its pages run under a
Content-Security-Policy that allows scripts from this origin only: markup stored in a field
could not run even if a bug rendered it as HTML. Nothing may frame the dashboard (clickjacking).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tornado import web

REPO_ROOT = Path(__file__).resolve().parent.parent
VENDOR_SMOOTHIE_URL = "/vendor/smoothie.js"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# A Host header fit to be echoed into the policy: a name or an address, and a port.
_SANE_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


def dashboard_policy(host: str) -> str:
    """The dashboard's CSP. Older browsers do not count ws:/wss: as 'self', so the socket's
    origin is named; SockJS's iframe transports frame pages of this origin (frame-src); the
    page's own favicon is a data: URL (img-src)."""
    sockets = f" ws://{host} wss://{host}" if _SANE_HOST.fullmatch(host) else ""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        f"connect-src 'self'{sockets}",
        "img-src 'self' data:",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


class DashboardFileHandler(web.StaticFileHandler):
    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        self.set_header("Content-Security-Policy", dashboard_policy(self.request.host))


class DashboardRedirect(web.RedirectHandler):
    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)


class VendorAssetMissing(FileNotFoundError):
    """A front-end package the dashboard loads is not in node_modules: ``npm ci`` was not run."""


def urls(static_dir: str | Path, repo_root: str | Path = REPO_ROOT) -> list[tuple[str, type, dict[str, Any]]]:
    """Raises `VendorAssetMissing` when smoothie is not under ``repo_root``/node_modules."""
    smoothie = Path(repo_root) / "node_modules" / "smoothie"
    if not (smoothie / "smoothie.js").is_file():
        raise VendorAssetMissing(f"{smoothie / 'smoothie.js'} not found: run `npm ci` in {repo_root} to install smoothie (pinned in package.json)")
    directory, _, filename = VENDOR_SMOOTHIE_URL.rpartition("/")
    return [
        (r"/", DashboardRedirect, {"url": "/static/index.html"}),
        (r"/static/(.*)", DashboardFileHandler, {"path": str(static_dir)}),
        (f"{re.escape(directory)}/({re.escape(filename)})", DashboardFileHandler, {"path": str(smoothie)}),
    ]
