"""The README stays true to the code: its configuration table is the settings' own declarations."""

from __future__ import annotations

import re
from pathlib import Path

from atlas_image_mcp.settings import ENV_VARS

README = Path(__file__).resolve().parents[1] / "README.md"
_ROW = re.compile(r"^\|\s*`(ATLAS[A-Z_]*)`\s*\|\s*([^|]*?)\s*\|")


def _configuration_rows() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = match.group(2).replace("`", "").strip()
    return rows


def test_the_readme_lists_every_setting_once_with_its_declared_default() -> None:
    rows = _configuration_rows()
    assert list(rows) == list(ENV_VARS), "the README's table and settings.py list different variables"
    for name, var in ENV_VARS.items():
        assert rows[name] == var.shown_default, (
            f"{name}: README says {rows[name]!r}, code {var.shown_default!r}"
        )
