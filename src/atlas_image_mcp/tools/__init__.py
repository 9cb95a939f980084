"""The MCP tools: one module per tool family, and :func:`register_tools` to add them to a server.

Each tool's parameters are declared once in :mod:`atlas_image_mcp.params`; each tool calls the
Atlas client and hands the outcome to :mod:`atlas_image_mcp.render` (through
:mod:`.results`). Failures are raised as ``ToolError`` with a message the assistant can act on,
so the client sees ``isError: true``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from .catalogue import list_models
from .edit import edit_image, generate_variations
from .generate import generate_image
from .predictions import get_prediction
from .upload import upload_media

__all__ = ["register_tools"]

# tool -> (title, readOnlyHint, idempotentHint). None is destructive; all reach Atlas (openWorldHint).
# get_prediction is not read-only: it saves the pictures it collects (same names, so idempotent).
_TOOLS: dict[Callable[..., Any], tuple[str, bool, bool]] = {
    generate_image: ("Generate image (FLUX)", False, False),
    edit_image: ("Edit image (FLUX Kontext, Fill)", False, False),
    generate_variations: ("Generate variations", False, False),
    get_prediction: ("Get prediction", False, True),
    upload_media: ("Upload media", False, False),
    list_models: ("List image models", True, True),
}


def register_tools(server: MCPServer[Any]) -> None:
    """Add the tools, with titles and honest annotations."""
    for fn, (title, read_only, idempotent) in _TOOLS.items():
        hints = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=False,
            idempotent_hint=idempotent,
            open_world_hint=True,
        )
        server.add_tool(fn, title=title, annotations=hints)
