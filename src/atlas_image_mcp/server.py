"""The server factory: one MCPServer, the same object for stdio, streamable HTTP and SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from . import __version__
from .notify import install_logging_handler
from .prompts import register_prompts
from .redact import redact, redact_tree
from .resources import register_resources
from .runtime import Runtime
from .tools import register_tools

__all__ = ["INSTRUCTIONS", "make_server"]

INSTRUCTIONS = """\
Creates pictures with the FLUX models on Atlas Cloud.
- generate_image turns a prompt into pictures in one call: it waits (up to ~45 s), returns the
  picture, its URL and, when saving is on, the absolute path of the saved file. Use dry_run to see
  the request and its cost without spending anything.
- If generate_image answers status "processing", call get_prediction with the prediction_id
  (wait_seconds=30) instead of generating again: each generate_image call is billed.
- To start from a local picture (image-to-image, inpainting), call upload_media first and pass its
  download_url as image.
- list_models shows other image models and their prices.
"""


async def redact_answers(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """The chokepoint for answers: every result and error of every request leaves redacted.

    Tool results (text, ``structuredContent``, resource links), resource contents, prompts and
    JSON-RPC errors all pass here, whatever field upstream hid a key in. (Notifications leave
    through :mod:`atlas_image_mcp.notify`, logs through the logging filter, HTTP error bodies
    through :class:`atlas_image_mcp.http.JsonRpcErrors`; each redacts at its one exit.)
    """
    try:
        result = await call_next(ctx)
    except MCPError as err:
        raise MCPError(err.code, redact(err.message), redact_tree(err.data)) from None
    if result is None:
        return None
    wire = (
        result
        if isinstance(result, dict)
        else result.model_dump(by_alias=True, mode="json", exclude_none=True)
    )
    redacted: dict[str, Any] = redact_tree(wire)
    return redacted


@asynccontextmanager
async def _provide(runtime: Runtime) -> AsyncIterator[Runtime]:
    # The runtime outlives sessions (HTTP serves many); whoever built it closes it.
    yield runtime


def make_server(runtime: Runtime) -> MCPServer[Runtime]:
    """Build the MCP server around ``runtime``. No I/O happens here."""
    server: MCPServer[Runtime] = MCPServer(
        "atlas-image-mcp",
        title="Atlas Cloud FLUX images",
        instructions=INSTRUCTIONS,
        version=__version__,
        website_url="https://www.atlascloud.ai",
        lifespan=lambda _server: _provide(runtime),
        log_level=runtime.settings.log_level if runtime.settings.log_level in _LEVELS else "INFO",  # type: ignore[arg-type]
        middleware=[redact_answers],
    )
    register_tools(server)
    register_resources(server)
    register_prompts(server)
    install_logging_handler(server)
    return server


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
