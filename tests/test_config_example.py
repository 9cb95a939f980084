"""``mcp-config.example.json``: every entry has its client's shape, and every entry works today.

"Works today" means on a machine where the package is on no registry: the stdio entries run the
installed ``atlas-image-mcp`` command (``uv tool install`` / ``pipx install`` of a checkout or wheel,
or the README's virtual environment). Each is started the way its client starts it: the command
(given as its absolute path, as the README advises for clients with a short ``PATH``), the args,
and the entry's ``env`` merged over the client SDK's default environment. Each then draws a picture
with ``generate_image``: the offline entries as written, the others with ``ATLAS_MCP_OFFLINE=1``
added (their key is a placeholder). The hosted entries are pointed at a local server that demands
exactly the headers they carry.
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
from .http_helpers import mcp_client, serve_app

pytestmark = pytest.mark.timeout(90)

EXAMPLE = Path(__file__).resolve().parents[1] / "mcp-config.example.json"
README = EXAMPLE.parent / "README.md"
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


def stdio_entries() -> list[str]:
    return [name for name in examples() if "command" in the_entry(name)]


def test_the_example_names_every_client_and_each_entry_has_its_clients_shape() -> None:
    found = examples()
    assert {"claude_desktop", "claude_desktop_offline", "cursor", "vscode", "vscode_offline",
            "vscode_hosted", "hosted_streamable_http", "hosted_sse"} <= set(found)  # fmt: skip
    for name, config in found.items():
        vscode = name.startswith("vscode")
        assert ("servers" if vscode else "mcpServers") in config, name
        for entry in servers_of(config).values():
            if vscode:
                assert entry["type"] in ("stdio", "http", "sse"), name
            if "command" in entry:
                assert isinstance(entry["args"], list) and all(isinstance(a, str) for a in entry["args"])
                expected_env = {"ATLAS_MCP_OFFLINE"} if name.endswith("_offline") else {"ATLASCLOUD_API_KEY"}
                assert set(entry["env"]) == expected_env, name
                assert entry.get("type", "stdio") == "stdio"
            else:
                assert entry["type"] in ("http", "sse") and "command" not in entry, name
    vscode = examples()["vscode"]
    [prompt] = vscode["inputs"]
    assert prompt["password"] is True
    assert the_entry("vscode")["env"]["ATLASCLOUD_API_KEY"] == "${input:" + prompt["id"] + "}"


def test_every_stdio_entry_runs_the_installed_command_not_a_registry_download() -> None:
    for name in stdio_entries():
        entry = the_entry(name)
        assert (entry["command"], entry["args"]) == ("atlas-image-mcp", []), name


def installed(command: str) -> str:
    """The absolute path of an installed command (what the README says to paste for a short PATH)."""
    found = shutil.which(command, path=str(Path(sys.executable).parent)) or shutil.which(command)
    assert found, f"{command} is not installed (pip install -e '.[test]' puts it next to {sys.executable})"
    return found


@pytest.mark.subprocess
@pytest.mark.parametrize("name", stdio_entries())
async def test_each_stdio_entry_starts_as_its_client_starts_it_and_draws_a_picture(
    name: str, tmp_path: Path
) -> None:
    entry = the_entry(name)
    env = dict(entry["env"])
    if "ATLAS_MCP_OFFLINE" not in env:  # a placeholder key: run the same entry against the emulator
        env["ATLAS_MCP_OFFLINE"] = "1"
    env = {k: re.sub(r"\$\{input:[^}]+\}", "typed-into-vscode-prompt", v) for k, v in env.items()}
    # the client SDK merges env over its default environment (HOME, PATH, ... of the client)
    params = StdioServerParameters(command=installed(entry["command"]), args=entry["args"], env=env)
    async with Client(params, read_timeout_seconds=60) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("generate_image", {"prompt": "a fox in the snow", "width": 512})
    assert tools == TOOL_NAMES
    assert result.is_error is False, result.content
    [output] = result.structured_content["outputs"]
    assert output["width"] == 512 and Path(output["path"]).is_file()
    assert Path(output["path"]).is_relative_to(Path.home()), "saved under the client's home folder"
    assert any(block.type == "image" for block in result.content), "the picture is shown in the client"


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
    runtime = Runtime.create(
        Settings(auth_token=TOKEN, user_keys=True), offline=True, remote=True, emulator_latency=0.05
    )
    with serve_app(create_http_app(runtime)) as base:
        transport = {"http": "streamable-http", "sse": "sse"}[entry["type"]]
        async with mcp_client(base, transport, headers) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("generate_image", {"prompt": "a fox", "width": 512})
    assert tools == TOOL_NAMES and result.is_error is False, result.content
    assert result.structured_content["outputs"][0]["width"] == 512


def test_the_readme_shows_every_example_exactly_and_no_other_config() -> None:
    readme = README.read_text(encoding="utf-8")
    start, end = readme.index("\n## Connect your client\n"), readme.index("\n## Tools\n")
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", readme[start:end], re.S)]
    configs = list(examples().values())
    assert all(block in configs for block in blocks), "a README config differs from mcp-config.example.json"
    assert all(config in blocks for config in configs), "an example config is missing from the README"
    assert (
        "claude mcp add atlas-image -e ATLASCLOUD_API_KEY=your-atlas-cloud-api-key -- atlas-image-mcp"
        in readme
    )
    assert re.search(
        r"claude mcp add --transport http atlas-image http://\S+/mcp --header \"Authorization: Bearer ",
        readme,
    )


def test_the_readme_says_how_to_install_the_command_today_and_keeps_the_registry_form() -> None:
    section = README.read_text(encoding="utf-8").split("\n## Connect your client\n", 1)[1]
    for words in (
        "uv tool install /absolute/path/to/atlas-image-mcp",
        "pipx install /absolute/path/to/atlas-image-mcp",
        "which atlas-image-mcp",
        "where atlas-image-mcp",
        "uvx atlas-image-mcp",
    ):
        assert words in section, words
