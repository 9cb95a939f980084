"""The MCP tools: one module per tool family, and :func:`register_tools` to add them to a server.

Each tool's parameters are declared once in :mod:`atlas_image_mcp.params`; each tool calls the
Atlas client and hands the outcome to :mod:`atlas_image_mcp.render` (through
:mod:`.results`). Failures are raised as ``ToolError`` with a message the assistant can act on,
so the client sees ``isError: true``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from ..tasks import TasksExtension
from .catalogue import list_models
from .edit import edit_image, generate_variations
from .generate import generate_image
from .handoff import IMAGE_JOB
from .predictions import get_prediction
from .upload import upload_media

__all__ = ["register_tools"]


class _Tool(NamedTuple):
    title: str
    read_only: bool
    idempotent: bool
    #: A picture job: for clients that use MCP tasks it becomes a task once Atlas accepted it.
    task: bool = False


# All reach Atlas (openWorldHint), none is destructive. get_prediction is not read-only: it saves
# the pictures it collects (same names, so idempotent).
_TOOLS: dict[Callable[..., Any], _Tool] = {
    generate_image: _Tool("Generate image (FLUX)", read_only=False, idempotent=False, task=True),
    edit_image: _Tool("Edit image (FLUX Kontext, Fill)", read_only=False, idempotent=False, task=True),
    generate_variations: _Tool("Generate variations", read_only=False, idempotent=False, task=True),
    get_prediction: _Tool("Get prediction", read_only=False, idempotent=True),
    upload_media: _Tool("Upload media", read_only=False, idempotent=False),
    list_models: _Tool("List image models", read_only=True, idempotent=True),
}


def register_tools(server: MCPServer[Any], tasks: TasksExtension | None = None) -> None:
    """Add the tools, with titles and honest annotations; picture jobs run as tasks through ``tasks``."""
    for fn, tool in _TOOLS.items():
        hints = ToolAnnotations(
            title=tool.title,
            read_only_hint=tool.read_only,
            destructive_hint=False,
            idempotent_hint=tool.idempotent,
            open_world_hint=True,
        )
        server.add_tool(fn, title=tool.title, annotations=hints)
        if tool.task and tasks is not None:
            tasks.add_tool(fn.__name__, IMAGE_JOB)
