"""The dashboard's page loads only scripts the server serves itself, each under the strict
Content-Security-Policy; the chart's npm package is served from node_modules, and a missing
`npm ci` is named at start-up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient

import handlers.static
from handlers.static import VendorAssetMissing
from tests.helpers import ApiClient


async def test_every_script_of_the_page_is_served_under_the_strict_policy(api: ApiClient) -> None:
    client = AsyncHTTPClient()
    page = await client.fetch(api.base + "/static/index.html")
    scripts = re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', page.body.decode())
    assert "/vendor/smoothie.js" in scripts and "/static/dashboard/core.js" in scripts and scripts[-1] == "/static/dashboard.js"
    for src in scripts:
        reply = await client.fetch(api.base + src, raise_error=False)
        assert reply.code == 200, src
        assert "javascript" in reply.headers["Content-Type"], (src, reply.headers["Content-Type"])
        assert reply.headers["X-Content-Type-Options"] == "nosniff", src
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe" not in policy and "style-src" not in policy, policy


def test_a_missing_npm_install_is_named(tmp_path: Path) -> None:
    with pytest.raises(VendorAssetMissing, match="npm ci"):
        handlers.static.urls(tmp_path / "static", tmp_path)
