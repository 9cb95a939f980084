"""The MCP tools: one module per tool family, and one table that says how each is offered.

A tool is a plain function of the :class:`~atlas_image_mcp.call.Call` and its argument model
(declared once in :mod:`atlas_image_mcp.params`); it raises an
:class:`~atlas_image_mcp.errors.AtlasError` with a message the assistant can act on, so the client
sees ``isError: true``.

:func:`build_tools` makes every tool of :data:`_TOOLS` an SDK ``Tool`` through the one adapter
(:mod:`.adapter`: bad or unknown arguments get plain sentences, schemas trimmed for
``tools/list``) for ``MCPServer(tools=...)``. The picture tools carry the viewer app's
``_meta.ui.resourceUri`` (MCP Apps), stamped here as ``Apps.tool`` would, since a tool the ``Apps``
extension adds is built by the SDK from a signature; the viewer extension still serves the app's
resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations

from ..constants import VIEWER_URI
from ..tasks import TasksExtension
from .account import get_balance, get_usage
from .adapter import ToolFunction, adapt
from .edit import edit_image, generate_variations
from .export import export_image
from .gallery import show_gallery
from .generate import generate_image
from .handoff import IMAGE_JOB
from .link import unlink_atlas_key
from .model_list import list_models
from .predictions import get_prediction
from .upload import upload_media

__all__ = ["build_tools", "keyed_tools", "spending_tools", "tools_that_may_ask"]


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
    #: It may ask the person a question during the call (the cost of a picture job).
    asks: bool = False
    #: It can spend money (with sign-in, a token needs the images:generate scope to call it).
    spends: bool = False
    #: It calls Atlas with the caller's key (with linked keys, one must be linked first).
    keyed: bool = True


# None is destructive: save_as and export_image never replace a file unless the call says
# overwrite=true. get_prediction is not read-only: it saves the pictures it collects (same names,
# so idempotent). show_gallery only reads this session's record. export_image writes into the
# workspace, so only the assistant may call it; it sends nothing to Atlas, but it may fetch the
# picture from a URL (or look an id up at Atlas), so it is open-world.
_TOOLS: dict[ToolFunction, _Offer] = {
    generate_image: _Offer(
        "Generate image (FLUX)", False, False, task=True, viewer=True, spends=True, asks=True
    ),
    edit_image: _Offer(
        "Edit image (FLUX Kontext, Fill)", False, False, task=True, viewer=True, spends=True, asks=True
    ),
    generate_variations: _Offer(
        "Generate variations", False, False, task=True, viewer=True, spends=True, asks=True
    ),
    get_prediction: _Offer("Get prediction", False, True, viewer=True),
    upload_media: _Offer("Upload media", False, False, frame=False, spends=True),
    export_image: _Offer("Export image", False, False, frame=False),
    list_models: _Offer("List image models", True, True, keyed=False),
    get_balance: _Offer("Atlas account balance", True, True, frame=False),
    get_usage: _Offer("Spend by day and model", True, True, frame=False, open_world=False, keyed=False),
    show_gallery: _Offer(
        "Show this session's pictures", True, True, viewer=True, open_world=False, keyed=False
    ),
}
#: Offered only where users link their own keys (sign-in with linked keys).
_LINKING: dict[ToolFunction, _Offer] = {
    unlink_atlas_key: _Offer(
        "Unlink your Atlas key", False, True, frame=False, open_world=False, keyed=False
    ),
}


def _annotations(offer: _Offer) -> ToolAnnotations:
    return ToolAnnotations(
        title=offer.title,
        read_only_hint=offer.read_only,
        destructive_hint=False,
        idempotent_hint=offer.idempotent,
        open_world_hint=offer.open_world,
    )


def _meta(offer: _Offer) -> dict[str, Any] | None:
    """MCP Apps ``_meta.ui``: the viewer for picture tools; model-only for what the frame may not call."""
    if offer.viewer:
        return {"ui": {"resourceUri": VIEWER_URI}}
    return None if offer.frame else {"ui": {"visibility": ["model"]}}


def spending_tools() -> frozenset[str]:
    """The tools that can spend money."""
    return frozenset(fn.__name__ for fn, offer in _TOOLS.items() if offer.spends)


def keyed_tools() -> frozenset[str]:
    """The tools that call Atlas with the caller's key."""
    return frozenset(fn.__name__ for fn, offer in _TOOLS.items() if offer.keyed)


def build_tools(tasks: TasksExtension | None = None, *, linking: bool = False) -> list[Tool]:
    """Every tool, for ``MCPServer(tools=...)``; picture jobs run as tasks through ``tasks``.
    ``linking``: users link their own Atlas keys (the unlink tool is offered too)."""
    tools: list[Tool] = []
    for fn, offer in {**_TOOLS, **(_LINKING if linking else {})}.items():
        if offer.task and tasks is not None:
            tasks.add_tool(fn.__name__, IMAGE_JOB)
        tools.append(adapt(fn, title=offer.title, annotations=_annotations(offer), meta=_meta(offer)))
    return tools


def tools_that_may_ask() -> frozenset[str]:
    """The tools that may ask the person a question during a call (when calls are confirmed)."""
    return frozenset(fn.__name__ for fn, offer in _TOOLS.items() if offer.asks)
