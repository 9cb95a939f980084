"""``generate_image`` with ``prompts`` or ``count``: several jobs to compare, as one call.

Each prompt (``prompt``, then ``prompts``) runs ``count`` times; run ``k`` of every prompt has the
same seed (``seed + k`` when a seed is given, else drawn here, distinct), so prompts compare at equal
seeds and the runs of one prompt differ. At most :data:`~atlas_image_mcp.constants.MAX_BATCH` jobs.

The batch takes the one path of :mod:`.jobs`, once for all of its jobs: one plan (the sum of the
jobs' estimates and pictures), one confirmation, one reservation in the ledger
(:meth:`~atlas_image_mcp.ledger.Ledger.reserve_batch`: held whole or refused whole, so a batch the
budget cannot cover sends nothing). Then every job's POST is sent at once, each exactly once; a job
Atlas refuses gives its reservation back and is named in the answer, the others go on. The jobs
are waited for in parallel, as one task for a client that uses tasks, and answered together
(:mod:`atlas_image_mcp.batches`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace

import anyio
from mcp_types import CallToolResult

from ..asset_plan import AssetPlan, plan_asset
from ..batches import Sent, finish_batch
from ..call import Call
from ..constants import MAX_BATCH, SEED_MAX
from ..delivery import Delivery
from ..errors import AtlasError, InvalidParameterError, LedgerError
from ..history import HistoryEntry
from ..ledger import BatchItem
from ..params import GenerateImageArguments, GenerationParams, GenerationRequest
from ..prepared import PreparedRequest
from ..render import BatchJob, BatchResult, price_text, tool_result
from .cost import go_ahead
from .handoff import hand_off_batch
from .jobs import JobAnswer, dry_run_words, files_words, not_started, resolve_pictures, saving
from .plan import Job, Plan, batch_plan, plan

__all__ = ["is_batch", "run_batch"]

logger = logging.getLogger(__name__)
_TOOL = "generate_image"


def is_batch(args: GenerateImageArguments) -> bool:
    return bool(args.prompts) or args.count > 1


async def run_batch(call: Call, args: GenerateImageArguments) -> JobAnswer:
    """Plan, confirm, reserve and send every job of the batch, then answer for all of them."""
    if not args.dry_run:
        _ = call.api
    plans = [await plan(call, Job(_TOOL, request, args)) for request in _requests(args)]
    planned = batch_plan(plans)
    asset = await plan_asset(call, args, planned.asset, planned.images)
    if args.dry_run:
        return await _dry_run(call, planned, asset)
    stopped = await go_ahead(call, planned)
    if stopped is not None:
        return stopped
    first = await resolve_pictures(call, plans[0].prepared, upload=True)  # the same pictures for all
    prepared = [first, *(p.prepared.with_pictures(first.sources) for p in plans[1:])]
    return await _send(call, planned, prepared, asset)


def _requests(args: GenerateImageArguments) -> list[GenerationRequest]:
    prompts = list(dict.fromkeys([args.prompt, *(args.prompts or [])]))
    jobs = len(prompts) * args.count
    if jobs > MAX_BATCH:
        raise InvalidParameterError(
            "count",
            f"{len(prompts)} prompt(s) x {args.count} run(s) make {jobs} jobs; a batch runs at most "
            f"{MAX_BATCH}.",
        )
    if args.seed is not None and args.seed >= 0:
        seeds = [(args.seed + k) % (SEED_MAX + 1) for k in range(args.count)]
    else:
        seeds = secrets.SystemRandom().sample(range(SEED_MAX + 1), args.count)
    fields = args.model_dump(include=set(GenerationParams.model_fields), exclude_defaults=True)
    return [
        GenerationRequest(**{**fields, "prompt": prompt, "seed": seed})
        for prompt in prompts
        for seed in seeds
    ]


async def _send(
    call: Call, planned: Plan, prepared: list[PreparedRequest], asset: AssetPlan | None
) -> CallToolResult:
    runtime = call.runtime
    args = planned.job.options
    total = runtime.settings.wait_seconds
    deadline = call.deadline(total)
    plans = planned.batch
    cap_share = planned.cap / len(plans) if planned.cap is not None else None
    reservations = await runtime.ledger.reserve_batch(
        call.caller.bucket,
        tool=_TOOL,
        model=planned.model,
        jobs=[
            BatchItem(
                plan.images,
                plan.estimate,
                plan.estimate if plan.estimate is not None else cap_share,
                request.fingerprint,
            )  # fmt: skip
            for plan, request in zip(plans, prepared, strict=True)
        ],
    )
    batch_id = secrets.token_hex(8)
    deliveries = _deliveries(call, planned, prepared, asset)
    sent: list[Sent] = [Sent(None, d, "not sent") for d in deliveries]

    async def submit(i: int) -> None:
        request = prepared[i]
        try:
            prediction = await call.api.submit_image(request, deadline=deadline)
        except AtlasError as err:
            if not_started(err):  # nothing was started, nothing billed
                try:
                    await runtime.ledger.release(reservations[i])
                except LedgerError as problem:
                    logger.warning("could not give back a reservation: %s", problem.message)
            sent[i] = Sent(None, deliveries[i], err.message)
            return
        try:
            await runtime.ledger.submitted(reservations[i], prediction.id)
        except LedgerError as problem:  # the job runs and is billed: its answer matters more
            logger.warning("could not note prediction %s in the ledger: %s", prediction.id, problem.message)
        await call.notify(
            "info", f"submitted prediction {prediction.id} (job {i + 1} of {len(prepared)})", operator=True
        )
        entry = HistoryEntry(
            prediction_id=prediction.id,
            tool=_TOOL,
            model=request.model,
            prompt=request.prompt,
            request_body=request.body,
            sources=request.sources,
            batch=batch_id,
        )
        await runtime.history.record(call.caller.history, entry)
        sent[i] = Sent(prediction, replace(deliveries[i], entry=entry))

    async with anyio.create_task_group() as tg:
        for i in range(len(prepared)):
            tg.start_soon(submit, i)
    wait = 0.0
    if args.wait and any(s.prediction is not None and not s.prediction.is_terminal for s in sent):
        if (task_wait := hand_off_batch(call, sent)) != total:
            total = task_wait
            deadline = call.deadline(max(0.0, total - call.elapsed))
        wait = max(0.0, total - call.elapsed)
    return await finish_batch(call, sent, wait=wait, deadline=deadline, estimate=planned.estimate)


def _deliveries(
    call: Call, planned: Plan, prepared: list[PreparedRequest], asset: AssetPlan | None
) -> list[Delivery]:
    args = planned.job.options
    save = saving(call, args)
    mode = args.return_image or call.runtime.settings.image_mode
    out: list[Delivery] = []
    offset = 0
    for job_plan, request in zip(planned.batch, prepared, strict=True):
        out.append(
            Delivery(
                save=save,
                mode=mode,
                expected=request.num_images,
                seed=job_plan.job.request.seed,
                ignored=request.ignored,
                notes=(*job_plan.job.notes, *request.notes),
                prompt=request.prompt,
                sources=request.sources,
                estimate=job_plan.estimate,
                asset=asset.part(offset, request.num_images) if asset is not None else None,
            )
        )
        offset += request.num_images
    return out


async def _dry_run(call: Call, planned: Plan, asset: AssetPlan | None) -> CallToolResult:
    first = await resolve_pictures(call, planned.batch[0].prepared, upload=False)
    jobs = [
        BatchJob(prediction_id=None, status="dry_run", prompt=p.prepared.prompt, seed=p.job.request.seed)
        for p in planned.batch
    ]
    result = BatchResult(
        prediction_id=None,
        status="dry_run",
        model=first.model,
        sources=list(first.sources),
        estimated_price=price_text(planned.estimate),
        ignored_parameters=list(first.ignored),
        request_body=first.body,
        elapsed_seconds=round(call.elapsed, 3),
        next_step=dry_run_words(call, planned),
        jobs=jobs,
    )
    notes = [
        f"A batch of {len(jobs)} jobs, sent at once; the body shown is job 1's, the others differ in their "
        "prompt and seed.",
        *dict.fromkeys([*planned.job.notes, *first.notes]),
        *files_words(asset),
    ]
    return tool_result(result, [], notes)
