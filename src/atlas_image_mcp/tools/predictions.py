"""``get_prediction``: collect (or wait a little more for) a job started earlier."""

from __future__ import annotations

import time
from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from ..errors import AtlasError, NotFoundError
from ..history import HistoryEntry
from ..params import GetPredictionArguments, tool_signature
from ..render import GenerationResult
from .jobs import session_of
from .results import ToolContext, call_deadline, fail, finish, runtime_of, wait_with_progress

__all__ = ["get_prediction"]


@tool_signature(GetPredictionArguments)
async def get_prediction(ctx: ToolContext, **arguments: Any) -> Annotated[CallToolResult, GenerationResult]:
    """Check a prediction (optionally waiting for it) and return its pictures like generate_image does."""
    started = time.monotonic()
    runtime = runtime_of(ctx)
    try:
        args = GetPredictionArguments(**arguments)
        api = runtime.api(ctx.headers)
        limit = min(args.wait_seconds, runtime.settings.wait_seconds)
        deadline = call_deadline(api, limit)
        try:
            prediction = await api.get_prediction(args.prediction_id, deadline=deadline)
        except NotFoundError as err:
            raise ToolError(
                f"No prediction with id {args.prediction_id!r} was found at Atlas. Check the id: it is the "
                "prediction_id from a generate_image result (predictions are kept for a limited time)."
            ) from err
        if limit > 0 and not prediction.is_terminal:
            prediction = await wait_with_progress(
                ctx, api, prediction, limit, started, limit, deadline=deadline
            )
        session = session_of(ctx)
        entry = runtime.history.find(session, prediction.id) or HistoryEntry(
            prediction_id=prediction.id,
            tool="get_prediction",
            model=prediction.model or "",
            prompt=None,
            request_body=None,
        )
        return await finish(
            ctx,
            runtime,
            api,
            prediction,
            started=started,
            save=runtime.save_by_default,
            mode=args.return_image or runtime.settings.image_mode,
            deadline=deadline,
            prompt=entry.prompt,
            sources=entry.sources,
            record=lambda result: runtime.history.completed(session, entry, result),
        )
    except AtlasError as err:
        raise fail(err) from err
