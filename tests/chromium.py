"""The browser the browser tests drive: the headless Chromium that ./scripts/install unpacks
from the npm package @sparticuz/chromium into .chromium/ (no root, no system packages), or a
Chromium of the system's when REALTIME_TEST_CHROMIUM names its binary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright

UNPACKED = Path(__file__).resolve().parent.parent / ".chromium"
# Headless, and off the network: no QUIC, no first-run, update, sync or background requests.
ARGS = ["--headless", "--no-sandbox", "--no-zygote", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch(playwright: Playwright) -> Browser:
    """Start Chromium, or fail the test with what to do: a missing browser is a broken set-up,
    not a reason to skip."""
    configured = os.environ.get("REALTIME_TEST_CHROMIUM")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"REALTIME_TEST_CHROMIUM={configured} is not a file", pytrace=False)
        return playwright.chromium.launch(executable_path=configured, args=ARGS)
    binary = UNPACKED / "chromium"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run ./scripts/install, which unpacks it from node_modules/@sparticuz/chromium",
                    pytrace=False)
    # The binary links against the NSS libraries unpacked beside it, and finds fonts through its own fonts.conf.
    env = {**os.environ, "LD_LIBRARY_PATH": str(UNPACKED / "al2023" / "lib"), "FONTCONFIG_FILE": str(UNPACKED / "fonts.conf")}
    return playwright.chromium.launch(executable_path=str(binary), args=ARGS, env=env)
