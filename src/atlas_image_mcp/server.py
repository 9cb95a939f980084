"""The server factory: one MCPServer, the same object for stdio, streamable HTTP and SSE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from . import __version__
from .errors import AtlasError, NotFoundError
from .notify import install_logging_handler
from .runtime import Runtime
from .storage import find_saved
from .tools import IMAGE_URI, PREDICTION_URI, register_tools

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
    )
    register_tools(server)
    _register_resources(server)
    _register_prompts(server)
    install_logging_handler(server)
    return server


_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _register_resources(server: MCPServer[Runtime]) -> None:
    @server.resource(
        PREDICTION_URI,
        name="prediction",
        title="Prediction status",
        description="The current state of a prediction (status, output URLs, saved paths) as JSON.",
        mime_type="application/json",
    )
    async def prediction_resource(prediction_id: str, ctx: Context) -> str:
        runtime: Runtime = ctx.request_context.lifespan_context
        prediction = await _lookup(runtime, prediction_id, ctx)
        folder = runtime.output_dir
        outputs = [
            {
                "url": url,
                "path": str(found) if (found := find_saved(folder, prediction.id, n)) else None,
                "resource_uri": IMAGE_URI.format(prediction_id=prediction.id, index=n),
            }
            for n, url in enumerate(prediction.outputs, start=1)
        ]
        return json.dumps(
            {
                "prediction_id": prediction.id,
                "status": prediction.status,
                "model": prediction.model,
                "outputs": outputs,
                "price": prediction.price,
                "error": prediction.error or None,
            }
        )

    @server.resource(
        IMAGE_URI,
        name="prediction-image",
        title="Generated picture",
        description="One output picture of a prediction (the saved copy when there is one).",
        mime_type="image/jpeg",
    )
    async def image_resource(prediction_id: str, index: str, ctx: Context) -> bytes:
        runtime: Runtime = ctx.request_context.lifespan_context
        prediction = await _lookup(runtime, prediction_id, ctx)  # proves the caller's key may see it
        if not index.isdigit() or not 1 <= int(index) <= len(prediction.outputs):
            raise ResourceNotFoundError(f"Prediction {prediction_id} has no image {index}.")
        found = find_saved(runtime.output_dir, prediction.id, int(index))
        if found is not None:
            return found.read_bytes()
        try:
            download = await runtime.api(ctx.headers).download(
                prediction.outputs[int(index) - 1], runtime.settings.max_download_bytes
            )
        except AtlasError as err:
            raise ResourceError(err.message) from err
        return download.content


async def _lookup(runtime: Runtime, prediction_id: str, ctx: Context) -> Any:
    try:
        return await runtime.api(ctx.headers).get_prediction(prediction_id)
    except NotFoundError as err:
        raise ResourceNotFoundError(f"No prediction {prediction_id!r} at Atlas.") from err
    except AtlasError as err:
        raise ResourceError(err.message) from err


def _register_prompts(server: MCPServer[Runtime]) -> None:
    @server.prompt(
        name="draw",
        title="Draw a picture",
        description="Turn a short idea into a detailed FLUX prompt and generate it.",
    )
    def draw(idea: str, style: str = "photographic") -> str:
        return (
            f"Write a detailed FLUX image prompt for: {idea}. Style: {style}. Describe the subject, setting, "
            "lighting, composition and camera or medium in one paragraph, then call generate_image with it "
            "and show me the result."
        )
