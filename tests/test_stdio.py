"""The process boundary over stdio: the installed entry point, raw pipes, stdout purity.

Over stdio, stdout is the protocol: every line the server writes there must be one JSON-RPC 2.0
message. Logs go to stderr.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytestmark = pytest.mark.subprocess

ENTRY_POINT = Path(sys.executable).with_name("atlas-image-mcp")


def _exchange(
    messages: list[dict[str, Any]], env: dict[str, str], until_id: int, timeout: float = 60
) -> tuple[list[str], str, int]:
    """Send ``messages``, read stdout lines until the response ``until_id`` arrives, then close stdin.

    Returns every stdout line, stderr and the exit code. Bounded by ``timeout`` throughout.
    """
    with subprocess.Popen(
        [str(ENTRY_POINT), "--offline"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        seen: list[str] = []
        try:
            proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
            proc.stdin.flush()
            deadline = time.monotonic() + timeout
            while (line := lines.get(timeout=max(0.1, deadline - time.monotonic()))) is not None:
                seen.append(line)
                if json.loads(line).get("id") == until_id:
                    break
            proc.stdin.close()
            code = proc.wait(timeout=15)
            while (line := lines.get(timeout=5)) is not None:
                seen.append(line)
            return seen, proc.stderr.read(), code
        finally:
            if proc.poll() is None:
                proc.kill()


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS", "ATLASCLOUD"))}
    env.update(
        HOME=str(tmp_path / "home"), ATLAS_MCP_OUTPUT_DIR=str(tmp_path / "out"), ATLAS_MCP_LOG_LEVEL="DEBUG"
    )
    return env


def test_installed_entry_point_speaks_only_json_rpc_on_stdout_and_draws_a_picture(tmp_path: Path) -> None:
    assert ENTRY_POINT.exists(), "the console script is not installed next to the interpreter"
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "stdio-test", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "generate_image",
            "arguments": {"prompt": "a red fox in the snow", "width": 768, "height": 512},
            "_meta": {"progressToken": "p1"}}},
    ]  # fmt: skip
    lines, stderr, code = _exchange(messages, _env(tmp_path), until_id=3)
    assert code == 0, stderr
    parsed = [json.loads(line) for line in lines]  # raises on any non-JSON line
    assert all(msg.get("jsonrpc") == "2.0" for msg in parsed)
    by_id = {msg["id"]: msg for msg in parsed if "id" in msg}
    assert by_id[1]["result"]["serverInfo"]["name"] == "atlas-image-mcp"
    assert {t["name"] for t in by_id[2]["result"]["tools"]} >= {
        "generate_image",
        "get_prediction",
        "upload_media",
    }
    result = by_id[3]["result"]
    assert result["isError"] is False, result
    saved = Path(result["structuredContent"]["outputs"][0]["path"])
    assert saved.parent == tmp_path / "out"
    with Image.open(saved) as img:
        assert img.size == (768, 512)
    [image] = [block for block in result["content"] if block["type"] == "image"]
    with Image.open(io.BytesIO(base64.b64decode(image["data"]))) as thumb:
        assert thumb.size == (512, 341)
    assert any(msg.get("method") == "notifications/progress" for msg in parsed)
    assert "atlas-image-mcp" in stderr  # logs went to stderr


def test_generate_command_saves_a_picture_of_the_requested_size_and_prints_its_path(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(ENTRY_POINT), "generate", "--offline", "a lighthouse at dusk", "--aspect-ratio", "16:9"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    [printed] = proc.stdout.splitlines()
    path = Path(printed)
    assert path.is_absolute() and path.parent == tmp_path / "out" and path.suffix == ".jpg"
    with Image.open(path) as img:
        assert img.size == (1360, 768)
    assert "Status: completed" in proc.stderr


def test_generate_command_reports_a_bad_parameter_and_exits_non_zero(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(ENTRY_POINT),
            "generate",
            "--offline",
            "fox",
            "--model",
            "black-forest-labs/flux-dev",
            "--width",
            "300",
        ],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 1
    assert "512 to 1536" in proc.stderr and proc.stdout == ""


def test_generate_command_above_the_confirmation_threshold_sends_nothing_unless_confirmed(
    tmp_path: Path,
) -> None:
    env = {
        **_env(tmp_path),
        "ATLAS_MCP_CONFIRM_ABOVE_USD": "0",
    }  # the terminal cannot be asked: confirm by flag
    argv = [str(ENTRY_POINT), "generate", "--offline", "a fox", "--width", "512", "--height", "512"]
    held = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    confirmed = subprocess.run(
        [*argv, "--max-cost-usd", "0.003"], capture_output=True, text=True, env=env, timeout=60
    )
    assert held.returncode == 4 and held.stdout == ""
    assert "Not sent" in held.stderr and "run the same command with --max-cost-usd 0.003" in held.stderr
    assert confirmed.returncode == 0, confirmed.stderr
    assert Path(confirmed.stdout.strip()).is_file() and "Cost: $0.003" in confirmed.stderr


def test_generate_command_writes_save_as_beside_the_terminal_and_prints_that_path(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    proc = subprocess.run(
        [
            str(ENTRY_POINT),
            "generate",
            "--offline",
            "a fox",
            "--save-as",
            "img/hero.webp",
            "--output-size",
            "300x200",
        ],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=site,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(site / "img" / "hero.webp")]
    with Image.open(site / "img" / "hero.webp") as img:
        assert (img.format, img.size) == ("WEBP", (300, 200))


async def test_an_ide_client_with_a_root_gets_assets_in_its_project_and_batches_at_once(
    tmp_path: Path,
) -> None:
    """The whole story through a real client and a real server process: the client declares its
    project as a root and can be asked; the server reaches the emulator over loopback."""
    import anyio
    import mcp_types as types
    from mcp import Client

    from .conftest import TEST_KEY
    from .emulation import Emulator, Fault
    from .http_helpers import child_env, serve_app, stdio_params
    from .test_batches import Barrier, Person

    project = tmp_path / "project"
    project.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / "vendor").symlink_to(outside)
    emulator = Emulator(api_keys=[TEST_KEY], latency=0.05)
    barrier = Barrier(4)
    emulator.sleep = barrier
    generate = "/api/v1/model/generateImage"

    async def roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=project.as_uri())])

    def posts() -> int:
        return emulator.count("POST", generate)

    person = Person()
    with serve_app(emulator.app) as atlas:
        env = child_env(
            tmp_path,
            ATLASCLOUD_API_KEY=TEST_KEY,
            ATLASCLOUD_BASE_URL=atlas,
            ATLAS_MCP_OUTPUT_DIR=str(tmp_path / "out"),
            ATLAS_MCP_STATE_DIR=str(tmp_path / "state"),
            ATLAS_MCP_CONFIRM_ABOVE_USD="0.005",  # one picture (0.003) is not asked about; four are
            ATLAS_MCP_BUDGET_USD_PER_DAY="0.02",
        )
        server = stdio_params(env)
        server.cwd = tmp_path  # not the project: the root the client declares decides
        options: dict[str, Any] = {"list_roots_callback": roots, "elicitation_callback": person}
        async with Client(server, mode="legacy", read_timeout_seconds=30, **options) as client:
            with anyio.fail_after(120):
                hero = await client.call_tool(
                    "generate_image",
                    {"prompt": "a lighthouse", "save_as": "assets/hero.webp", "output_size": "1200x630"},
                )
                first = (project / "assets" / "hero.webp").read_bytes()
                again = await client.call_tool(
                    "generate_image", {"prompt": "a ship", "save_as": "assets/hero.webp"}
                )
                up = await client.call_tool(
                    "generate_image", {"prompt": "a ship", "save_as": "../outside.png"}
                )
                linked = await client.call_tool(
                    "generate_image", {"prompt": "a ship", "save_as": "vendor/x.png"}
                )
                sent = posts()
                seen = len(emulator.requests)
                icons = await client.call_tool(
                    "export_image", {"image": "last", "sizes": ["favicon"], "save_as": "public/favicon.ico"}
                )
                quiet = len(emulator.requests) == seen
                emulator.inject(Fault.delay(0), method="POST", path=generate, times=4)
                batch = await client.call_tool(
                    "generate_image",
                    {"prompt": "a red logo", "prompts": ["a blue logo", "a green logo", "a gold logo"]},
                )
                before_refusal = posts()
                over_budget = await client.call_tool("generate_image", {"prompt": "a logo", "count": 4})
    assert hero.is_error is False, hero.content
    with Image.open(project / "assets" / "hero.webp") as img:
        assert (img.format, img.size) == ("WEBP", (1200, 630))
    for refused in (again, up, linked):
        assert refused.is_error is True
    assert (
        sent == 1
        and (project / "assets" / "hero.webp").read_bytes() == first
        and list(outside.iterdir()) == []
    )
    assert icons.is_error is False and quiet
    with Image.open(project / "public" / "favicon.ico") as icon:
        assert icon.format == "ICO" and len(icon.info["sizes"]) >= 4
    assert (project / "public" / "apple-touch-icon.png").is_file() and (
        project / "public" / "icon-512.png"
    ).is_file()
    assert batch.is_error is False and barrier.arrived == 4 and before_refusal == 5
    assert len(batch.structured_content["outputs"]) == 4 and len(person.asked) == 1
    assert over_budget.is_error is True and "Daily budget" in str(over_budget.content) and posts() == 5
