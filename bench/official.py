"""The official Atlas Cloud MCP server, the Node package ``atlascloud-mcp``, launched as its README
says (``npx -y atlascloud-mcp``), which the report compares this server with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.procs import clean_env

NPX_PACKAGE = "atlascloud-mcp"


def npx_command() -> list[str] | None:
    """``npx -y atlascloud-mcp``, or None when npx is missing."""
    npx = shutil.which("npx")
    return [npx, "-y", NPX_PACKAGE] if npx else None


def official_env() -> dict[str, str]:
    """It starts without a key (it reads the key per call), so it gets a dummy one."""
    return clean_env(ATLASCLOUD_API_KEY="dummy-key-for-startup")


def npx_package_json() -> Path | None:
    """The package.json of the newest copy in npx's cache, if any."""
    found = sorted(Path.home().glob(f".npm/_npx/*/node_modules/{NPX_PACKAGE}/package.json"))
    return found[-1] if found else None


def cache_note(package_json: Path) -> str:
    version = json.loads(package_json.read_text()).get("version", "?")
    return f"{NPX_PACKAGE} {version} from the npx cache"
