"""``generate_image``: from a sentence to a saved picture in one call."""

from __future__ import annotations

import time
from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from ..errors import APIConnectionError, APIStatusError, AtlasError
from ..flux import FLUX_MODELS, PreparedRequest, prepare_request
from ..notify import notify
from ..params import GenerateImageArguments, tool_signature
from ..render import GenerationResult
from ..runtime import Runtime
from .results import ToolContext, call_deadline, fail, finish, runtime_of, tool_result, wait_with_progress

__all__ = ["generate_image"]

_ALREADY_SUBMITTED = (
    "The picture was already requested as prediction {pid} and may still finish (it is billed when it "
    'runs), so do not call generate_image again: call get_prediction with prediction_id "{pid}" and '
    "wait_seconds=30 to collect it."
)


@tool_signature(GenerateImageArguments)
async def generate_image(ctx: ToolContext, **arguments: Any) -> Annotated[CallToolResult, GenerationResult]:
    """Generate pictures with FLUX on Atlas Cloud and return them in one call (URL, saved path, preview)."""
    started = time.monotonic()
    runtime = runtime_of(ctx)
    try:
        args = GenerateImageArguments(**arguments)
        prepared = prepare_request(args.request())
        if args.dry_run:
            return _dry_run(prepared, started)
        do_save = runtime.save_by_default if args.save is None else (args.save and _may_save(runtime))
        api = runtime.api(ctx.headers)
        total = runtime.settings.wait_seconds
        deadline = call_deadline(api, total)
        key = runtime.current_key(ctx.headers)
        runtime.guard.reserve(key, args.num_images)
        try:
            prediction = await api.submit_image(prepared, deadline=deadline)
        except AtlasError as err:
            if _not_started(err):
                runtime.guard.release(key, args.num_images)  # nothing was started, nothing billed
            raise
        await notify(
            ctx,
            "info",
            f"submitted prediction {prediction.id} ({prepared.model}, {prepared.width}x{prepared.height})",
        )
        if args.wait and not prediction.is_terminal:
            remaining = max(0.0, total - (time.monotonic() - started))
            try:
                prediction = await wait_with_progress(
                    ctx, api, prediction, remaining, started, total, deadline=deadline
                )
            except AtlasError as err:
                err.extend_message(_ALREADY_SUBMITTED.format(pid=prediction.id))
                raise
        return await finish(
            ctx,
            runtime,
            api,
            prediction,
            started=started,
            save=do_save,
            mode=args.return_image or runtime.settings.image_mode,
            deadline=deadline,
            expected=args.num_images,
            seed=args.seed,
            ignored=prepared.ignored,
        )
    except AtlasError as err:
        raise fail(err) from err


def _dry_run(prepared: PreparedRequest, started: float) -> CallToolResult:
    spec = FLUX_MODELS.get(prepared.model)
    count = int(prepared.body.get("num_images", 1))
    estimate = ""
    if spec and spec.price_per_image:
        total = float(spec.price_per_image) * count
        estimate = f"Estimated cost: ${total:g} ({count} x ${spec.price_per_image}). "
    result = GenerationResult(
        prediction_id=None,
        status="dry_run",
        model=prepared.model,
        ignored_parameters=list(prepared.ignored),
        request_body=prepared.body,
        elapsed_seconds=round(time.monotonic() - started, 3),
        next_step=f"{estimate}Call generate_image again without dry_run to generate.",
    )
    return tool_result(result, [], [])


def _not_started(err: AtlasError) -> bool:
    """The generation POST never reached Atlas, or Atlas refused it (4xx): nothing was started."""
    if isinstance(err, APIConnectionError):
        return not err.sent
    return isinstance(err, APIStatusError) and 400 <= err.status_code < 500


def _may_save(runtime: Runtime) -> bool:
    """Over HTTP, files are written only when the operator set ATLAS_MCP_OUTPUT_DIR."""
    if runtime.remote and not runtime.settings.output_dir_explicit:
        raise ToolError(
            "Saving pictures is off on this hosted server (ATLAS_MCP_OUTPUT_DIR is not set); pass save=false."
        )
    return True
