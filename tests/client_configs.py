"""The client configurations of mcp-config.example.json, and how this machine runs them.

Shared by ``test_config_example.py`` (each entry, the README's copies, links and lines) and
``test_install_routes.py`` (each install route with its real client).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .http_helpers import ENTRY_POINT

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "mcp-config.example.json"
README = ROOT / "README.md"
#: The placeholders the README asks to replace with the clone's folder, and the command in it.
CLONE = "/absolute/path/to/atlas-image-mcp"
VENV_COMMAND = f"{CLONE}/.venv/bin/atlas-image-mcp"
#: uv's cache as this machine has it (the tests move HOME, so it is read when this is imported).
UV_CACHE = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")


def examples() -> dict[str, Any]:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return {name: value for name, value in data.items() if not name.startswith("_")}


def servers_of(config: dict[str, Any]) -> dict[str, Any]:
    """The server table: ``servers`` for VS Code, ``mcpServers`` for everyone else (never both)."""
    assert ("servers" in config) != ("mcpServers" in config), config
    table = config.get("servers") or config["mcpServers"]
    assert isinstance(table, dict) and table
    return table


def the_entry(name: str) -> dict[str, Any]:
    [entry] = servers_of(examples()[name]).values()
    return dict(entry)


def script(name: str) -> ModuleType:
    """One of ``scripts/*.py``, imported by its path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def uv_environment() -> dict[str, str]:
    """What uv needs on this machine (never from a client's configuration): its cache, the TLS roots
    of the registry proxy, and no Python downloads (the system's Python is enough)."""
    env = {"UV_CACHE_DIR": UV_CACHE, "UV_PYTHON_DOWNLOADS": "never"}
    env.update({k: os.environ[k] for k in ("SSL_CERT_FILE", "UV_INDEX_URL") if k in os.environ})
    return env


def as_this_machine_runs_it(entry: dict[str, Any]) -> tuple[str, list[str], dict[str, str]]:
    """The entry's command, args and extra env, with this machine's clone for the placeholders: the
    venv's command is the one installed beside this interpreter, uvx the one pip installed beside it."""
    command, args = entry["command"], [arg.replace(CLONE, str(ROOT)) for arg in entry["args"]]
    extra: dict[str, str] = {}
    if command == VENV_COMMAND:
        command = str(ENTRY_POINT)
    elif command == "uvx":
        command = str(Path(sys.executable).with_name("uvx"))
        extra = uv_environment()
    return command, args, extra
