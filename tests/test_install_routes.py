"""Each way of installing the server, exercised as its client does it.

* the Claude Desktop bundle: built with the pinned mcpb CLI, installed (unpacked) into a fresh
  folder, its manifest resolved with the mcpb library's own code (what the host runs), the server
  started from the result, and an offline picture drawn;
* a one-click install link: decoded as Cursor decodes it, and its ``uvx atlas-image-mcp`` run with
  a folder holding this checkout's wheel standing in for PyPI;
* ``claude mcp add``: the README's lines run by the real ``claude`` CLI (no login, a scratch home),
  then ``claude mcp list`` reports each server connected;
* mcp-remote: the README's Claude Desktop entry, with the pinned mcp-remote, as a stdio server in
  front of a hosted server over streamable HTTP (bearer header) and over SSE;
* the MCP Inspector the docs name, sending headers to a protected server.

The Node tools come from ``scripts/npm-tools.sh`` (skipped without npm, failing in CI). Every
process is bounded in time and ended by the test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .client_configs import CLONE, ROOT, VENV_COMMAND, examples, script, servers_of, uv_environment
from .conftest import TOOL_NAMES, text_of
from .http_helpers import ENTRY_POINT, serve_app
from .npm_tools import NpmTools, require_tools

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(300)]

TOKEN = "tok-install-routes-0123456789"
USER_KEY = "apikey-INSTALL-user-key-0123456789"
bundles = script("mcpb_bundle")
links = script("client_links")


def _picture_ok(result: Any) -> dict[str, Any]:
    assert result.is_error is False, text_of(result)
    [output] = result.structured_content["outputs"]
    assert any(block.type == "image" for block in result.content), "the picture is shown in the client"
    return dict(output)


@pytest.fixture(scope="module")
def tools() -> NpmTools:
    return require_tools()


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, built once (uv build), in a folder of its own."""
    out = tmp_path_factory.mktemp("wheel")
    uv = str(Path(sys.executable).with_name("uv"))
    proc = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        env={**os.environ, **uv_environment()},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def hosted(tmp_path: Path) -> Iterator[str]:
    """A hosted server on a loopback port that wants the server token and a user's key."""
    runtime = Runtime.create(
        Settings(auth_token=TOKEN, user_keys=True), offline=True, remote=True, emulator_latency=0.05
    )
    with serve_app(create_http_app(runtime)) as base:
        yield base


# --- the Claude Desktop bundle -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tools: NpmTools, wheel_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    [wheel] = wheel_dir.glob("*.whl")
    return Path(bundles.build(tmp_path_factory.mktemp("bundle"), wheel=wheel, mcpb=tools.mcpb_cmd()))


def _install(bundle: Path, folder: Path) -> Path:
    """What the host does on install: unpack the bundle into a folder of its own."""
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(folder)
    return folder


def _resolve(tools: NpmTools, installed: Path, home: Path, user_config: dict[str, Any]) -> Any:
    """The host's view of how to start it (the mcpb library's getMcpConfigForManifest)."""
    proc = subprocess.run(
        [str(tools.node), str(ROOT / "tests" / "mcpb_host.mjs"), str(tools.mcpb_module), str(installed),
         json.dumps(user_config)],
        env={**tools.env, "HOME": str(home)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.npm
def test_the_bundle_declares_the_key_as_a_secret_and_offline_mode_as_a_choice(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = set(archive.namelist())
    assert manifest["server"]["type"] == "uv" and "uv.lock" in names and "src/server.py" in names
    assert any(name.startswith("wheels/atlas_image_mcp-") for name in names)
    key, offline = manifest["user_config"]["atlas_api_key"], manifest["user_config"]["offline"]
    assert key["sensitive"] is True and key["type"] == "string"
    assert offline["type"] == "boolean" and offline["default"] is False
    assert {tool["name"] for tool in manifest["tools"]} == TOOL_NAMES
    assert all("default" in choice for choice in manifest["user_config"].values()), "none may stay ${...}"


@pytest.mark.npm
def test_mcpb_validate_refuses_a_manifest_it_could_not_start(tools: NpmTools, tmp_path: Path) -> None:
    broken = tmp_path / "manifest.json"
    broken.write_text(json.dumps({"manifest_version": "0.4", "name": "x", "version": "1"}), encoding="utf-8")
    proc = subprocess.run(tools.mcpb_cmd("validate", broken), env=tools.env, capture_output=True, timeout=60)
    assert proc.returncode != 0


@pytest.mark.npm
async def test_the_bundle_starts_as_claude_desktop_starts_it_and_draws_offline(
    tools: NpmTools, bundle: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"  # the person's home, as the host sees it
    home.mkdir()
    installed = _install(bundle, tmp_path / "Claude Extensions" / "atlas-image-mcp")
    untouched = _resolve(tools, installed, home, {})
    assert "${" not in json.dumps(untouched), "a choice left empty reaches the server as its placeholder"
    config = _resolve(tools, installed, home, {"offline": True})
    assert config["command"] == "uv" and config["env"]["ATLAS_MCP_OFFLINE"] == "true"
    # The host runs its own uv; here that is the one pip installed beside this interpreter, with this
    # machine's uv cache and TLS roots (the MCP SDK passes only HOME, PATH, ... to the server).
    uv_dir = str(Path(sys.executable).parent)
    env = {
        **config["env"],
        **uv_environment(),
        "HOME": str(home),
        "PATH": f"{uv_dir}{os.pathsep}{os.environ['PATH']}",
    }
    params = StdioServerParameters(command=config["command"], args=config["args"], env=env)
    with anyio.fail_after(240):
        async with Client(params, read_timeout_seconds=180) as client:
            listed = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("generate_image", {"prompt": "a fox in the snow", "width": 512})
    assert listed == TOOL_NAMES
    output = _picture_ok(result)
    assert output["width"] == 512 and Path(output["path"]).is_file()
    assert Path(output["path"]).is_relative_to(home), "saved in the person's home folder"


# --- a one-click link ------------------------------------------------------------------------------


async def test_a_cursor_link_installs_a_config_that_runs_from_pypi(wheel_dir: Path, tmp_path: Path) -> None:
    """The link's ``uvx atlas-image-mcp`` exactly; a folder with this checkout's wheel stands in for
    the release on PyPI (uv looks there besides the index)."""
    name, server = links.decode_cursor(links.link_for("cursor"))
    assert (name, server["command"], server["args"]) == ("atlas-image", "uvx", ["atlas-image-mcp"])
    uvx = str(Path(sys.executable).with_name("uvx"))
    env = {**server["env"], "ATLAS_MCP_OFFLINE": "1", **uv_environment(), "UV_FIND_LINKS": str(wheel_dir)}
    env["HOME"] = str(tmp_path / "home")
    params = StdioServerParameters(command=uvx, args=server["args"], env=env)
    with anyio.fail_after(240):
        async with Client(params, read_timeout_seconds=180) as client:
            result = await client.call_tool("generate_image", {"prompt": "a fox", "width": 512})
    assert _picture_ok(result)["width"] == 512


# --- uvx --from a clone ----------------------------------------------------------------------------


def test_uvx_from_a_clone_runs_the_clones_code_after_it_changes(tmp_path: Path) -> None:
    """uv reuses its build of a folder until a cache key changes; its default key is pyproject.toml
    alone, so a pulled or edited clone would go on running the old code."""
    clone = tmp_path / "atlas-image-mcp"
    clone.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (clone / name).write_bytes((ROOT / name).read_bytes())
    shutil.copytree(ROOT / "src", clone / "src", ignore=shutil.ignore_patterns("__pycache__"))
    uvx = [str(Path(sys.executable).with_name("uvx")), "--from", str(clone), "atlas-image-mcp", "--version"]
    env = {**os.environ, **uv_environment()}

    def version() -> str:
        proc = subprocess.run(uvx, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    first = version()
    init = clone / "src" / "atlas_image_mcp" / "__init__.py"
    init.write_text(
        init.read_text(encoding="utf-8").replace('__version__ = "', '__version__ = "99.'), encoding="utf-8"
    )
    assert version() == first.replace("atlas-image-mcp ", "atlas-image-mcp 99.")


# --- claude mcp add / claude mcp list --------------------------------------------------------------


def _claude(tools: NpmTools, home: Path, project: Path, *args: str, timeout: float = 120) -> str:
    env = {
        "HOME": str(home),
        # the servers it starts get its environment: the venv's uvx first, and uv's needs
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no update check, telemetry or error reports
        "TERM": "dumb",
        "NO_COLOR": "1",
        "MCP_TIMEOUT": "120000",
        **uv_environment(),
    }
    proc = subprocess.run(
        tools.claude_cmd(*args), cwd=project, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, f"claude {shlex.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.mark.npm
def test_the_readmes_claude_lines_add_servers_that_claude_mcp_list_reports_connected(
    tools: NpmTools, hosted: str, tmp_path: Path
) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines() if line.startswith("claude mcp add ")]
    assert len(lines) == len(links.CLAUDE_LINES)
    added = []
    for n, line in enumerate(lines):
        words = shlex.split(line, comments=True)[3:]
        # this machine's clone and local server for the placeholders, a name per line (one project)
        words = [w.replace(VENV_COMMAND, str(ENTRY_POINT)).replace(CLONE, str(ROOT)) for w in words]
        words = [re.sub(r"^https://mcp\.example\.com", hosted, w) for w in words]
        words = [
            w.replace("your-server-token", TOKEN).replace("your-atlas-cloud-api-key", USER_KEY) for w in words
        ]
        name = f"atlas-image-{n}"
        words[words.index("atlas-image")] = name
        if "--" in words:  # a placeholder key: run the entry against the emulator
            words[words.index("--") : words.index("--")] = ["-e", "ATLAS_MCP_OFFLINE=1"]
        _claude(tools, home, project, "mcp", "add", *words)
        added.append(name)
    listed = _claude(tools, home, project, "mcp", "list", timeout=240)
    for name in added:
        [status] = [line for line in listed.splitlines() if line.startswith(f"{name}:")] or [
            f"{name}: missing"
        ]
        assert "✔ Connected" in status, f"{status}\n\n{listed}"  # claude mcp list exits 0 either way


# --- mcp-remote ----------------------------------------------------------------------------------


def _bridge(tools: NpmTools, url: str, transport: str, home: Path) -> StdioServerParameters:
    """The README's claude_desktop_remote entry, pointed at ``url``: npx's ``-y mcp-remote@V`` is the
    pinned mcp-remote itself; its --header and --transport as written (the transport swapped for SSE)."""
    [entry] = servers_of(examples()["claude_desktop_remote"]).values()
    args = list(entry["args"][2:])
    args[args.index("https://mcp.example.com/mcp")] = url
    args[args.index("--transport") + 1] = transport
    env = {key: value.replace("your-server-token", TOKEN) for key, value in entry["env"].items()}
    env.update({"HOME": str(home), "PATH": f"{tools.node.parent}{os.pathsep}{os.environ['PATH']}"})
    command, *rest = tools.mcp_remote_cmd(*args)
    return StdioServerParameters(command=command, args=rest, env=env)


@pytest.mark.npm
@pytest.mark.parametrize(("path", "transport"), [("/mcp", "http-only"), ("/sse", "sse-only")])
async def test_mcp_remote_bridges_a_stdio_client_to_a_hosted_server(
    tools: NpmTools, tmp_path: Path, path: str, transport: str
) -> None:
    runtime = Runtime.create(Settings(auth_token=TOKEN), offline=True, remote=True, emulator_latency=0.05)
    with serve_app(create_http_app(runtime)) as base:
        params = _bridge(tools, f"{base}{path}", transport, tmp_path / "home")
        with anyio.fail_after(120):
            async with Client(params, read_timeout_seconds=60) as client:
                listed = {tool.name for tool in (await client.list_tools()).tools}
                result = await client.call_tool("generate_image", {"prompt": "a fox", "width": 512})
    assert listed == TOOL_NAMES
    assert _picture_ok(result)["width"] == 512


def _still_running(marker: str) -> list[str]:
    """Processes whose command line contains ``marker`` (Linux /proc; empty elsewhere)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker.encode() in word for word in words):
            found.append(cmdline.parent.name)
    return found


@pytest.mark.npm
async def test_mcp_remote_with_a_wrong_token_is_refused_at_once_and_is_ended(
    tools: NpmTools, tmp_path: Path
) -> None:
    """A wrong token gets a 400 that says what to send, not a 401 (which would send mcp-remote into an
    OAuth sign-in that waits for a browser that never comes): the bridge gives up at once, its client
    never connects, and the bridge process does not outlive it."""
    runtime = Runtime.create(Settings(auth_token=TOKEN), offline=True, remote=True, emulator_latency=0.05)
    with serve_app(create_http_app(runtime)) as base:
        params = _bridge(tools, f"{base}/mcp", "http-only", tmp_path / "home")
        params.env = {
            **(params.env or {}),
            "AUTH_HEADER": "Bearer not-the-token-0123456789",
            "BROWSER": "true",
        }
        connected = False
        with (tmp_path / "bridge.log").open("w") as log:
            with anyio.fail_after(30), pytest.raises(Exception) as refused:
                async with Client(stdio_client(params, errlog=log), read_timeout_seconds=10) as client:
                    await client.list_tools()
                    connected = True
        # the client waited for the bridge to end when it left (stdin closed, then terminate)
        left = _still_running(f"{base}/mcp")
    assert connected is False
    assert not isinstance(refused.value, TimeoutError), "mcp-remote waited instead of giving up"
    said = (tmp_path / "bridge.log").read_text()
    assert "HTTP 400" in said or "status: 400" in said
    assert "This server needs its access token: send the header Authorization: Bearer" in said
    assert left == [], f"mcp-remote outlived its client: pids {left}"


# --- the MCP Inspector ---------------------------------------------------------------------------


@pytest.mark.npm
def test_the_inspector_the_docs_name_sends_headers_to_a_protected_server(
    tools: NpmTools, tmp_path: Path
) -> None:
    pinned = json.loads((ROOT / "scripts" / "npm-tools" / "package.json").read_text(encoding="utf-8"))
    version = pinned["dependencies"]["@modelcontextprotocol/inspector"]
    docs = (ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
    assert f"npx -y @modelcontextprotocol/inspector@{version}" in docs, "the docs name the tested version"
    runtime = Runtime.create(Settings(auth_token=TOKEN), offline=True, remote=True, emulator_latency=0.05)
    with serve_app(create_http_app(runtime)) as base:
        proc = subprocess.run(
            tools.inspector_cmd(f"{base}/mcp", "--transport", "http", "--method", "tools/list",
                                "--header", f"Authorization: Bearer {TOKEN}"),
            env={**tools.env, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {tool["name"] for tool in json.loads(proc.stdout)["tools"]} == TOOL_NAMES
