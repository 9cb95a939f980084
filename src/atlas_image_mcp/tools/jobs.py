"""The one path every generating tool takes: plan, [dry run], confirm, resolve pictures, reserve, submit,
wait, finish.

generate_image, edit_image and generate_variations each turn their arguments into a
:class:`~.plan.Job`; :func:`run_job` runs it. So the model table, the confirmation, the budgets in
the ledger, the billing rules (a POST is sent once; once it is accepted every answer carries its
prediction id), the caller's history and the result layers are the same for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult

from ..asset_plan import AssetPlan, plan_asset
from ..call import Call
from ..delivery import Delivery, finish
from ..errors import APIConnectionError, APIStatusError, AtlasError, LedgerError, usd
from ..history import HistoryEntry
from ..params import CallOptions
from ..prepared import PreparedRequest
from ..render import GenerationResult, price_text, tool_result
from ..settings import env_name
from ..sources import resolve_picture
from ..waiting import wait_for_picture
from .cost import cost_words, go_ahead, held_explained
from .handoff import hand_off
from .plan import Job, Plan, plan

__all__ = [
    "JobAnswer",
    "dry_run_words",
    "files_words",
    "resolve_pictures",
    "not_started",
    "run_job",
    "saving",
]

logger = logging.getLogger(__name__)

#: What a picture tool answers: its result, or on 2026-07-28 the cost question first.
JobAnswer = CallToolResult | InputRequiredResult
_Options = TypeVar("_Options", bound=CallOptions)

_ALREADY_SUBMITTED = (
    "The picture was already requested as prediction {pid} and may still finish (it is billed when it "
    'runs), so do not call {tool} again: call get_prediction with prediction_id "{pid}" and '
    "wait_seconds=30 to collect it."
)


async def run_job(
    call: Call, options: _Options, planner: Callable[[Call, _Options], Awaitable[Job]]
) -> JobAnswer:
    """Run the job ``planner`` makes of ``options`` (the tool's arguments) to the tool's answer.

    A job that may not be sent (a dry run, declined, not confirmed) is answered with why, and
    nothing is sent. Without a key, that is said before anything else is read (but a dry run needs
    none).
    """
    if not options.dry_run:
        _ = call.api
    planned = await plan(call, await planner(call, options))
    asset = await plan_asset(call, options, planned.asset, planned.images)
    if options.dry_run:
        return await _dry_run(call, planned, asset)
    stopped = await go_ahead(call, planned)
    if stopped is not None:
        return stopped
    prepared = await resolve_pictures(call, planned.prepared, upload=True)
    return await _submit(call, planned, prepared, asset)


async def resolve_pictures(call: Call, prepared: PreparedRequest, *, upload: bool) -> PreparedRequest:
    """The request with every picture reference turned into a URL (see :mod:`atlas_image_mcp.sources`).

    Without ``upload`` (a dry run) nothing is uploaded: a picture given as data or a file shows as a
    placeholder URL.
    """
    if not prepared.pictures:
        return prepared
    sources = call.picture_sources(upload=upload)
    urls = [await resolve_picture(slot.ref, slot.parameter, sources) for slot in prepared.pictures]
    return prepared.with_pictures(urls)


async def _submit(
    call: Call, planned: Plan, prepared: PreparedRequest, asset: AssetPlan | None
) -> CallToolResult:
    job = planned.job
    options = job.options
    runtime = call.runtime
    save = saving(call, options)
    total = runtime.settings.wait_seconds
    deadline = call.deadline(total)
    # Held against the daily budget: the estimate, or a cautious amount when the price is unknown.
    with held_explained(planned):
        reservation = await runtime.ledger.reserve(
            call.caller.bucket,
            tool=job.tool,
            model=prepared.model,
            images=prepared.num_images,
            estimate=planned.estimate,
            amount=planned.held,
            fingerprint=prepared.fingerprint,
        )
    try:
        prediction = await call.api.submit_image(prepared, deadline=deadline)
    except AtlasError as err:
        if not_started(err):  # nothing was started, nothing billed
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
    await call.notify("info", f"submitted prediction {prediction.id} ({prepared.model}{size})", operator=True)
    entry = HistoryEntry(
        prediction_id=prediction.id,
        tool=job.tool,
        model=prepared.model,
        prompt=prepared.prompt,
        request_body=prepared.body,
        sources=prepared.sources,
    )
    await runtime.history.record(call.caller.history, entry)
    delivery = Delivery(
        save=save,
        mode=options.return_image or runtime.settings.image_mode,
        expected=prepared.num_images,
        seed=job.request.seed,
        ignored=prepared.ignored,
        notes=(*job.notes, *prepared.notes),
        prompt=prepared.prompt,
        sources=prepared.sources,
        estimate=planned.estimate,
        entry=entry,
        asset=asset,
    )
    if options.wait and not prediction.is_terminal:
        # a client that uses tasks gets its task now; the picture is then waited for much longer
        if (task_wait := hand_off(call, prediction, delivery)) != total:
            total = task_wait
            deadline = call.deadline(max(0.0, total - call.elapsed))
        try:
            prediction = await wait_for_picture(
                call, prediction, wait=max(0.0, total - call.elapsed), total=total, deadline=deadline
            )
        except AtlasError as err:
            err.extend_message(_ALREADY_SUBMITTED.format(pid=prediction.id, tool=job.tool))
            raise
    return await finish(call, prediction, delivery, deadline=deadline)


async def _dry_run(call: Call, planned: Plan, asset: AssetPlan | None) -> CallToolResult:
    prepared = await resolve_pictures(call, planned.prepared, upload=False)
    result = GenerationResult(
        prediction_id=None,
        status="dry_run",
        model=prepared.model,
        prompt=prepared.prompt,
        sources=list(prepared.sources),
        estimated_price=price_text(planned.estimate),
        ignored_parameters=list(prepared.ignored),
        request_body=prepared.body,
        elapsed_seconds=round(call.elapsed, 3),
        next_step=dry_run_words(call, planned),
    )
    return tool_result(result, [], [*planned.job.notes, *prepared.notes, *files_words(asset)])


def dry_run_words(call: Call, planned: Plan) -> str:
    """What a dry run says it would cost, and how to run it for real."""
    estimate = planned.estimate
    if estimate is not None:
        cost = f"Estimated cost: {usd(estimate)} ({cost_words(planned)}). "
    else:
        cost = f"Estimated cost: unknown ({cost_words(planned)}); Atlas reports the charge after the job. "
    threshold = call.runtime.confirm_above
    if threshold is not None and (estimate is None or estimate > threshold):
        cost += f"Above the {usd(threshold)} this server confirms, so the person will be asked first. "
    return cost + _run_for_real(call, planned.job.tool)


def files_words(asset: AssetPlan | None) -> list[str]:
    """A dry run's note on the files it would write."""
    if asset is None or not asset.targets:
        return []
    shown = ", ".join(str(t.absolute) for t in asset.targets)
    return [f"It would write {shown}."]


def saving(call: Call, options: CallOptions) -> bool:
    """Whether this call keeps a copy of each picture in the output folder."""
    return call.outputs.save_by_default if options.save is None else (options.save and _may_save(call))


def _run_for_real(call: Call, tool: str) -> str:
    if call.runtime.place == "cli":  # the generate command: its flag, not the tool's argument
        return "Run the same command without --dry-run to generate."
    return f"Call {tool} again without dry_run to run it."


def not_started(err: AtlasError) -> bool:
    """The generation POST never reached Atlas, or Atlas refused it (4xx): nothing was started."""
    if isinstance(err, APIConnectionError):
        return not err.sent
    return isinstance(err, APIStatusError) and 400 <= err.status_code < 500


def _may_save(call: Call) -> bool:
    """Over HTTP, files are written only when the operator chose the output folder."""
    if not call.outputs.may_write:
        raise ToolError(
            f"Saving pictures is off on this hosted server ({env_name('output_dir')} is not set); "
            "pass save=false."
        )
    return True
