"""sockjs-client, served from node_modules, for the iframe transports and for pages."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tornado.web import StaticFileHandler, URLSpec

from realtime_app.sockjs.http import SECURITY_HEADERS
from realtime_app.sockjs.settings import VENDOR_SOCKJS_URL


class VendorAssetMissingError(FileNotFoundError):
    """sockjs-client is not where `vendor_urls` looks: ``npm ci`` was not run."""


def vendor_urls(repo_root: str | os.PathLike[str] | None = None) -> list[URLSpec]:
    """URL spec serving sockjs-client at `VENDOR_SOCKJS_URL` (and its source map) from
    ``node_modules/sockjs-client/dist`` under ``repo_root``, by default this checkout's root.

    Raises `VendorAssetMissingError` if the file is not there.
    """
    root = Path(repo_root) if repo_root is not None else Path(__file__).resolve().parents[2]
    dist = root / "node_modules" / "sockjs-client" / "dist"
    if not (dist / "sockjs.min.js").is_file():
        raise VendorAssetMissingError(f"{dist / 'sockjs.min.js'} not found: run `npm ci` in {root} to install sockjs-client (pinned in package.json)")
    directory, _, filename = VENDOR_SOCKJS_URL.rpartition("/")
    pattern = f"{re.escape(directory)}/({re.escape(filename)}(?:\\.map)?)"
    return [URLSpec(pattern, _VendorFile, {"path": str(dist)})]


class _VendorFile(StaticFileHandler):
    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
