"""Picture jobs as MCP tasks: handing a submitted job to its task, and finishing it from a task id.

A job submitted to Atlas becomes a task (for a client that uses tasks) right after Atlas accepted
it: :func:`hand_off` gives the task what finishing the job needs (the prediction id and the
:class:`~atlas_image_mcp.delivery.Delivery`), which goes into the task id, and tells the tool how long
it may now wait (``ATLAS_MCP_TASK_WAIT_SECONDS`` instead of the synchronous
``ATLAS_MCP_WAIT_SECONDS``). Any process that can read the id finishes the job with :func:`resume`
(poll Atlas, then the same :func:`~atlas_image_mcp.delivery.finish` as the tool), so a task survives
a restart and can be read on another replica. :data:`IMAGE_JOB` declares all that for the task
runtime.

A batch is one task (:func:`hand_off_batch`): its id carries every job's prediction id and the
deliveries' shared part, and :func:`resume` finishes it as the tool would
(:func:`~atlas_image_mcp.batches.finish_batch`). When that does not fit in an id, the task lives in
the process that runs it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from ..batches import Sent, finish_batch
from ..call import Call, fail
from ..constants import (
    MAX_BATCH,
    MAX_PREDICTION_ID_CHARS,
    TASK_POLL_DEFAULT_MS,
    TASK_POLL_MAX_MS,
    TASK_POLL_MIN_MS,
)
from ..delivery import Delivery, finish
from ..errors import AtlasError, NotFoundError
from ..models import Prediction
from ..polling import PollSchedule
from ..tasks import TaskTool, current_task
from ..waiting import wait_for_picture

__all__ = ["IMAGE_JOB", "hand_off", "hand_off_batch", "poll_interval_ms", "resume"]


def _job_state(prediction_id: str, delivery: Delivery) -> dict[str, Any]:
    """What a task id carries: the prediction, and how its answer is made."""
    return {"p": prediction_id, **delivery.state()}


def _batch_state(sent: list[Sent]) -> dict[str, Any]:
    """What a batch's task id carries: each accepted job's prediction, seed and first picture's place,
    and the deliveries' shared part (with the whole batch's targets, when it writes files)."""
    jobs: list[list[Any]] = []
    offset = 0
    for job in sent:
        if job.prediction is not None:
            jobs.append([job.prediction.id, job.delivery.seed, offset])
        offset += job.delivery.expected
    first = next(job.delivery for job in sent if job.prediction is not None)
    state = {**first.state(), "b": jobs}
    state.pop("e", None)
    whole = [t for job in sent if job.delivery.asset is not None for t in job.delivery.asset.targets]
    if first.asset is not None:
        state["a"] = replace(first.asset, targets=tuple(whole)).state()
    return state


def _batch_of(state: Mapping[str, Any]) -> list[tuple[str, Delivery]] | None:
    """The jobs in a batch task's state, or None if it is not one."""
    jobs = state.get("b")
    shared = Delivery.from_state({**state, "e": None})
    if not isinstance(jobs, list) or not 0 < len(jobs) <= MAX_BATCH or shared is None:
        return None
    out: list[tuple[str, Delivery]] = []
    for job in jobs:
        if not (isinstance(job, list) and len(job) == 3):
            return None
        pid, seed, offset = job
        if not (isinstance(pid, str) and 0 < len(pid) <= MAX_PREDICTION_ID_CHARS):
            return None
        if not (seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0)):
            return None
        if not (isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0):
            return None
        asset = shared.asset.part(offset, shared.expected) if shared.asset is not None else None
        out.append((pid, replace(shared, seed=seed, asset=asset)))
    return out


def hand_off_batch(call: Call, sent: list[Sent]) -> float:
    """:func:`hand_off` for a batch: one task for all of its jobs; how long to wait for them."""
    run = current_task()
    settings = call.runtime.settings
    if run is None:
        return settings.wait_seconds
    accepted = [job.prediction for job in sent if job.prediction is not None]
    run.handoff(
        _batch_state(sent),
        poll_interval_ms=poll_interval_ms(call.api.poll_schedule, accepted[0].model),
        message=f"Atlas accepted {len(accepted)} of {len(sent)} jobs "
        f"({', '.join(p.id for p in accepted)}); waiting for the pictures.",
    )
    return settings.task_wait_seconds


def _job_of(state: Mapping[str, Any]) -> tuple[str, Delivery] | None:
    """The job in a task id's state, or None if it is not one (checked although ids are signed)."""
    pid = state.get("p")
    delivery = Delivery.from_state(state)
    if not (isinstance(pid, str) and 0 < len(pid) <= MAX_PREDICTION_ID_CHARS) or delivery is None:
        return None
    return pid, delivery


def poll_interval_ms(schedule: PollSchedule, model: str | None) -> int:
    """How often a client should ask about a job of ``model``: a quarter of how long it usually takes.

    The schedule knows the model's recent durations once one of its jobs finished in this process;
    until then the default. Bounded so a fast model is not asked about more than 4 times a second
    and a slow one at least every 5 s.
    """
    expected = schedule.expected(model)
    if expected is None:
        return TASK_POLL_DEFAULT_MS
    _, slowest = expected
    return max(TASK_POLL_MIN_MS, min(TASK_POLL_MAX_MS, round(slowest * 1000 / 4)))


def hand_off(call: Call, prediction: Prediction, delivery: Delivery) -> float:
    """Hand a job Atlas accepted to the call's task, if it runs as one; return how long to wait for it."""
    run = current_task()
    settings = call.runtime.settings
    if run is None:
        return settings.wait_seconds
    run.handoff(
        _job_state(prediction.id, delivery),
        poll_interval_ms=poll_interval_ms(call.api.poll_schedule, prediction.model),
        message=f"Atlas accepted the job as prediction {prediction.id} ({prediction.status}); "
        "waiting for the picture.",
    )
    return settings.task_wait_seconds


async def resume(
    ctx: ServerRequestContext[Any, Any], state: Mapping[str, Any], created: float
) -> CallToolResult:
    """Finish a job from its task's state: look it up at Atlas, wait what is left of the bound, collect."""
    age = max(0.0, time.time() - created)
    call = Call.of(Context(request_context=ctx), started=time.monotonic() - age)
    if "b" in state:
        return await _resume_batch(call, state, age)
    job = _job_of(state)
    if job is None:
        raise ToolError("This task does not describe a picture job this server can follow.")
    prediction_id, delivery = job
    try:
        try:
            prediction = await call.api.get_prediction(prediction_id)
        except NotFoundError as err:
            raise ToolError(
                f"Prediction {prediction_id} is no longer at Atlas (predictions are kept for a limited "
                "time), so this task's picture cannot be collected."
            ) from err
        if (run := current_task()) is not None:
            run.note(
                f"Following prediction {prediction_id} at Atlas ({prediction.status}).",
                poll_interval_ms=poll_interval_ms(call.api.poll_schedule, prediction.model),
            )
        bound = call.runtime.settings.task_wait_seconds
        deadline = call.deadline(max(0.0, bound - age))
        if bound - age > 0 and not prediction.is_terminal:
            prediction = await wait_for_picture(
                call, prediction, wait=bound - age, total=bound, deadline=deadline
            )
        # the caller's history entry (made by whichever replica sent the job) gets the pictures
        entry = await call.runtime.history.lookup(call.caller.history, prediction_id)
        delivery = replace(_confined(call, delivery), entry=entry, prompt=entry.prompt if entry else None)
        return await finish(call, prediction, delivery, deadline=deadline)
    except AtlasError as err:
        raise fail(err) from err


def _confined(call: Call, delivery: Delivery) -> Delivery:
    """``delivery`` as this process may carry it out: no saving where files are not written here, and
    a hosted server writes only into its own output folder (whatever a task id says)."""
    asset = delivery.asset
    if asset is not None and asset.targets:
        root = asset.targets[0].root.path
        if not call.outputs.may_write or (call.runtime.remote and root != call.outputs.folder.resolve()):
            asset = replace(asset, targets=())
    return replace(delivery, save=delivery.save and call.outputs.may_write, asset=asset)


async def _resume_batch(call: Call, state: Mapping[str, Any], age: float) -> CallToolResult:
    """Finish a batch from its task's state: every job looked up at Atlas, then as the tool would."""
    jobs = _batch_of(state)
    if jobs is None:
        raise ToolError("This task does not describe a picture job this server can follow.")
    sent: list[Sent] = []
    try:
        for prediction_id, delivery in jobs:
            entry = await call.runtime.history.lookup(call.caller.history, prediction_id)
            delivery = replace(_confined(call, delivery), entry=entry, prompt=entry.prompt if entry else None)
            try:
                sent.append(Sent(await call.api.get_prediction(prediction_id), delivery))
            except NotFoundError:
                sent.append(Sent(None, delivery, f"Prediction {prediction_id} is no longer at Atlas."))
        bound = call.runtime.settings.task_wait_seconds
        deadline = call.deadline(max(0.0, bound - age))
        return await finish_batch(call, sent, wait=max(0.0, bound - age), deadline=deadline, estimate=None)
    except AtlasError as err:
        raise fail(err) from err


def _cancelled(state: Mapping[str, Any]) -> str:
    batch = _batch_of(state) if "b" in state else None
    if batch:
        ids = ", ".join(pid for pid, _ in batch)
        return (
            f"Cancelled: this server stopped following predictions {ids}. Atlas may still finish them and "
            "bill them; call get_prediction with each prediction_id to collect the pictures."
        )
    job = _job_of(state)
    pid = job[0] if job else "(unknown)"
    return (
        f"Cancelled: this server stopped following prediction {pid}. Atlas may still finish the job and bill "
        f'it; call get_prediction with prediction_id "{pid}" to collect the picture.'
    )


#: How every picture tool runs as a task: it becomes one once Atlas accepted the job.
IMAGE_JOB = TaskTool(handoff=True, resume=resume, cancelled=_cancelled)
