"""From a prediction to the tool's answer: completed, still processing, or a tool error.

A :class:`Delivery` is what the answer needs besides Atlas's own answer: whether to save, how to
show the pictures, how many were asked for, the seed sent, what was left out, and what to record.
A picture tool builds one when it submits a job; a task keeps one (its id carries the part that
must survive a restart); ``get_prediction`` builds one for a job started earlier. :func:`finish`
turns a prediction and its delivery into the answer. Once a generation was accepted, every
outcome keeps its prediction id, status and URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mcp_types import CallToolResult

from .asset_plan import AssetPlan
from .call import Call, fail
from .collect import collect
from .constants import IMAGE_MODES, MAX_NUM_IMAGES, OFFLINE_NOTE, ImageMode
from .errors import ContentBlockedError, LedgerError, PredictionFailedError
from .history import HistoryEntry
from .models import Prediction, parse_usd
from .polling import duration_of
from .render import GenerationResult, price_text, tool_result, without_local_paths
from .settings import setting_hint

__all__ = ["Answer", "Delivery", "conclude", "finish", "remember"]

logger = logging.getLogger(__name__)

_MAX_IGNORED = 32


@dataclass(frozen=True)
class Delivery:
    """How the answer about one prediction is made, besides what Atlas says about it."""

    save: bool
    mode: ImageMode
    #: Pictures asked for: more outputs than that are ignored.
    expected: int = MAX_NUM_IMAGES
    #: The seed sent (the answer shows Atlas's own when it reports one).
    seed: int | None = None
    #: Parameters the model does not take (not sent).
    ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    prompt: str | None = None
    #: The input pictures used, as URLs.
    sources: tuple[str, ...] = ()
    #: The cost expected before submission (else the ledger's, when it knows the job).
    estimate: Decimal | None = None
    #: The caller's history entry this answer completes (None: the answer is not recorded).
    entry: HistoryEntry | None = None
    #: The file to deliver for each picture (save_as, output_size, output_format), if any.
    asset: AssetPlan | None = None

    def state(self) -> dict[str, Any]:
        """What a task id carries of it (the rest is not needed to finish a job after a restart)."""
        state: dict[str, Any] = {
            "s": self.save,
            "m": self.mode,
            "n": self.expected,
            "e": self.seed,
            "i": list(self.ignored),
        }
        if self.asset is not None:
            state["a"] = self.asset.state()
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Delivery | None:
        """The delivery in a task id's state, or None if it is not one (checked although ids are signed)."""
        save, mode = state.get("s"), state.get("m")
        expected, seed, ignored = state.get("n"), state.get("e"), state.get("i")
        if not isinstance(save, bool) or mode not in IMAGE_MODES or not (seed is None or _natural(seed)):
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
        asset = AssetPlan.from_state(state["a"]) if "a" in state else None
        if "a" in state and asset is None:
            return None
        return cls(save, mode, int(expected), seed, tuple(ignored), asset=asset)


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Answer:
    """One job's answer before it becomes a tool result: the result, its picture blocks and notes."""

    result: GenerationResult
    blocks: list[Any]
    notes: list[str]
    is_error: bool = False


async def finish(
    call: Call, prediction: Prediction, delivery: Delivery, *, deadline: float
) -> CallToolResult:
    """Turn a prediction into the tool result: completed, still processing, or a tool error.

    The ledger learns the charge once Atlas reports it (here, or from a later get_prediction). A
    client that shows results in an MCP App (whose frame receives the whole result) gets each saved
    copy by file name only. ``deadline`` bounds the collection of the pictures.
    """
    answer = await conclude(call, prediction, delivery, deadline=deadline)
    await remember(call, delivery, answer.result)
    result = without_local_paths(answer.result) if call.shows_apps else answer.result
    notes = [*answer.notes, OFFLINE_NOTE] if call.runtime.offline else answer.notes
    return tool_result(result, answer.blocks, notes, is_error=answer.is_error)


async def remember(call: Call, delivery: Delivery, result: GenerationResult) -> None:
    """Record ``result`` in the caller's history (when the delivery names an entry)."""
    if delivery.entry is not None:
        await call.runtime.history.completed(call.caller.history, delivery.entry, result)


async def conclude(call: Call, prediction: Prediction, delivery: Delivery, *, deadline: float) -> Answer:
    """One prediction's answer (see :func:`finish`); raises the tool error of a failed or blocked job."""
    recorded = await _settle(call, prediction)
    base = GenerationResult(
        prediction_id=prediction.id,
        status=prediction.status,
        model=prediction.model,
        prompt=delivery.prompt,
        sources=list(delivery.sources),
        seed=_seed_of(prediction, delivery.seed),
        price=prediction.price,
        estimated_price=price_text(delivery.estimate if delivery.estimate is not None else recorded),
        ignored_parameters=list(delivery.ignored),
    )
    if prediction.kind == "failed":
        raise fail(PredictionFailedError(prediction.id, prediction.error, status=prediction.status))
    if prediction.kind == "running":
        stopping = "This server is stopping, so it answers now. " if call.runtime.stopping.is_set() else ""
        result = base.model_copy(
            update={
                "elapsed_seconds": round(call.elapsed, 2),
                "next_step": stopping + _not_ready(call, prediction.id),
            }
        )
        return Answer(result, [], list(delivery.notes))
    if prediction.blocked_by_safety_checker:
        raise fail(ContentBlockedError(prediction.id))
    if not prediction.outputs:
        result = base.model_copy(
            update={
                "status": "completed",
                "elapsed_seconds": round(call.elapsed, 2),
                "error": "Atlas reported the prediction as completed but sent no picture.",
                "next_step": f'Call get_prediction with prediction_id "{prediction.id}" in a minute to look '
                "again. Atlas may still bill it: check the Atlas console history before generating again.",
            }
        )
        return Answer(result, [], list(delivery.notes), is_error=True)
    collected = await collect(
        call,
        prediction,
        save=delivery.save,
        mode=delivery.mode,
        expected=delivery.expected,
        deadline=deadline,
        asset=delivery.asset,
    )
    outputs = collected.outputs
    # The job's own time as Atlas reports it: get_prediction may collect a job that finished long ago.
    took = duration_of(prediction)
    result = base.model_copy(
        update={
            "status": "completed",
            "outputs": outputs,
            "elapsed_seconds": round(took if took is not None else call.elapsed, 2),
        }
    )
    if any(out.error for out in outputs):
        result = result.model_copy(
            update={
                "error": "Some outputs could not be downloaded, checked, saved or written; see the note on "
                "each.",
                "next_step": "Their URLs are listed; call get_prediction with prediction_id "
                f'"{prediction.id}" to try again (nothing more is billed).',
            }
        )
    await call.notify("info", f"prediction {prediction.id} completed with {len(outputs)} image(s)")
    return Answer(result, collected.blocks, [*delivery.notes, *collected.notes])


async def _settle(call: Call, prediction: Prediction) -> Decimal | None:
    """Tell the ledger what Atlas charged (0 for a failed job); the estimate it had, when it knows the job."""
    charged = parse_usd(prediction.price)
    failed = prediction.kind == "failed"
    try:
        return await call.runtime.ledger.settle(
            call.caller.bucket, prediction.id, charged=charged, failed=failed, done=prediction.is_terminal
        )
    except LedgerError as err:  # the answer about a paid job matters more than the bookkeeping
        logger.warning("could not record the charge of %s: %s", prediction.id, err.message)
        return None


def _seed_of(prediction: Prediction, sent: int | None) -> int | None:
    raw = prediction.raw
    echoed = raw.get("input")
    for value in (raw.get("seed"), echoed.get("seed") if isinstance(echoed, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return sent if sent is not None and sent >= 0 else None


def _not_ready(call: Call, prediction_id: str) -> str:
    if call.runtime.place == "cli":  # a terminal has no get_prediction to call
        return (
            f"The picture is not ready yet: Atlas is still making prediction {prediction_id}. Do not run the "
            "command again (that would be billed again); the picture will be in the history of your Atlas "
            f"Cloud console. To wait longer next time, set {setting_hint('wait_seconds')}."
        )
    return (
        f'The picture is not ready yet. Call get_prediction with prediction_id "{prediction_id}" and '
        "wait_seconds=30 to collect it (no new generation is needed, nothing more is billed)."
    )
