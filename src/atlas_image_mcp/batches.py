"""A batch's answer: its jobs waited for together, then one result that lists every job.

``generate_image`` with ``prompts`` or ``count`` sends several jobs at once (see
:mod:`atlas_image_mcp.tools.batch`); each one that Atlas accepted is a :class:`Sent` with its
prediction and its :class:`~atlas_image_mcp.delivery.Delivery`, each one it did not accept a
:class:`Sent` without a prediction and with why. :func:`finish_batch` waits for the running ones
in parallel (one progress report counting jobs done), collects each one as a single job would be
collected, and answers with one :class:`~atlas_image_mcp.render.BatchResult`: ``outputs`` lists
every picture (so any client shows them as one grid), ``jobs`` says which job made which, with its
id, seed, price and saved paths; a job that failed, or was never accepted, is named with why, and
every prediction id stays in the answer. The answer is an error only when no job made a picture
and none is still running.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ImageContent

from .call import Call
from .constants import MAX_BASE64_CHARS, OFFLINE_NOTE
from .delivery import Answer, Delivery, conclude, remember
from .errors import AtlasError
from .ledger import parse_usd
from .models import Prediction
from .render import BatchJob, BatchResult, OutputImage, price_text, tool_result, without_local_paths
from .waiting import wait_for_pictures

__all__ = ["Sent", "finish_batch"]


@dataclass(frozen=True)
class Sent:
    """One job of a batch: its prediction (None: never accepted, ``error`` says why) and delivery."""

    prediction: Prediction | None
    delivery: Delivery
    error: str | None = None


async def finish_batch(
    call: Call, sent: list[Sent], *, wait: float, deadline: float, estimate: Decimal | None
) -> CallToolResult:
    """Wait up to ``wait`` seconds for the batch's running jobs, collect them, and answer for all."""
    accepted = [s.prediction for s in sent if s.prediction is not None]
    latest: list[Prediction | AtlasError] = list(accepted)
    if wait > 0 and any(not p.is_terminal for p in accepted):
        latest = await wait_for_pictures(call, accepted, wait=wait, deadline=deadline)
    states = iter(latest)
    outcomes: list[Answer | str | None] = [None] * len(sent)

    async def finish_one(i: int, state: Prediction | AtlasError) -> None:
        job = sent[i]
        pid = job.prediction.id if job.prediction is not None else ""
        if isinstance(state, AtlasError):
            outcomes[i] = (
                f"{state.message} It may still finish (and be billed): call get_prediction with "
                f'prediction_id "{pid}" to collect it.'
            )
            return
        try:
            answer = await conclude(call, state, job.delivery, deadline=deadline)
        except (AtlasError, ToolError) as err:
            outcomes[i] = err.message if isinstance(err, AtlasError) else str(err)
            return
        await remember(call, job.delivery, answer.result)
        outcomes[i] = answer

    async with anyio.create_task_group() as tg:
        for i, job in enumerate(sent):
            if job.prediction is not None:
                tg.start_soon(finish_one, i, next(states))
    return _answer(call, sent, outcomes, estimate)


def _answer(
    call: Call, sent: list[Sent], outcomes: list[Answer | str | None], estimate: Decimal | None
) -> CallToolResult:
    jobs: list[BatchJob] = []
    outputs: list[OutputImage] = []
    blocks: list[Any] = []
    notes: list[str] = []
    for number, (job, outcome) in enumerate(zip(sent, outcomes, strict=True), start=1):
        delivery = job.delivery
        pid = job.prediction.id if job.prediction is not None else None
        if isinstance(outcome, Answer):
            r = outcome.result
            pictures = list(range(len(outputs) + 1, len(outputs) + len(r.outputs) + 1))
            outputs.extend(r.outputs)
            jobs.append(
                BatchJob(prediction_id=pid, status=r.status, prompt=delivery.prompt, seed=r.seed,
                         price=r.price, pictures=pictures, error=r.error)
            )  # fmt: skip
            blocks.extend(outcome.blocks)
            notes.extend(f"Job {number}: {n}" if n.startswith("Image ") else n for n in outcome.notes)
        else:
            status = "not_sent" if pid is None else "failed"
            error = job.error if pid is None else outcome
            jobs.append(
                BatchJob(
                    prediction_id=pid, status=status, prompt=delivery.prompt, seed=delivery.seed, error=error
                )
            )
    result = _summary(sent, jobs, outputs, estimate)
    if call.shows_apps:
        result = without_local_paths(result)  # type: ignore[assignment]
    shown, dropped = _within_budget(blocks)
    if dropped:
        notes.append(
            f"{dropped} picture(s) are not shown inline: the result's inline image budget is used up."
        )
    is_error = result.status == "failed"  # no picture, and none coming
    if call.runtime.offline:
        notes.append(OFFLINE_NOTE)
    return tool_result(result, shown, list(dict.fromkeys(notes)), is_error=is_error)


def _summary(
    sent: list[Sent], jobs: list[BatchJob], outputs: list[OutputImage], estimate: Decimal | None
) -> BatchResult:
    """The batch's own fields: its status, pictures, price, and what to do about jobs not done."""
    first = sent[0].delivery
    prompts = {job.prompt for job in jobs}
    prices = [parse_usd(job.price) for job in jobs if job.prediction_id is not None]
    completed = [job for job in jobs if job.status == "completed"]
    running = [job for job in jobs if job.status not in ("completed", "failed", "not_sent")]
    failed = [(n, job) for n, job in enumerate(jobs, start=1) if job.status in ("failed", "not_sent")]
    status = "completed" if len(completed) == len(jobs) else "processing" if running else "failed"
    if status == "failed" and completed:
        status = "completed"  # some pictures, and nothing left to wait for: the failures are named
    error = None
    if failed:
        named = "; ".join(
            f"job {n}"
            + (f" (prediction {job.prediction_id})" if job.prediction_id else " (not sent)")
            + f": {job.error}"
            for n, job in failed
        )
        error = f"{len(failed)} of {len(jobs)} jobs failed: {named}"
    next_step = None
    if running:
        ids = ", ".join(f'"{job.prediction_id}"' for job in running)
        next_step = (
            f"{len(running)} job(s) are still running: call get_prediction with each prediction_id ({ids}) "
            "and wait_seconds=30 to collect them (nothing more is billed)."
        )
    elif failed and completed:
        next_step = "The other jobs' pictures are listed; a failed job is not billed."
    total = sum((p for p in prices if p is not None), Decimal(0))
    return BatchResult(
        prediction_id=None,
        status=status,
        model=next(
            (s.prediction.model for s in sent if s.prediction is not None and s.prediction.model), None
        ),
        prompt=first.prompt if len(prompts) == 1 else None,
        outputs=outputs,
        price=price_text(total) if prices and None not in prices else None,
        estimated_price=price_text(estimate),
        error=error,
        ignored_parameters=list(first.ignored),
        next_step=next_step,
        jobs=jobs,
    )


def _within_budget(blocks: list[Any]) -> tuple[list[Any], int]:
    """The picture blocks that fit the inline budget together, and how many did not."""
    kept: list[Any] = []
    used = 0
    for block in blocks:
        size = len(block.data) if isinstance(block, ImageContent) else 0
        if used + size > MAX_BASE64_CHARS:
            continue
        used += size
        kept.append(block)
    return kept, len(blocks) - len(kept)
