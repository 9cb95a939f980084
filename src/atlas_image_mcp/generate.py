"""``atlas-image-mcp generate``: the tool path from a terminal, through an in-memory MCP client.

It runs exactly what an assistant runs (``generate_image`` on the real server object), shows
progress on stderr, and prints each saved path on stdout.
"""

from __future__ import annotations

import sys
from typing import Any

from mcp import Client

from .runtime import Runtime
from .server import make_server
from .settings import Settings

__all__ = ["run_generate"]


def _arguments(args: Any) -> dict[str, Any]:
    names = ("model", "width", "height", "aspect_ratio", "seed", "steps", "guidance_scale")
    arguments: dict[str, Any] = {"prompt": args.prompt, "num_images": args.num_images, "return_image": "none"}
    arguments.update({name: getattr(args, name) for name in names if getattr(args, name) is not None})
    if args.dry_run:
        arguments["dry_run"] = True
    return arguments


async def run_generate(settings: Settings, args: Any) -> int:
    if args.output_dir is not None:
        settings = settings.replace(output_dir=args.output_dir.expanduser().resolve(), output_dir_explicit=True)
    settings = settings.replace(save=True)
    runtime = Runtime.create(settings, offline=bool(getattr(args, "offline", False)))
    err = sys.stderr

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        err.write(f"\r  {message or ''} ".ljust(70))
        err.flush()

    try:
        async with Client(make_server(runtime)) as client:
            result = await client.call_tool("generate_image", _arguments(args), progress_callback=progress)
    finally:
        await runtime.aclose()
    err.write("\r".ljust(72) + "\r")
    text = "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")
    structured = result.structured_content or {}
    if result.is_error:
        err.write(f"error: {text}\n")
        return 1
    err.write(text + "\n")
    paths = [out["path"] for out in structured.get("outputs", []) if out.get("path")]
    for path in paths:
        sys.stdout.write(f"{path}\n")
    if structured.get("status") == "processing":
        return 3
    return 0
