"""``atlas-image-mcp generate``: the tool path from a terminal, through an in-memory MCP client.

It runs exactly what an assistant runs (``generate_image`` on the real server object), shows
progress on stderr, and prints each saved path on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_types import TextContent

from .runtime import Runtime
from .server import make_server
from .settings import Settings

__all__ = ["run_generate"]


async def run_generate(
    settings: Settings, arguments: dict[str, Any], *, output_dir: Path | None = None, offline: bool = False
) -> int:
    """Call generate_image with ``arguments`` (saving, no picture in the result); the exit status."""
    settings = settings.replace(save=True, **({"output_dir": output_dir} if output_dir is not None else {}))
    runtime = Runtime.create(settings, offline=offline, place="cli")
    err = sys.stderr

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        err.write(f"\r  {message or ''} ".ljust(70))
        err.flush()

    try:
        async with Client(make_server(runtime)) as client:
            result = await client.call_tool(
                "generate_image", {**arguments, "return_image": "none"}, progress_callback=progress
            )
    finally:
        await runtime.aclose()
    err.write("\r".ljust(72) + "\r")
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    structured = result.structured_content or {}
    if result.is_error:
        err.write(f"error: {text}\n")
        return 1
    err.write(text + "\n")
    # the file delivered (--save-as, --output-size...) where there is one, else the saved picture
    paths = [
        (out.get("file") or {}).get("path") or out["path"]
        for out in structured.get("outputs", [])
        if out.get("file") or out.get("path")
    ]
    for path in paths:
        sys.stdout.write(f"{path}\n")
    if structured.get("status") == "processing":
        return 3
    if structured.get("status") in ("declined", "confirmation_required"):
        return 4  # nothing was sent: above ATLAS_MCP_CONFIRM_ABOVE_USD (pass --max-cost-usd to confirm)
    return 0
