"""The MCP tools: one module per tool family, and one table that says how each is offered.

Each tool's parameters are declared once in :mod:`atlas_image_mcp.params`; each tool calls the
Atlas client and hands the outcome to :mod:`atlas_image_mcp.render` (through
:mod:`.results`). Failures are raised as ``ToolError`` with a message the assistant can act on,
so the client sees ``isError: true``.

The picture tools declare the viewer app (MCP Apps): they are bound to the
:class:`~atlas_image_mcp.viewer.PictureViewer` extension with :func:`bind_tools` before the server
is built, the others are added to the server by :func:`register_tools`; both read :data:`_TOOLS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.apps import Apps
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from ..constants import VIEWER_URI
from ..tasks import TasksExtension
from .catalogue import list_models
from .edit import edit_image, generate_variations
from .gallery import show_gallery
from .generate import generate_image
from .handoff import IMAGE_JOB
from .predictions import get_prediction
from .upload import upload_media

__all__ = ["bind_tools", "register_tools"]


@dataclass(frozen=True)
class _Offer:
    title: str
    read_only: bool
    idempotent: bool
    #: A picture job: for clients that use MCP tasks it becomes a task once Atlas accepted it.
    task: bool = False
    #: Its results are pictures: the host shows them in the viewer.
    viewer: bool = False
    #: The viewer's frame may call it (MCP Apps visibility). upload_media reads local files, so
    #: only the assistant may call it.
    frame: bool = True
    #: It reaches Atlas (openWorldHint).
    open_world: bool = True


# None is destructive. get_prediction is not read-only: it saves the pictures it collects (same
# names, so idempotent). show_gallery only reads this session's record.
_TOOLS: dict[Callable[..., Any], _Offer] = {
    generate_image: _Offer("Generate image (FLUX)", False, False, task=True, viewer=True),
    edit_image: _Offer("Edit image (FLUX Kontext, Fill)", False, False, task=True, viewer=True),
    generate_variations: _Offer("Generate variations", False, False, task=True, viewer=True),
    get_prediction: _Offer("Get prediction", False, True, viewer=True),
    upload_media: _Offer("Upload media", False, False, frame=False),
    list_models: _Offer("List image models", True, True),
    show_gallery: _Offer("Show this session's pictures", True, True, viewer=True, open_world=False),
}


def _annotations(offer: _Offer) -> ToolAnnotations:
    return ToolAnnotations(
        title=offer.title,
        read_only_hint=offer.read_only,
        destructive_hint=False,
        idempotent_hint=offer.idempotent,
        open_world_hint=offer.open_world,
    )


def bind_tools(apps: Apps) -> None:
    """Bind the picture tools to the viewer app; the server adds them when it takes the extension."""
    for fn, offer in _TOOLS.items():
        if offer.viewer:
            apps.tool(resource_uri=VIEWER_URI, title=offer.title, annotations=_annotations(offer))(fn)


def register_tools(server: MCPServer[Any], tasks: TasksExtension | None = None) -> None:
    """Add the tools that have no viewer; picture jobs run as tasks through ``tasks``."""
    for fn, offer in _TOOLS.items():
        if offer.task and tasks is not None:
            tasks.add_tool(fn.__name__, IMAGE_JOB)
        if offer.viewer:
            continue
        meta = None if offer.frame else {"ui": {"visibility": ["model"]}}
        server.add_tool(fn, title=offer.title, annotations=_annotations(offer), meta=meta)
