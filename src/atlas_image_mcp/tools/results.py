"""What the picture tools share: waiting with progress, collecting outputs, and the three-layer result.

A prediction becomes a ``CallToolResult`` here (text, ``structuredContent``, picture blocks and
resource links, see :mod:`atlas_image_mcp.render`); failures become ``ToolError`` with the
message of the :class:`~atlas_image_mcp.errors.AtlasError` behind them.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server.apps import client_supports_apps
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from ..client import AtlasClient
from ..constants import HEARTBEAT_SECONDS, IMAGE_URI, ImageMode
from ..errors import AtlasError, ContentBlockedError, PredictionFailedError
from ..models import Prediction
from ..notify import notify
from ..polling import duration_of
from ..render import (
    GenerationResult,
    OutputImage,
    Picture,
    inline_images,
    inspect_image,
    resource_links,
    result_text,
    without_local_paths,
)
from ..runtime import Runtime
from ..storage import extension_for, find_saved, output_path, save_atomic

__all__ = ["ToolContext", "fail", "finish", "runtime_of", "tool_result", "wait_with_progress"]

logger = logging.getLogger(__name__)

#: The context every tool receives: its lifespan context is the server's :class:`Runtime`.
ToolContext = Context[Runtime, Any]


def runtime_of(ctx: ToolContext) -> Runtime:
    return ctx.request_context.lifespan_context


def fail(err: AtlasError) -> ToolError:
    """The tool error (``isError: true``) an assistant sees for ``err``."""
    return ToolError(err.message)


async def _report(ctx: ToolContext, started: float, total: float, message: str) -> None:
    elapsed = time.monotonic() - started
    try:
        await ctx.report_progress(round(elapsed, 2), total, message)
    except Exception:  # a client that went away must not break the call
        logger.debug("progress notification failed", exc_info=True)


async def wait_with_progress(
    ctx: ToolContext, api: AtlasClient, first: Prediction, max_wait: float, started: float, total: float
) -> Prediction:
    """``api.wait`` plus a progress heartbeat every second (status and elapsed time in the message)."""
    latest = {"status": first.status}

    async def on_update(prediction: Prediction) -> None:
        if prediction.status != latest["status"]:
            await notify(ctx, "debug", f"prediction {prediction.id}: {prediction.status}")
        latest["status"] = prediction.status

    async def heartbeat() -> None:
        while True:
            elapsed = time.monotonic() - started
            await _report(
                ctx, started, total, f"{latest['status']} · {elapsed:.1f} s elapsed · prediction {first.id}"
            )
            await anyio.sleep(HEARTBEAT_SECONDS)

    # The error is carried out of the task group by hand: raised inside, it would leave wrapped in
    # an ExceptionGroup that no ``except AtlasError`` catches (the call would crash with no message).
    outcome: list[Prediction | AtlasError] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        try:
            outcome.append(await api.wait(first.id, max_wait, on_update, first=first))
        except AtlasError as err:
            outcome.append(err)
        finally:
            tg.cancel_scope.cancel()
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


async def _fetch_picture(
    runtime: Runtime, api: AtlasClient, prediction_id: str, index: int, url: str, save: bool
) -> tuple[Picture, str | None]:
    """The output's bytes (from a saved copy when there is one) and the saved path."""
    folder = runtime.output_dir
    if save and (found := find_saved(folder, prediction_id, index)) is not None:
        data = await anyio.Path(found).read_bytes()
        return await anyio.to_thread.run_sync(inspect_image, data), str(found.resolve())
    download = await api.download(url, runtime.settings.max_download_bytes)
    picture = await anyio.to_thread.run_sync(inspect_image, download.content, download.content_type)
    if not save:
        return picture, None
    path = output_path(folder, prediction_id, index, extension_for(picture.mime_type, url))
    return picture, str(await save_atomic(path, picture.data))


async def _collect(
    runtime: Runtime,
    api: AtlasClient,
    prediction: Prediction,
    *,
    save: bool,
    mode: ImageMode,
    size: tuple[int, int] | None,
) -> tuple[list[OutputImage], list[Any], list[str]]:
    """Download, save and thumbnail the outputs concurrently; failures become notes, not errors."""
    outputs = [
        OutputImage(
            url=url,
            width=size[0] if size else None,
            height=size[1] if size else None,
            mime_type=mimetypes.guess_type(url.split("?")[0])[0] if url.startswith("http") else None,
            resource_uri=IMAGE_URI.format(prediction_id=prediction.id, index=n),
        )
        for n, url in enumerate(prediction.outputs, start=1)
    ]
    if not save and mode == "none":
        return outputs, [], []
    pictures: list[Picture | None] = [None] * len(outputs)
    notes: list[str] = []

    async def one(i: int) -> None:
        try:
            picture, path = await _fetch_picture(runtime, api, prediction.id, i + 1, outputs[i].url, save)
        except AtlasError as err:
            notes.append(f"Image {i + 1} could not be downloaded or saved: {err.message}")
            return
        pictures[i] = picture
        outputs[i] = outputs[i].model_copy(
            update={
                "path": path,
                "width": picture.width,
                "height": picture.height,
                "mime_type": picture.mime_type,
            }
        )

    async with anyio.create_task_group() as tg:
        for i in range(len(outputs)):
            tg.start_soon(one, i)
    shown = [p for p in pictures if p is not None]
    blocks, image_notes = await anyio.to_thread.run_sync(inline_images, shown, mode)
    return outputs, blocks, notes + image_notes


def _not_ready(runtime: Runtime, prediction_id: str) -> str:
    if runtime.place == "cli":  # a terminal has no get_prediction to call
        return (
            f"The picture is not ready yet: Atlas is still making prediction {prediction_id}. Do not run the "
            "command again (that would be billed again); the picture will be in the history of your Atlas "
            "Cloud console. To wait longer next time, set ATLAS_MCP_WAIT_SECONDS (up to 600)."
        )
    return (
        f'The picture is not ready yet. Call get_prediction with prediction_id "{prediction_id}" and '
        "wait_seconds=30 to collect it (no new generation is needed, nothing more is billed)."
    )


def tool_result(result: GenerationResult, blocks: list[Any], notes: list[str]) -> CallToolResult:
    content: list[Any] = [result_text(result, notes), *blocks, *resource_links(result)]
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))


async def finish(
    ctx: ToolContext,
    runtime: Runtime,
    api: AtlasClient,
    prediction: Prediction,
    *,
    started: float,
    save: bool,
    mode: ImageMode,
    size: tuple[int, int] | None = None,
    seed: int | None = None,
    ignored: tuple[str, ...] = (),
    notes: tuple[str, ...] = (),
    prompt: str | None = None,
    sources: tuple[str, ...] = (),
    record: Callable[[GenerationResult], None] | None = None,
) -> CallToolResult:
    """Turn a prediction into the tool result: completed, still processing, or a tool error.

    ``record`` is told the result (to remember it in the session's history) before it is returned.
    A client that shows results in an MCP App (whose frame receives the whole result) gets each
    saved copy by file name only.
    """
    base = GenerationResult(
        prediction_id=prediction.id,
        status=prediction.status,
        model=prediction.model,
        prompt=prompt,
        sources=list(sources),
        seed=_seed_of(prediction, seed),
        price=prediction.price,
        ignored_parameters=list(ignored),
    )
    if prediction.kind == "failed":
        raise fail(PredictionFailedError(prediction.id, prediction.error, status=prediction.status))
    if prediction.kind == "running":
        result = base.model_copy(
            update={
                "elapsed_seconds": round(time.monotonic() - started, 2),
                "next_step": _not_ready(runtime, prediction.id),
            }
        )
        if record is not None:
            record(result)
        return tool_result(result, [], list(notes))
    if prediction.blocked_by_safety_checker:
        raise fail(ContentBlockedError(prediction.id))
    if not prediction.outputs:
        raise fail(PredictionFailedError(prediction.id, "it completed without any output", status="empty"))
    outputs, blocks, collect_notes = await _collect(runtime, api, prediction, save=save, mode=mode, size=size)
    # The job's own time as Atlas reports it: get_prediction may collect a job that finished long ago.
    took = duration_of(prediction)
    result = base.model_copy(
        update={
            "status": "completed",
            "outputs": outputs,
            "elapsed_seconds": round(took if took is not None else time.monotonic() - started, 2),
        }
    )
    if any("could not be downloaded" in n for n in collect_notes):
        result = result.model_copy(
            update={"error": "Some outputs could not be downloaded; their URLs are listed."}
        )
    await notify(ctx, "info", f"prediction {prediction.id} completed with {len(outputs)} image(s)")
    if record is not None:
        record(result)
    if client_supports_apps(ctx):
        result = without_local_paths(result)
    return tool_result(result, blocks, [*notes, *collect_notes])
