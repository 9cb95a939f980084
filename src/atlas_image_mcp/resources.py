"""The resources: a prediction's state and its pictures, read through the caller's own key."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from .call import Call, ToolContext
from .collect import picture_bytes
from .constants import IMAGE_URI, IMAGE_URI_PATTERN, MAX_NUM_IMAGES, PREDICTION_URI
from .errors import AtlasError, NotFoundError
from .models import Prediction
from .pictures import PictureError, sniff
from .render import shown_url
from .runtime import Runtime
from .storage import find_saved

_INDEX = re.compile(r"[0-9]{1,3}")  # ASCII digits only: "²" or "١" are not an index
_PICTURE_URI = re.compile(IMAGE_URI_PATTERN)
#: How much of a picture is decoded to read its header (768 KiB, a multiple of 4 base64 chars): room
#: for a JPEG's EXIF and ICC segments before its frame header. A picture whose header lies further
#: keeps the template's label.
_HEADER_B64_CHARS = 4 * 256 * 1024

__all__ = ["label_pictures", "register_resources"]


async def label_pictures(ctx: ServerRequestContext[Runtime, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: each picture read says what it is (JPEG, PNG, WebP), from its own header.

    A resource template declares one ``mime_type`` for every read, but Atlas answers in the
    ``output_format`` asked for (JPEG or PNG), so the picture template's ``image/jpeg`` is only a
    default that this replaces with the type read from the bytes.
    """
    result = await call_next(ctx)
    if ctx.method != "resources/read" or result is None:
        return result
    wire = (
        result
        if isinstance(result, dict)
        else result.model_dump(by_alias=True, mode="json", exclude_none=True)
    )
    contents = wire.get("contents")
    if not isinstance(contents, list):
        return wire
    max_pixels = ctx.lifespan_context.settings.max_pixels
    return {**wire, "contents": [_labelled(item, max_pixels) for item in contents]}


def _labelled(item: Any, max_pixels: int) -> Any:
    if not (
        isinstance(item, dict) and isinstance(item.get("blob"), str) and isinstance(item.get("uri"), str)
    ):
        return item
    if not _PICTURE_URI.match(item["uri"]):
        return item
    try:
        head = base64.b64decode(item["blob"][:_HEADER_B64_CHARS], validate=True)
    except (binascii.Error, ValueError):
        return item
    mime = sniff(head, max_pixels)
    return {**item, "mimeType": mime} if mime else item


def register_resources(server: MCPServer[Runtime]) -> None:
    @server.resource(
        PREDICTION_URI,
        name="prediction",
        title="Prediction status",
        description="The current state of a prediction (status, output URLs, saved copies) as JSON.",
        mime_type="application/json",
    )
    async def prediction_resource(prediction_id: str, ctx: ToolContext) -> str:
        call = Call.of(ctx)
        prediction = await _lookup(call, prediction_id)
        folder = call.outputs.folder
        # An MCP Apps client gets file names only, as in tool results (its frames may read this).
        name_only = call.shows_apps
        outputs = [
            {
                "url": shown_url(url, prediction.id, n),
                "path": (found.name if name_only else str(found))
                if (found := find_saved(folder, prediction.id, n))
                else None,
                "resource_uri": IMAGE_URI.format(prediction_id=prediction.id, index=n),
            }
            for n, url in enumerate(prediction.outputs[:MAX_NUM_IMAGES], start=1)
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
        if not _INDEX.fullmatch(index):
            raise ResourceNotFoundError(f"Prediction {prediction_id} has no image {index[:20]!r}.")
        call = Call.of(ctx)
        prediction = await _lookup(call, prediction_id)  # proves the caller's key may see it
        if not 1 <= int(index) <= min(len(prediction.outputs), MAX_NUM_IMAGES):
            raise ResourceNotFoundError(f"Prediction {prediction_id} has no image {index}.")
        try:
            return await picture_bytes(call, prediction, int(index))
        except AtlasError as err:
            raise ResourceError(err.message) from err
        except PictureError as err:
            raise ResourceError(f"Image {index} of prediction {prediction.id} {err}.") from err


async def _lookup(call: Call, prediction_id: str) -> Prediction:
    try:
        return await call.api.get_prediction(prediction_id)
    except NotFoundError as err:
        raise ResourceNotFoundError(f"No prediction {prediction_id!r} at Atlas.") from err
    except AtlasError as err:
        raise ResourceError(err.message) from err
