"""The README stays true to the code: every setting and every script it relies on exists."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from realtime_app.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    for field in dataclasses.fields(Settings):
        row = next((line for line in README.splitlines() if line.startswith(f"| `{field.name}` |")), None)
        assert row is not None, f"README lacks the setting {field.name}"
        assert f"`{ENV_PREFIX}{field.name.upper()}`" in row
        default = "(empty)" if field.default == "" else str(field.default)
        assert f"`{default}`" in row, f"README's default for {field.name} is out of date"


def test_scripts_named_in_the_readme_exist_and_are_executable() -> None:
    for name in set(re.findall(r"scripts/([a-z][a-z_.-]*[a-z])", README)):
        path = ROOT / "scripts" / name
        assert path.is_file(), f"README names scripts/{name}, which does not exist"
        assert os.access(path, os.X_OK), f"scripts/{name} is not executable"
