"""``mcp-config.example.json``: every entry has its client's shape, and the entries work as written.

The stdio entries are launched the way a client would (command resolved next to this interpreter,
since ``uvx`` is not assumed to be installed) and asked for their tools; the hosted entries are
pointed at a local server that demands exactly the headers they carry.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from mcp import Client, StdioServerParameters

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import TOOL_NAMES
from .http_helpers import child_env, mcp_client, serve_app

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parents[1] / "mcp-config.example.json"
TOKEN = "tok-config-example-0123456789"
USER_KEY = "apikey-CONFIG-user-key-0123456789"


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
    return entry


def test_the_example_names_every_client_and_each_entry_has_its_clients_shape() -> None:
    found = examples()
    assert {"claude_desktop_uvx", "claude_desktop_installed", "cursor", "vscode", "hosted_streamable_http",
            "hosted_sse"} <= set(found)  # fmt: skip
    for name, config in found.items():
        vscode = name.startswith("vscode")
        assert ("servers" if vscode else "mcpServers") in config, name
        for entry in servers_of(config).values():
            if vscode:
                assert entry["type"] in ("stdio", "http", "sse"), name
            if "command" in entry:
                assert isinstance(entry["args"], list) and all(isinstance(a, str) for a in entry["args"])
                assert set(entry["env"]) == {"ATLASCLOUD_API_KEY"}, name
                assert entry.get("type", "stdio") == "stdio"
            else:
                assert entry["type"] in ("http", "sse") and "command" not in entry, name
    vscode = examples()["vscode"]
    [prompt] = vscode["inputs"]
    assert prompt["password"] is True
    assert the_entry("vscode")["env"]["ATLASCLOUD_API_KEY"] == "${input:" + prompt["id"] + "}"


def test_uvx_entries_run_the_same_command_as_the_installed_entry() -> None:
    installed = the_entry("claude_desktop_installed")
    assert installed["command"] == "atlas-image-mcp"
    for name in ("claude_desktop_uvx", "cursor", "vscode"):
        entry = the_entry(name)
        assert entry["command"] == "uvx", name
        assert entry["args"] == ["atlas-image-mcp", *installed["args"]], name  # `uvx PKG` runs PKG's script


@pytest.mark.subprocess
async def test_the_installed_stdio_entry_launches_as_written_and_lists_the_tools(tmp_path: Path) -> None:
    entry = the_entry("claude_desktop_installed")
    command = Path(sys.executable).with_name(entry["command"])
    assert command.is_file() or shutil.which(entry["command"]), "the console script is not installed"
    env = child_env(tmp_path, **entry["env"])
    env["ATLASCLOUD_API_KEY"] = "apikey-placeholder-not-used-offline"
    params = StdioServerParameters(command=str(command), args=[*entry["args"], "--offline"], env=env)
    async with Client(params, read_timeout_seconds=30) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        dry = await client.call_tool("generate_image", {"prompt": "a fox", "dry_run": True})
    assert tools == TOOL_NAMES
    assert dry.is_error is False and dry.structured_content["status"] == "dry_run"


@pytest.mark.parametrize("name", ["hosted_streamable_http", "hosted_sse", "vscode_hosted"])
async def test_the_hosted_entries_reach_a_server_that_wants_their_headers(name: str) -> None:
    entry = the_entry(name)
    url = urlsplit(entry["url"])
    assert url.scheme == "https" and url.path == {"http": "/mcp", "sse": "/sse"}[entry["type"]]
    headers = dict(entry["headers"])
    assert set(headers) == {"Authorization", "X-Atlas-Api-Key"}
    assert headers["Authorization"].startswith("Bearer ")
    headers["Authorization"] = f"Bearer {TOKEN}"
    headers["X-Atlas-Api-Key"] = USER_KEY
    runtime = Runtime.create(Settings(auth_token=TOKEN, user_keys=True), offline=True, remote=True)
    with serve_app(create_http_app(runtime)) as base:
        transport = {"http": "streamable-http", "sse": "sse"}[entry["type"]]
        async with mcp_client(base, transport, headers) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            dry = await client.call_tool("generate_image", {"prompt": "a fox", "dry_run": True})
    assert tools == TOOL_NAMES and dry.is_error is False


def test_the_readme_shows_every_example_exactly_and_no_other_config() -> None:
    readme = (EXAMPLE.parent / "README.md").read_text(encoding="utf-8")
    start, end = readme.index("\n## Use it from an MCP client\n"), readme.index("\n## Hosting\n")
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", readme[start:end], re.S)]
    configs = list(examples().values())
    assert all(block in configs for block in blocks), "a README config differs from mcp-config.example.json"
    assert all(config in blocks for config in configs), "an example config is missing from the README"
    assert (
        "claude mcp add atlas-image -e ATLASCLOUD_API_KEY=" in readme and "-- uvx atlas-image-mcp" in readme
    )
    assert re.search(
        r"claude mcp add --transport http atlas-image http://\S+/mcp --header \"Authorization: Bearer ",
        readme,
    )
