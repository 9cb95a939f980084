"""The one path every generating tool takes: [confirm], resolve pictures, prepare, [dry run], reserve, submit,
wait, finish.

generate_image, edit_image and generate_variations plan a :class:`Job` (a
:class:`~atlas_image_mcp.params.GenerationRequest` and how to run it); :mod:`.cost` prices it and
gets the person's go-ahead where one is needed, and :func:`run_generation` runs it. So the model
table, the confirmation, the budgets in the ledger, the billing rules (a POST is sent once; once it
is accepted every answer carries its prediction id), the session history and the result layers are
the same for all of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from ..catalogue import ModelSpec
from ..errors import APIConnectionError, APIStatusError, AtlasError, InvalidParameterError, LedgerError, usd
from ..history import HistoryEntry, session_key
from ..notify import notify
from ..params import CallOptions, GenerationRequest
from ..render import GenerationResult
from ..runtime import Runtime
from ..settings import env_name
from ..sources import SourceContext, resolve_picture
from ..wire import PreparedRequest, prepare_request
from .cost import Confirmation, Plan, cost_words, not_sent
from .handoff import TaskJob, hand_off
from .results import (
    ToolContext,
    call_deadline,
    fail,
    finish,
    price_text,
    runtime_of,
    tool_result,
    wait_with_progress,
)

__all__ = ["Job", "model_spec", "run_generation", "session_of", "source_context"]

logger = logging.getLogger(__name__)

_ALREADY_SUBMITTED = (
    "The picture was already requested as prediction {pid} and may still finish (it is billed when it "
    'runs), so do not call {tool} again: call get_prediction with prediction_id "{pid}" and '
    "wait_seconds=30 to collect it."
)


@dataclass(frozen=True)
class Job:
    """What a tool asks for: the request (in friendly names), how to run it, and notes for the result."""

    tool: str
    request: GenerationRequest
    options: CallOptions
    notes: tuple[str, ...] = ()


def session_of(ctx: ToolContext) -> str:
    runtime = runtime_of(ctx)
    return session_key(ctx.headers, runtime.current_key(ctx.headers) if runtime.per_user_keys else None)


def source_context(ctx: ToolContext, *, upload: bool) -> SourceContext:
    runtime = runtime_of(ctx)
    settings = runtime.settings
    return SourceContext(
        api=runtime.api(ctx.headers),
        history=runtime.history,
        session=session_of(ctx),
        output_dir=runtime.output_dir,
        remote=runtime.remote,
        upload_root=settings.upload_root,
        max_upload_bytes=settings.max_upload_bytes,
        upload=upload,
    )


async def model_spec(ctx: ToolContext, model: str) -> ModelSpec | None:
    """The model's row (live schema when readable); a model the live catalogue does not list is an error."""
    runtime = runtime_of(ctx)
    spec = await runtime.catalogue.spec(model, runtime.client)  # public data: no key needed
    if spec is None and runtime.catalogue.listed(model) is False:
        raise InvalidParameterError(
            "model",
            f"{model!r} is not in the Atlas model catalogue. Call list_models to see the image models "
            "and their ids.",
        )
    return spec


async def resolve_pictures(
    ctx: ToolContext, request: GenerationRequest, dry_run: bool
) -> tuple[GenerationRequest, tuple[str, ...]]:
    """The request with every picture reference turned into a URL, and those URLs (the sources).

    In a dry run nothing is uploaded: a picture given as data or a file shows as a placeholder URL.
    """
    if not (request.image or request.mask_image or request.images):
        return request, ()
    sources = source_context(ctx, upload=not dry_run)
    changes: dict[str, object] = {}
    used: list[str] = []
    for name in ("image", "mask_image"):
        ref = getattr(request, name)
        if ref:
            url = await resolve_picture(ref, name, sources)
            changes[name] = url
            used.append(url)
    if request.images:
        urls = [await resolve_picture(ref, "images", sources) for ref in request.images]
        changes["images"] = urls
        used.extend(urls)
    return request.model_copy(update=changes), tuple(used)


async def run_generation(ctx: ToolContext, plan: Plan, confirmation: Confirmation) -> CallToolResult:
    """Run a planned job to the tool's answer; failures become tool errors with the next step.

    ``confirmation`` is what :mod:`.cost` decided (or the person answered): a job that may not be
    sent is answered with why, and nothing is sent.
    """
    started = time.monotonic()
    runtime = runtime_of(ctx)
    job = plan.job
    try:
        if job.options.dry_run:
            request, used = await resolve_pictures(ctx, job.request, True)
            prepared = prepare_request(request, plan.spec)
            return _dry_run(ctx, prepared, plan, started, used, (*job.notes, *prepared.notes))
        refused = not_sent(ctx, plan, confirmation)
        if refused is not None:
            return refused
        runtime.api(ctx.headers)  # no key: say so before anything else is read
        request, used = await resolve_pictures(ctx, job.request, False)
        prepared = prepare_request(request, plan.spec)
        if prepared.model != plan.model or prepared.num_images != plan.images:
            raise InvalidParameterError(  # cannot happen: the same request on the same row, priced first
                "model", "the job changed while it was being confirmed, so nothing was sent; call again."
            )
        return await _submit(ctx, runtime, plan, prepared, started, used, (*job.notes, *prepared.notes))
    except AtlasError as err:
        raise fail(err) from err


async def _submit(
    ctx: ToolContext,
    runtime: Runtime,
    plan: Plan,
    prepared: PreparedRequest,
    started: float,
    used: Sequence[str],
    notes: Sequence[str],
) -> CallToolResult:
    job = plan.job
    options = job.options
    do_save = runtime.save_by_default if options.save is None else (options.save and _may_save(runtime))
    api = runtime.api(ctx.headers)
    total = runtime.settings.wait_seconds
    deadline = call_deadline(api, total)
    key = runtime.current_key(ctx.headers)
    count = prepared.num_images
    # Held against the daily budget: the estimate, or the caller's bound when the price is unknown.
    amount = plan.estimate if plan.estimate is not None else plan.cap
    reservation = await runtime.ledger.reserve(
        key,
        tool=job.tool,
        model=prepared.model,
        images=count,
        estimate=plan.estimate,
        amount=amount,
    )
    try:
        prediction = await api.submit_image(prepared, deadline=deadline)
    except AtlasError as err:
        if _not_started(err):  # nothing was started, nothing billed
            try:
                await runtime.ledger.release(reservation)
            except LedgerError as problem:
                logger.warning("could not give back a reservation: %s", problem.message)
        raise
    try:
        await runtime.ledger.submitted(reservation, prediction.id)
    except LedgerError as problem:  # the job runs and is billed: its answer matters more
        logger.warning("could not note prediction %s in the ledger: %s", prediction.id, problem.message)
    size = f", {prepared.width}x{prepared.height}" if prepared.width and prepared.height else ""
    await notify(ctx, "info", f"submitted prediction {prediction.id} ({prepared.model}{size})")
    session = session_of(ctx)
    entry = HistoryEntry(
        prediction_id=prediction.id,
        tool=job.tool,
        model=prepared.model,
        prompt=prepared.prompt,
        request_body=prepared.body,
        sources=tuple(used),
    )
    runtime.history.record(session, entry)
    mode = options.return_image or runtime.settings.image_mode
    if options.wait and not prediction.is_terminal:
        # a client that uses tasks gets its task now; the picture is then waited for much longer
        handed = TaskJob(prediction.id, do_save, mode, count, job.request.seed, prepared.ignored)
        if (task_wait := hand_off(runtime, api, prediction, handed)) != total:
            total = task_wait
            deadline = call_deadline(api, max(0.0, total - (time.monotonic() - started)))
        remaining = max(0.0, total - (time.monotonic() - started))
        try:
            prediction = await wait_with_progress(
                ctx, api, prediction, remaining, started, total, deadline=deadline
            )
        except AtlasError as err:
            err.extend_message(_ALREADY_SUBMITTED.format(pid=prediction.id, tool=job.tool))
            raise

    return await finish(
        ctx,
        runtime,
        api,
        prediction,
        started=started,
        save=do_save,
        mode=mode,
        deadline=deadline,
        expected=count,
        seed=job.request.seed,
        ignored=prepared.ignored,
        notes=tuple(notes),
        prompt=prepared.prompt,
        sources=tuple(used),
        estimate=plan.estimate,
        record=lambda result: runtime.history.completed(session, entry, result),
    )


def _dry_run(
    ctx: ToolContext,
    prepared: PreparedRequest,
    plan: Plan,
    started: float,
    used: Sequence[str],
    notes: Sequence[str],
) -> CallToolResult:
    estimate = plan.estimate
    if estimate is not None:
        cost = f"Estimated cost: {usd(estimate)} ({cost_words(plan)}). "
    else:
        cost = f"Estimated cost: unknown ({cost_words(plan)}); Atlas reports the charge after the job. "
    threshold = runtime_of(ctx).confirm_above
    if threshold is not None and (estimate is None or estimate > threshold):
        cost += f"Above the {usd(threshold)} this server confirms, so the person will be asked first. "
    result = GenerationResult(
        prediction_id=None,
        status="dry_run",
        model=prepared.model,
        prompt=prepared.prompt,
        sources=list(used),
        estimated_price=price_text(estimate),
        ignored_parameters=list(prepared.ignored),
        request_body=prepared.body,
        elapsed_seconds=round(time.monotonic() - started, 3),
        next_step=cost + _run_for_real(runtime_of(ctx), plan.job.tool),
    )
    return tool_result(result, [], list(notes))


def _run_for_real(runtime: Runtime, tool: str) -> str:
    if runtime.place == "cli":  # the generate command: its flag, not the tool's argument
        return "Run the same command without --dry-run to generate."
    return f"Call {tool} again without dry_run to run it."


def _not_started(err: AtlasError) -> bool:
    """The generation POST never reached Atlas, or Atlas refused it (4xx): nothing was started."""
    if isinstance(err, APIConnectionError):
        return not err.sent
    return isinstance(err, APIStatusError) and 400 <= err.status_code < 500


def _may_save(runtime: Runtime) -> bool:
    """Over HTTP, files are written only when the operator set ATLAS_MCP_OUTPUT_DIR."""
    if not runtime.may_write_files:
        raise ToolError(
            f"Saving pictures is off on this hosted server ({env_name('output_dir')} is not set); "
            "pass save=false."
        )
    return True
