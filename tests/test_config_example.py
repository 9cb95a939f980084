"""``mcp-config.example.json``: every entry has its client's shape, and every entry works today.

"Works today" means on a machine where the package is on no registry: the stdio entries run the
command of the virtual environment that the README's "Try it" makes in a clone, or the clone through
``uvx --from``. Each is started the way its client starts it: the command (with the clone's folder
for the placeholder ``/absolute/path/to/atlas-image-mcp``: this environment's installed command, or
this checkout for uvx), the args, and the entry's ``env`` merged over the client SDK's default
environment. Each then draws a picture with ``generate_image``: the offline entries as written, the
others with ``ATLAS_MCP_OFFLINE=1`` added (their key is a placeholder). The hosted entries are
pointed at a local server that demands exactly the headers they carry. The mcp-remote entry (a
bridge to a hosted server) is run by ``tests/test_install_routes.py``.

The one-click links and ``claude mcp add`` lines of the README are made from these entries by
``scripts/client_links.py``; the tests here decode each one as its client does and compare.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from mcp import Client, StdioServerParameters

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .client_configs import (
    CLONE,
    README,
    ROOT,
    VENV_COMMAND,
    as_this_machine_runs_it,
    examples,
    script,
    servers_of,
    the_entry,
)
from .conftest import TOOL_NAMES
from .http_helpers import mcp_client, serve_app

pytestmark = pytest.mark.timeout(90)

TOKEN = "tok-config-example-0123456789"
USER_KEY = "apikey-CONFIG-user-key-0123456789"


def stdio_entries() -> list[str]:
    """The entries that start this server (not the mcp-remote bridge to a hosted one)."""
    return [name for name in examples() if "command" in the_entry(name) and not name.endswith("_remote")]


links = script("client_links")


def test_the_example_names_every_client_and_each_entry_has_its_clients_shape() -> None:
    found = examples()
    assert {"claude_desktop", "claude_desktop_offline", "claude_desktop_uvx", "claude_desktop_remote",
            "cursor", "vscode", "vscode_offline", "vscode_hosted", "hosted_streamable_http",
            "hosted_sse"} <= set(found)  # fmt: skip
    for name, config in found.items():
        vscode = name.startswith("vscode")
        assert ("servers" if vscode else "mcpServers") in config, name
        for entry in servers_of(config).values():
            if vscode:
                assert entry["type"] in ("stdio", "http", "sse"), name
            if "command" in entry:
                assert isinstance(entry["args"], list) and all(isinstance(a, str) for a in entry["args"])
                expected_env = (
                    {"ATLAS_MCP_OFFLINE"} if name.endswith("_offline")
                    else {"AUTH_HEADER"} if name.endswith("_remote")
                    else {"ATLASCLOUD_API_KEY"}
                )  # fmt: skip
                assert set(entry["env"]) == expected_env, name
                assert entry.get("type", "stdio") == "stdio"
            else:
                assert entry["type"] in ("http", "sse") and "command" not in entry, name
    vscode = examples()["vscode"]
    [prompt] = vscode["inputs"]
    assert prompt["password"] is True
    assert the_entry("vscode")["env"]["ATLASCLOUD_API_KEY"] == "${input:" + prompt["id"] + "}"


def test_every_stdio_entry_runs_what_works_before_the_package_is_on_pypi() -> None:
    """The clone's venv command (an absolute path: desktop clients have a short PATH), or the clone
    through ``uvx --from``; never ``uvx atlas-image-mcp``, which answers "not found" until a release."""
    npm_tools = json.loads((ROOT / "scripts" / "npm-tools" / "package.json").read_text(encoding="utf-8"))
    bridge = ["-y", f"mcp-remote@{npm_tools['dependencies']['mcp-remote']}"]
    for name in examples():
        entry = the_entry(name)
        if "command" not in entry:
            continue
        if name.endswith("_remote"):  # the bridge to a hosted server, at the version the tests run
            assert entry["command"] == "npx" and entry["args"][:2] == bridge, name
        else:
            assert (entry["command"], entry["args"]) in (
                (VENV_COMMAND, []),
                ("uvx", ["--from", CLONE, "atlas-image-mcp"]),
            ), name


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
    command, args, machine = as_this_machine_runs_it(entry)
    params = StdioServerParameters(command=command, args=args, env={**env, **machine})
    async with Client(params, read_timeout_seconds=180) as client:
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
        f"claude mcp add atlas-image -e ATLASCLOUD_API_KEY=your-atlas-cloud-api-key -- {VENV_COMMAND}"
        in readme
    )
    assert re.search(
        r"claude mcp add --transport http atlas-image https?://\S+/mcp --header \"Authorization: Bearer ",
        readme,
    )


def test_the_readme_says_what_command_works_today_how_to_get_uv_and_keeps_the_registry_form() -> None:
    readme = README.read_text(encoding="utf-8")
    try_it = readme.split("\n## Try it (no key, no network)\n", 1)[1].split("\n## ", 1)[0]
    assert "sudo apt install python3-venv" in try_it, "Debian and Ubuntu lack venv until then"
    section = readme.split("\n## Connect your client\n", 1)[1].split("\n### ", 1)[0]
    for words in (
        VENV_COMMAND,
        f"uvx --from {CLONE} atlas-image-mcp",
        "https://docs.astral.sh/uv/",
        "curl -LsSf https://astral.sh/uv/install.sh | sh",
        "pipx install uv",
        "which uvx",
        "uvx atlas-image-mcp",
        ".venv\\Scripts\\atlas-image-mcp.exe",
    ):
        assert words in section, words
    assert "install the command once" not in readme.lower()


# --- the one-click links and claude mcp add lines, made from the same entries ---------------------


def test_the_readme_shows_the_links_and_lines_the_generator_makes_from_the_example() -> None:
    assert links.readme_section() == links.section(), "run python scripts/client_links.py --write"


_LINK = re.compile(r"\]\((https://(?:cursor\.com|vscode\.dev)/[^)\s]+)\)")


def test_every_install_link_of_the_readme_decodes_to_its_example_entry() -> None:
    found = _LINK.findall(README.read_text(encoding="utf-8"))
    assert len(found) == len(links.LINKS)
    for example, link in zip(links.LINKS, found, strict=True):
        config = examples()[example]
        [(name, entry)] = servers_of(config).items()
        wanted = {**entry, "command": "uvx", "args": ["atlas-image-mcp"]}  # what works for anyone, from PyPI
        if link.startswith("https://cursor.com/en/install-mcp?"):
            assert links.decode_cursor(link) == (name, wanted), example
        else:
            assert link.startswith("https://vscode.dev/redirect/mcp/install?"), link
            assert links.decode_vscode(link) == (name, wanted, config.get("inputs")), example


def test_every_claude_mcp_add_line_of_the_readme_is_its_example_entry() -> None:
    readme = README.read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines() if line.startswith("claude mcp add ")]
    assert len(lines) == len(links.CLAUDE_LINES)
    for example, line in zip(links.CLAUDE_LINES, lines, strict=True):
        [(name, entry)] = servers_of(examples()[example]).items()
        stored = links.parse_claude_add(line)
        if "url" in entry:
            assert stored == (name, {"type": entry["type"], "url": entry["url"], "headers": entry["headers"]})
        else:
            assert stored == (name, {"command": entry["command"], "args": entry["args"], "env": entry["env"]})
