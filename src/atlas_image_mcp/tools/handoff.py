"""Picture jobs as MCP tasks: handing a submitted job to its task, and finishing it from a task id.

A job submitted to Atlas becomes a task (for a client that uses tasks) right after Atlas accepted
it: :func:`hand_off` gives the task what finishing the job needs (:class:`TaskJob`: the prediction id
and the caller's choices), which goes into the task id, and tells the tool how long it may now wait
(``ATLAS_MCP_TASK_WAIT_SECONDS`` instead of the synchronous ``ATLAS_MCP_WAIT_SECONDS``). Any
process that can read the id finishes the job with :func:`resume` (poll Atlas, then the same
:func:`~atlas_image_mcp.tools.results.finish` as the tool), so a task survives a restart and can be
read on another replica. :data:`IMAGE_JOB` declares all that for the task runtime.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from ..client import AtlasClient
from ..constants import (
    IMAGE_MODES,
    MAX_NUM_IMAGES,
    MAX_PREDICTION_ID_CHARS,
    TASK_POLL_DEFAULT_MS,
    TASK_POLL_MAX_MS,
    TASK_POLL_MIN_MS,
    ImageMode,
)
from ..errors import AtlasError, NotFoundError
from ..models import Prediction
from ..polling import PollSchedule
from ..runtime import Runtime
from ..tasks import TaskTool, current_task
from .results import ToolContext, call_deadline, fail, finish, runtime_of, wait_with_progress

__all__ = ["IMAGE_JOB", "TaskJob", "hand_off", "poll_interval_ms", "resume"]

_MAX_IGNORED = 32


@dataclass(frozen=True)
class TaskJob:
    """A submitted picture job: what finishing it needs besides Atlas' answer (a task id carries it)."""

    prediction_id: str
    save: bool
    mode: ImageMode
    expected: int = MAX_NUM_IMAGES  # pictures asked for (more outputs than that are ignored)
    seed: int | None = None
    ignored: tuple[str, ...] = ()

    def state(self) -> dict[str, Any]:
        return {
            "p": self.prediction_id,
            "s": self.save,
            "m": self.mode,
            "n": self.expected,
            "e": self.seed,
            "i": list(self.ignored),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TaskJob | None:
        """The job in a task id's state, or None if it is not one (checked although ids are signed)."""
        pid, save, mode = state.get("p"), state.get("s"), state.get("m")
        expected, seed, ignored = state.get("n"), state.get("e"), state.get("i")
        if not (isinstance(pid, str) and 0 < len(pid) <= MAX_PREDICTION_ID_CHARS and isinstance(save, bool)):
            return None
        if mode not in IMAGE_MODES or not (seed is None or _natural(seed)):
            return None
        if not (
            isinstance(expected, int) and not isinstance(expected, bool) and 0 < expected <= MAX_NUM_IMAGES
        ):
            return None
        if not (
            isinstance(ignored, list)
            and len(ignored) <= _MAX_IGNORED
            and all(isinstance(n, str) for n in ignored)
        ):
            return None
        return cls(pid, save, mode, expected, seed, tuple(ignored))


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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


def hand_off(runtime: Runtime, api: AtlasClient, prediction: Prediction, job: TaskJob) -> float:
    """Hand a job Atlas accepted to the call's task, if it runs as one; return how long to wait for it."""
    run = current_task()
    if run is None:
        return runtime.settings.wait_seconds
    run.handoff(
        job.state(),
        poll_interval_ms=poll_interval_ms(api.poll_schedule, prediction.model),
        message=f"Atlas accepted the job as prediction {prediction.id} ({prediction.status}); "
        "waiting for the picture.",
    )
    return runtime.settings.task_wait_seconds


async def resume(
    ctx: ServerRequestContext[Any, Any], state: Mapping[str, Any], created: float
) -> CallToolResult:
    """Finish a job from its task's state: look it up at Atlas, wait what is left of the bound, collect."""
    job = TaskJob.from_state(state)
    if job is None:
        raise ToolError("This task does not describe a picture job this server can follow.")
    tool_ctx: ToolContext = Context(request_context=ctx)
    runtime = runtime_of(tool_ctx)
    try:
        api = runtime.api(tool_ctx.headers)
        try:
            prediction = await api.get_prediction(job.prediction_id)
        except NotFoundError as err:
            raise ToolError(
                f"Prediction {job.prediction_id} is no longer at Atlas (predictions are kept for a limited "
                "time), so this task's picture cannot be collected."
            ) from err
        if (run := current_task()) is not None:
            run.note(
                f"Following prediction {job.prediction_id} at Atlas ({prediction.status}).",
                poll_interval_ms=poll_interval_ms(api.poll_schedule, prediction.model),
            )
        age = max(0.0, time.time() - created)
        started = time.monotonic() - age
        bound = runtime.settings.task_wait_seconds
        deadline = call_deadline(api, max(0.0, bound - age))
        if bound - age > 0 and not prediction.is_terminal:
            prediction = await wait_with_progress(
                tool_ctx, api, prediction, bound - age, started, bound, deadline=deadline
            )
        return await finish(
            tool_ctx,
            runtime,
            api,
            prediction,
            started=started,
            save=job.save and runtime.may_write_files,
            mode=job.mode,
            deadline=deadline,
            expected=job.expected,
            seed=job.seed,
            ignored=job.ignored,
        )
    except AtlasError as err:
        raise fail(err) from err


def _cancelled(state: Mapping[str, Any]) -> str:
    job = TaskJob.from_state(state)
    pid = job.prediction_id if job else "(unknown)"
    return (
        f"Cancelled: this server stopped following prediction {pid}. Atlas may still finish the job and bill "
        f'it; call get_prediction with prediction_id "{pid}" to collect the picture.'
    )


#: How every picture tool runs as a task: it becomes one once Atlas accepted the job.
IMAGE_JOB = TaskTool(handoff=True, resume=resume, cancelled=_cancelled)
