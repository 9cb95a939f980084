"""The resources: a prediction's state and its pictures, read through the caller's own key."""

from __future__ import annotations

import json

from mcp.server.apps import client_supports_apps
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from .constants import IMAGE_URI, PREDICTION_URI
from .errors import AtlasError, NotFoundError
from .models import Prediction
from .runtime import Runtime
from .storage import find_saved
from .tools.results import ToolContext

__all__ = ["register_resources"]


def register_resources(server: MCPServer[Runtime]) -> None:
    @server.resource(
        PREDICTION_URI,
        name="prediction",
        title="Prediction status",
        description="The current state of a prediction (status, output URLs, saved copies) as JSON.",
        mime_type="application/json",
    )
    async def prediction_resource(prediction_id: str, ctx: ToolContext) -> str:
        runtime = ctx.request_context.lifespan_context
        prediction = await _lookup(runtime, prediction_id, ctx)
        folder = runtime.output_dir
        # An MCP Apps client gets file names only, as in tool results (its frames may read this).
        name_only = client_supports_apps(ctx)
        outputs = [
            {
                "url": url,
                "path": (found.name if name_only else str(found))
                if (found := find_saved(folder, prediction.id, n))
                else None,
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
    async def image_resource(prediction_id: str, index: str, ctx: ToolContext) -> bytes:
        runtime = ctx.request_context.lifespan_context
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


async def _lookup(runtime: Runtime, prediction_id: str, ctx: ToolContext) -> Prediction:
    try:
        return await runtime.api(ctx.headers).get_prediction(prediction_id)
    except NotFoundError as err:
        raise ResourceNotFoundError(f"No prediction {prediction_id!r} at Atlas.") from err
    except AtlasError as err:
        raise ResourceError(err.message) from err
