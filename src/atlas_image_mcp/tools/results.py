"""What the picture tools share: waiting with progress, collecting outputs, and the three-layer result.

A prediction becomes a ``CallToolResult`` here (text, ``structuredContent``, picture blocks and
resource links, see :mod:`atlas_image_mcp.render`). Once a generation was accepted, every outcome
keeps its prediction id, status and URLs: a picture that cannot be downloaded, is not a whole
picture, is too large or cannot be saved gets a note saying what failed, never a bare error.
Upstream decides nothing unbounded here: outputs beyond the number asked are ignored, and each
call has a byte budget, a pixel cap per picture and a deadline (see :mod:`atlas_image_mcp.fetch`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from mcp.server.apps import client_supports_apps
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from ..client import AtlasClient
from ..constants import (
    CALL_MARGIN_SECONDS,
    HEARTBEAT_SECONDS,
    IMAGE_URI,
    MAX_BASE64_CHARS,
    MAX_NUM_IMAGES,
    ImageMode,
)
from ..errors import AtlasError, ContentBlockedError, LedgerError, PredictionFailedError
from ..fetch import Budget, remove_download
from ..ledger import parse_usd
from ..models import Prediction
from ..notify import notify, progress
from ..pictures import PictureError, examine
from ..polling import duration_of
from ..render import (
    GenerationResult,
    OutputImage,
    Picture,
    inline_images,
    resource_links,
    result_text,
    shown_url,
    warm_up_in_background,
    without_local_paths,
)
from ..runtime import Runtime
from ..settings import setting_hint
from ..storage import extension_for, find_saved, output_path, place_atomic

__all__ = [
    "ToolContext",
    "call_deadline",
    "fail",
    "finish",
    "picture_bytes",
    "price_text",
    "runtime_of",
    "tool_result",
    "wait_with_progress",
]

logger = logging.getLogger(__name__)

#: The context every tool receives: its lifespan context is the server's :class:`Runtime`.
ToolContext = Context[Runtime, Any]


def runtime_of(ctx: ToolContext) -> Runtime:
    return ctx.request_context.lifespan_context


def price_text(amount: Decimal | None) -> str | None:
    """An amount of USD as results carry it (``"0.036"``), or None."""
    return format(amount.normalize(), "f") if amount is not None else None


async def _settle(ctx: ToolContext, runtime: Runtime, prediction: Prediction) -> Decimal | None:
    """Tell the ledger what Atlas charged (0 for a failed job); the estimate it had, when it knows the job."""
    charged = parse_usd(prediction.price)
    failed = prediction.kind == "failed"
    try:
        return await runtime.ledger.settle(
            runtime.current_key(ctx.headers), prediction.id, charged=charged, failed=failed
        )
    except LedgerError as err:  # the answer about a paid job matters more than the bookkeeping
        logger.warning("could not record the charge of %s: %s", prediction.id, err.message)
        return None


def fail(err: AtlasError) -> ToolError:
    """The tool error (``isError: true``) an assistant sees for ``err``."""
    return ToolError(err.message)


def call_deadline(api: AtlasClient, wait: float) -> float:
    """When a call that waits ``wait`` seconds must answer at the latest (on the client's clock)."""
    return api.deadline_in(wait + CALL_MARGIN_SECONDS)


def _progress_requested(ctx: ToolContext) -> bool:
    """Whether progress reports reach anyone: over HTTP only a request with a progress token.

    Over stdio and in process the SDK decides where progress goes, so the heartbeat always runs.
    """
    context = ctx.request_context
    if context.request is None:
        return True
    return (context.meta or {}).get("progress_token") is not None


async def wait_with_progress(
    ctx: ToolContext,
    api: AtlasClient,
    first: Prediction,
    max_wait: float,
    started: float,
    total: float,
    *,
    deadline: float | None = None,
) -> Prediction:
    """``api.wait`` plus a progress heartbeat every second (status and elapsed time in the message).

    Returns early, with the last state seen, when the server starts stopping (see
    :meth:`Runtime.stop_waiting`), so the call can still answer with its prediction id. Over HTTP
    the heartbeat runs only when the request carries a progress token: a task per call that
    reports to nobody cost ~8% of the server's CPU under load (bench/RESULTS.md).
    """
    runtime = runtime_of(ctx)
    latest = {"prediction": first}
    warm_up_in_background()  # the picture code's first use happens while the job runs

    async def on_update(prediction: Prediction) -> None:
        if prediction.status != latest["prediction"].status:
            await notify(ctx, "debug", f"prediction {prediction.id}: {prediction.status}")
        latest["prediction"] = prediction

    async def heartbeat() -> None:
        while True:
            elapsed = time.monotonic() - started
            status = latest["prediction"].status
            await progress(
                ctx, round(elapsed, 2), total, f"{status} · {elapsed:.1f} s elapsed · prediction {first.id}"
            )
            await anyio.sleep(HEARTBEAT_SECONDS)

    # The error is carried out of the task group by hand: raised inside, it would leave wrapped in
    # an ExceptionGroup that no ``except AtlasError`` catches (the call would crash with no message).
    outcome: list[Prediction | AtlasError] = []
    async with anyio.create_task_group() as tg:

        async def stop_on_shutdown() -> None:
            await runtime.stopping.wait()
            tg.cancel_scope.cancel()

        if _progress_requested(ctx):
            tg.start_soon(heartbeat)
        tg.start_soon(stop_on_shutdown)
        try:
            outcome.append(await api.wait(first.id, max_wait, on_update, first=first, deadline=deadline))
        except AtlasError as err:
            outcome.append(err)
        finally:
            tg.cancel_scope.cancel()
    if not outcome:  # the server is stopping
        return latest["prediction"]
    if isinstance(outcome[0], AtlasError):
        raise outcome[0]
    return outcome[0]


def _seed_of(prediction: Prediction, sent: int | None) -> int | None:
    raw = prediction.raw
    echoed = raw.get("input")
    for value in (raw.get("seed"), echoed.get("seed") if isinstance(echoed, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return sent if sent is not None and sent >= 0 else None


class _Collector:
    """Fetches, checks and saves the outputs of one prediction, within one call's limits."""

    def __init__(
        self, runtime: Runtime, api: AtlasClient, prediction: Prediction, *, save: bool, mode: ImageMode
    ) -> None:
        self.runtime = runtime
        self.api = api
        self.prediction = prediction
        self.save = save
        self.mode = mode

    async def picture(
        self, index: int, url: str, scratch: Path, budget: Budget
    ) -> tuple[Picture, str | None]:
        """Output ``index`` (1-based), checked; and its saved path (None when not saved)."""
        settings = self.runtime.settings
        pid = self.prediction.id
        folder = self.runtime.output_dir
        found = find_saved(folder, pid, index) if self.save else None
        if found is not None:
            path, fresh = found, False
        else:
            target = folder if self.save else scratch
            download = await self.api.download(
                url, folder=target, max_bytes=settings.max_download_bytes, budget=budget
            )
            path, fresh = download.path, True
        show = self.mode != "none"
        try:
            async with self.runtime.decodes:
                checked = await anyio.to_thread.run_sync(
                    lambda: examine(path, max_pixels=settings.max_pixels, decode=self.save, preview=show)
                )
        except PictureError:
            if fresh:
                await remove_download(path)
            raise
        saved: Path | None = found
        if self.save and fresh:
            try:
                saved = await place_atomic(
                    path, output_path(folder, pid, index, extension_for(checked.mime_type, ""))
                )
            except AtlasError:
                await remove_download(path)
                raise
        original = b""
        try:
            if self.mode == "full" and checked.size * 4 // 3 <= MAX_BASE64_CHARS:
                original = await anyio.Path(saved or path).read_bytes()
        finally:
            if saved is None:
                await remove_download(path)
        preview = (
            Picture(
                data=checked.preview,
                mime_type=checked.preview_mime,
                width=checked.preview_width,
                height=checked.preview_height,
            )
            if checked.preview is not None
            else None
        )
        shown = Picture(original, checked.mime_type, checked.width, checked.height, preview=preview)
        return shown, str(saved.resolve()) if saved is not None else None


async def picture_bytes(runtime: Runtime, api: AtlasClient, prediction: Prediction, index: int) -> bytes:
    """Output ``index`` (1-based) of ``prediction`` as bytes, only once it decodes as a whole picture.

    The saved copy when there is one, else a fresh download (within the download caps and one
    call's time). Raises :class:`AtlasError` or :class:`PictureError`.
    """
    budget = Budget(bytes_left=runtime.settings.max_call_download_bytes, deadline=call_deadline(api, 0.0))
    scratch = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))
    try:
        found = find_saved(runtime.output_dir, prediction.id, index)
        if found is None:
            download = await api.download(
                prediction.outputs[index - 1],
                folder=scratch,
                max_bytes=runtime.settings.max_download_bytes,
                budget=budget,
            )
            found = download.path
        path = found
        try:
            async with runtime.decodes:
                await anyio.to_thread.run_sync(
                    lambda: examine(path, max_pixels=runtime.settings.max_pixels, decode=True, preview=False)
                )
            return await anyio.Path(path).read_bytes()
        finally:
            if path.parent == scratch:
                await remove_download(path)
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(scratch, ignore_errors=True))


async def _collect(
    runtime: Runtime,
    api: AtlasClient,
    prediction: Prediction,
    *,
    save: bool,
    mode: ImageMode,
    expected: int,
    deadline: float,
) -> tuple[list[OutputImage], list[Any], list[str]]:
    """The outputs (at most ``expected``) with their saved paths and sizes, picture blocks, and notes."""
    urls = prediction.outputs[:expected]
    notes: list[str] = []
    if len(prediction.outputs) > expected:
        notes.append(
            f"Atlas returned {len(prediction.outputs)} outputs for {expected} asked; only the first "
            f"{expected} {'is' if expected == 1 else 'are'} used."
        )
    outputs = [
        OutputImage(
            url=shown_url(url, prediction.id, n),
            resource_uri=IMAGE_URI.format(prediction_id=prediction.id, index=n),
        )
        for n, url in enumerate(urls, start=1)
    ]
    if not save and mode == "none":
        # Neither shown nor kept: the URLs are the answer, and nothing is fetched (a download here
        # would cost the caller time and Atlas bandwidth only to report sizes). Reading a picture's
        # resource later fetches and checks it then.
        return outputs, [], notes + _inline_notes(urls, outputs)
    pictures: list[Picture | None] = [None] * len(urls)
    budget = Budget(bytes_left=runtime.settings.max_call_download_bytes, deadline=deadline)
    collector = _Collector(runtime, api, prediction, save=save, mode=mode)
    scratch = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))

    async def one(i: int) -> None:
        n = i + 1
        problem: str | None = None
        with anyio.move_on_after(max(0.0, deadline - api.deadline_in(0))) as scope:
            try:
                picture, path = await collector.picture(n, urls[i], scratch, budget)
            except AtlasError as err:
                problem = err.message
            except PictureError as err:
                problem = f"The picture {err}, so it was not saved or shown."
            except OSError as err:
                problem = f"The picture could not be read back: {err.strerror or err}."
            except Exception as err:  # whatever happens to one picture, the paid job's answer stands
                logger.warning("output %d of %s: %s", n, prediction.id, type(err).__name__, exc_info=True)
                problem = f"The picture could not be collected ({type(err).__name__})."
        if scope.cancelled_caught:
            problem = "The picture was not collected within this call's time."
        if problem is not None:
            notes.append(f"Image {n}: {problem}")
            outputs[i] = outputs[i].model_copy(update={"error": problem})
            return
        pictures[i] = picture
        update = {
            "path": path,
            "width": picture.width,
            "height": picture.height,
            "mime_type": picture.mime_type,
        }
        outputs[i] = outputs[i].model_copy(update=update)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(len(urls)):
                tg.start_soon(one, i)
        shown = [p for p in pictures if p is not None]
        blocks, image_notes = await anyio.to_thread.run_sync(inline_images, shown, mode)
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(scratch, ignore_errors=True))
    return outputs, blocks, notes + _inline_notes(urls, outputs) + image_notes


def _inline_notes(urls: list[str], outputs: list[OutputImage]) -> list[str]:
    """Where to read the outputs Atlas sent inline (data: URIs are not repeated in the answer)."""
    return [
        f"Image {n} came inline (a data: URI); it is not repeated here: read it from "
        f"{out.path or out.resource_uri}."
        for n, (url, out) in enumerate(zip(urls, outputs, strict=True), start=1)
        if url.startswith("data:")
    ]


def _not_ready(runtime: Runtime, prediction_id: str) -> str:
    if runtime.place == "cli":  # a terminal has no get_prediction to call
        return (
            f"The picture is not ready yet: Atlas is still making prediction {prediction_id}. Do not run the "
            "command again (that would be billed again); the picture will be in the history of your Atlas "
            f"Cloud console. To wait longer next time, set {setting_hint('wait_seconds')}."
        )
    return (
        f'The picture is not ready yet. Call get_prediction with prediction_id "{prediction_id}" and '
        "wait_seconds=30 to collect it (no new generation is needed, nothing more is billed)."
    )


def tool_result(
    result: GenerationResult, blocks: list[Any], notes: list[str], *, is_error: bool = False
) -> CallToolResult:
    content: list[Any] = [result_text(result, notes), *blocks, *resource_links(result)]
    return CallToolResult(
        content=content, structured_content=result.model_dump(mode="json"), is_error=is_error
    )


async def finish(
    ctx: ToolContext,
    runtime: Runtime,
    api: AtlasClient,
    prediction: Prediction,
    *,
    started: float,
    save: bool,
    mode: ImageMode,
    deadline: float,
    expected: int = MAX_NUM_IMAGES,
    seed: int | None = None,
    ignored: tuple[str, ...] = (),
    notes: tuple[str, ...] = (),
    prompt: str | None = None,
    sources: tuple[str, ...] = (),
    estimate: Decimal | None = None,
    record: Callable[[GenerationResult], None] | None = None,
) -> CallToolResult:
    """Turn a prediction into the tool result: completed, still processing, or a tool error.

    ``expected``: how many pictures were asked for (more outputs than that are ignored). ``record``
    is told the result (to remember it in the session's history) before it is returned. The ledger
    learns the charge once Atlas reports it (here, or from a later get_prediction); ``estimate`` is
    the cost expected before submission (else the ledger's, when it knows the job). A client that
    shows results in an MCP App (whose frame receives the whole result) gets each saved copy by
    file name only.
    """
    recorded = await _settle(ctx, runtime, prediction)
    base = GenerationResult(
        prediction_id=prediction.id,
        status=prediction.status,
        model=prediction.model,
        prompt=prompt,
        sources=list(sources),
        seed=_seed_of(prediction, seed),
        price=prediction.price,
        estimated_price=price_text(estimate if estimate is not None else recorded),
        ignored_parameters=list(ignored),
    )
    if prediction.kind == "failed":
        raise fail(PredictionFailedError(prediction.id, prediction.error, status=prediction.status))
    if prediction.kind == "running":
        stopping = "This server is stopping, so it answers now. " if runtime.stopping.is_set() else ""
        result = base.model_copy(
            update={
                "elapsed_seconds": round(time.monotonic() - started, 2),
                "next_step": stopping + _not_ready(runtime, prediction.id),
            }
        )
        return _answer(ctx, result, [], list(notes), record)
    if prediction.blocked_by_safety_checker:
        raise fail(ContentBlockedError(prediction.id))
    if not prediction.outputs:
        result = base.model_copy(
            update={
                "status": "completed",
                "elapsed_seconds": round(time.monotonic() - started, 2),
                "error": "Atlas reported the prediction as completed but sent no picture.",
                "next_step": f'Call get_prediction with prediction_id "{prediction.id}" in a minute to look '
                "again. Atlas may still bill it: check the Atlas console history before generating again.",
            }
        )
        return _answer(ctx, result, [], list(notes), record, is_error=True)
    outputs, blocks, collect_notes = await _collect(
        runtime, api, prediction, save=save, mode=mode, expected=expected, deadline=deadline
    )
    # The job's own time as Atlas reports it: get_prediction may collect a job that finished long ago.
    took = duration_of(prediction)
    result = base.model_copy(
        update={
            "status": "completed",
            "outputs": outputs,
            "elapsed_seconds": round(took if took is not None else time.monotonic() - started, 2),
        }
    )
    if any(out.error for out in outputs):
        result = result.model_copy(
            update={
                "error": "Some outputs could not be downloaded, checked or saved; see the note on each.",
                "next_step": "Their URLs are listed; call get_prediction with prediction_id "
                f'"{prediction.id}" to try again (nothing more is billed).',
            }
        )
    await notify(ctx, "info", f"prediction {prediction.id} completed with {len(outputs)} image(s)")
    return _answer(ctx, result, blocks, [*notes, *collect_notes], record)


def _answer(
    ctx: ToolContext,
    result: GenerationResult,
    blocks: list[Any],
    notes: list[str],
    record: Callable[[GenerationResult], None] | None,
    *,
    is_error: bool = False,
) -> CallToolResult:
    """The answer: remembered in the session's history, local paths kept from an MCP App's frame."""
    if record is not None:
        record(result)
    if client_supports_apps(ctx):
        result = without_local_paths(result)
    return tool_result(result, blocks, notes, is_error=is_error)
