"""``get_prediction``: collect (or wait a little more for) a job started earlier."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from ..asset_plan import asset_spec, plan_asset
from ..call import Call
from ..constants import MAX_NUM_IMAGES
from ..delivery import Delivery, finish
from ..errors import NotFoundError, no_such_prediction
from ..history import HistoryEntry
from ..params import GetPredictionArguments
from ..render import GenerationResult
from ..waiting import wait_for_picture

__all__ = ["get_prediction"]


async def get_prediction(
    call: Call, args: GetPredictionArguments
) -> Annotated[CallToolResult, GenerationResult]:
    """Check a prediction (optionally waiting for it) and return its pictures like generate_image does."""
    runtime = call.runtime
    spec = asset_spec(args)  # refused before anything is asked of Atlas
    limit = min(args.wait_seconds, runtime.settings.wait_seconds)
    deadline = call.deadline(limit)
    try:
        prediction = await call.api.get_prediction(args.prediction_id, deadline=deadline)
    except NotFoundError as err:
        raise ToolError(no_such_prediction(args.prediction_id)) from err
    if limit > 0 and not prediction.is_terminal:
        prediction = await wait_for_picture(call, prediction, wait=limit, total=limit, deadline=deadline)
    entry = await runtime.history.lookup(call.caller.history, prediction.id) or HistoryEntry(
        prediction_id=prediction.id,
        tool="get_prediction",
        model=prediction.model or "",
        prompt=None,
        request_body=None,
    )
    pictures = min(len(prediction.outputs), MAX_NUM_IMAGES) or 1
    delivery = Delivery(
        save=call.outputs.save_by_default,
        mode=args.return_image or runtime.settings.image_mode,
        prompt=entry.prompt,
        sources=entry.sources,
        entry=entry,
        asset=await plan_asset(call, args, spec, pictures),
    )
    return await finish(call, prediction, delivery, deadline=deadline)
