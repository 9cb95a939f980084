"""The MCP tools: one small async function per tool, and ``register_tools`` to add them.

Each tool validates through its signature (bounded, described parameters), calls the Atlas
client, and hands the outcome to :mod:`atlas_image_mcp.render`. Failures are raised as
``ToolError`` with a message the assistant can act on, so the client sees ``isError: true``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import mimetypes
import time
from pathlib import Path, PureWindowsPath
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .client import AtlasClient
from .errors import (
    APIStatusError,
    AtlasError,
    ContentBlockedError,
    InvalidParameterError,
    LocalFileError,
    NotFoundError,
    PredictionFailedError,
)
from .flux import DEFAULT_MODEL, FLUX_MODELS, SEED_MAX, GenerationRequest, PreparedRequest, prepare_request
from .models import Prediction
from .notify import notify
from .render import (
    GenerationResult,
    OutputImage,
    Picture,
    ReturnImage,
    inline_images,
    inspect_image,
    resource_links,
    result_text,
)
from .runtime import Runtime
from .storage import extension_for, find_saved, output_path, save_atomic

__all__ = ["ModelList", "UploadResult", "register_tools"]

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
PREDICTION_URI = "atlas-image://predictions/{prediction_id}"
IMAGE_URI = "atlas-image://predictions/{prediction_id}/images/{index}"
_MAX_DATA_CHARS = 70 * 1024 * 1024  # base64 of the 50 MB default upload limit, with room

ReturnImageParam = Annotated[
    ReturnImage | None,
    Field(
        description="Picture inside the result: 'thumbnail' (at most 512 px, the default unless "
        "ATLAS_MCP_IMAGE_MODE says otherwise), 'full' (original, up to 1 MB of base64), or 'none'."
    ),
]


# --- result models for the other tools -------------------------------------------------------


class UploadResult(BaseModel):
    """The structured result of upload_media."""

    download_url: str = Field(description="Temporary URL of the uploaded file; pass it as generate_image's image.")
    filename: str
    size: int = Field(description="Size in bytes.")
    content_type: str
    note: str


class ModelEntry(BaseModel):
    id: str
    name: str
    price: str | None = Field(default=None, description="USD per run/image as listed by Atlas.")
    price_unit: str | None = None
    description: str = ""


class ModelList(BaseModel):
    """The structured result of list_models."""

    models: list[ModelEntry]
    query: str | None = None


# --- helpers ---------------------------------------------------------------------------------


def _runtime(ctx: Context) -> Runtime:
    return ctx.request_context.lifespan_context  # type: ignore[no-any-return]


def _fail(err: AtlasError) -> ToolError:
    return ToolError(err.message)


async def _report(ctx: Context, started: float, total: float, message: str) -> None:
    elapsed = time.monotonic() - started
    try:
        await ctx.report_progress(round(elapsed, 2), total, message)
    except Exception:  # a client that went away must not break the call
        logger.debug("progress notification failed", exc_info=True)


async def _wait_with_progress(
    ctx: Context, api: AtlasClient, first: Prediction, timeout: float, started: float, total: float
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
            await _report(ctx, started, total, f"{latest['status']} · {elapsed:.1f} s elapsed · prediction {first.id}")
            await anyio.sleep(HEARTBEAT_SECONDS)

    # The error is carried out of the task group by hand: raised inside, it would leave wrapped in
    # an ExceptionGroup that no ``except AtlasError`` catches (the call would crash with no message).
    outcome: list[Prediction | AtlasError] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        try:
            outcome.append(await api.wait(first.id, timeout, on_update, first=first))
        except AtlasError as err:
            outcome.append(err)
        finally:
            tg.cancel_scope.cancel()
    if isinstance(outcome[0], AtlasError):
        raise outcome[0]
    return outcome[0]


def _seed_of(prediction: Prediction, sent: int | None) -> int | None:
    raw = prediction.raw
    for value in (raw.get("seed"), (raw.get("input") or {}).get("seed") if isinstance(raw.get("input"), dict) else None):
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
    mode: ReturnImage,
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
            update={"path": path, "width": picture.width, "height": picture.height, "mime_type": picture.mime_type}
        )

    async with anyio.create_task_group() as tg:
        for i in range(len(outputs)):
            tg.start_soon(one, i)
    shown = [p for p in pictures if p is not None]
    blocks, image_notes = await anyio.to_thread.run_sync(inline_images, shown, mode)
    return outputs, blocks, notes + image_notes


def _tool_result(result: GenerationResult, blocks: list[Any], notes: list[str]) -> CallToolResult:
    content: list[Any] = [result_text(result, notes), *blocks, *resource_links(result)]
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))


async def _finish(
    ctx: Context,
    runtime: Runtime,
    api: AtlasClient,
    prediction: Prediction,
    *,
    started: float,
    save: bool,
    mode: ReturnImage,
    size: tuple[int, int] | None = None,
    seed: int | None = None,
    ignored: tuple[str, ...] = (),
) -> CallToolResult:
    """Turn a prediction into the tool result: completed, still processing, or a tool error."""
    base = GenerationResult(
        prediction_id=prediction.id,
        status=prediction.status,
        model=prediction.model,
        seed=_seed_of(prediction, seed),
        price=prediction.price,
        ignored_parameters=list(ignored),
    )
    if prediction.kind == "failed":
        raise _fail(PredictionFailedError(prediction.id, prediction.error, status=prediction.status))
    if prediction.kind == "running":
        result = base.model_copy(
            update={
                "elapsed_seconds": round(time.monotonic() - started, 2),
                "next_step": f'The picture is not ready yet. Call get_prediction with prediction_id "{prediction.id}" '
                "and wait_seconds=30 to collect it (no new generation is needed, nothing more is billed).",
            }
        )
        return _tool_result(result, [], [])
    if prediction.blocked_by_safety_checker:
        raise _fail(ContentBlockedError(prediction.id))
    if not prediction.outputs:
        raise _fail(PredictionFailedError(prediction.id, "it completed without any output", status="empty"))
    outputs, blocks, notes = await _collect(runtime, api, prediction, save=save, mode=mode, size=size)
    result = base.model_copy(
        update={"status": "completed", "outputs": outputs, "elapsed_seconds": round(time.monotonic() - started, 2)}
    )
    if notes and any("could not be downloaded" in n for n in notes):
        result = result.model_copy(update={"error": "Some outputs could not be downloaded; their URLs are listed."})
    await notify(ctx, "info", f"prediction {prediction.id} completed with {len(outputs)} image(s)")
    return _tool_result(result, blocks, notes)


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
    return _tool_result(result, [], [])


# --- the tools -------------------------------------------------------------------------------


async def generate_image(
    prompt: Annotated[
        str, Field(min_length=1, max_length=10_000, description="What to draw, in plain words. Be specific.")
    ],
    ctx: Context,
    model: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            description="Model id: 'black-forest-labs/flux-schnell' (fast, $0.003) or 'black-forest-labs/flux-dev' "
            "(higher quality, $0.012). Other Atlas image model ids are passed through.",
        ),
    ] = DEFAULT_MODEL,
    width: Annotated[
        int | None,
        Field(ge=64, le=4096, description="Width in pixels (default 1024; FLUX schnell 256-1536, dev 512-1536)."),
    ] = None,
    height: Annotated[
        int | None,
        Field(ge=64, le=4096, description="Height in pixels (default 1024; FLUX schnell 256-1536, dev 512-1536)."),
    ] = None,
    aspect_ratio: Annotated[
        str | None,
        Field(
            max_length=16,
            pattern=r"^\s*\d+(\.\d+)?\s*[:/x]\s*\d+(\.\d+)?\s*$",
            description="Instead of width/height: a ratio like '16:9', '1:1' or '2:3', drawn at about one megapixel.",
        ),
    ] = None,
    num_images: Annotated[int, Field(ge=1, le=4, description="How many pictures (1-4), each billed.")] = 1,
    seed: Annotated[
        int | None, Field(ge=-1, le=SEED_MAX, description="Seed for a reproducible picture; -1 or empty = random.")
    ] = None,
    steps: Annotated[
        int | None, Field(ge=1, le=50, description="Inference steps (flux-dev only, default 28; ignored by schnell).")
    ] = None,
    guidance_scale: Annotated[
        float | None,
        Field(ge=0, le=20, allow_inf_nan=False, description="Prompt adherence (flux-dev only, default 3.5)."),
    ] = None,
    image: Annotated[
        str | None,
        Field(
            max_length=_MAX_DATA_CHARS,
            description="Image-to-image: URL of a starting picture (use upload_media for a local file).",
        ),
    ] = None,
    mask_image: Annotated[
        str | None,
        Field(
            max_length=_MAX_DATA_CHARS,
            description="Inpainting: URL of a mask (white = repaint, black = keep); needs image.",
        ),
    ] = None,
    strength: Annotated[
        float | None,
        Field(ge=0, le=1, allow_inf_nan=False, description="Image-to-image: how far to move from image (0-1, default 0.8)."),
    ] = None,
    enable_safety_checker: Annotated[
        bool | None, Field(description="Atlas safety checker (default on).")
    ] = None,
    wait: Annotated[
        bool,
        Field(
            description="Wait for the picture (up to ATLAS_MCP_WAIT_SECONDS, default 45 s). If false, or if it takes "
            "longer, return the prediction_id to collect with get_prediction."
        ),
    ] = True,
    return_image: ReturnImageParam = None,
    save: Annotated[
        bool | None,
        Field(description="Save the pictures to the server's output folder (default on over stdio)."),
    ] = None,
    dry_run: Annotated[
        bool, Field(description="Validate and show the exact request body without sending it; costs nothing.")
    ] = False,
) -> Annotated[CallToolResult, GenerationResult]:
    """Generate pictures with FLUX on Atlas Cloud and return them in one call (URL, saved path, preview)."""
    started = time.monotonic()
    runtime = _runtime(ctx)
    request = GenerationRequest(
        prompt=prompt,
        model=model,
        width=width,
        height=height,
        aspect_ratio=aspect_ratio,
        num_images=num_images,
        seed=seed,
        steps=steps,
        guidance_scale=guidance_scale,
        image=image,
        mask_image=mask_image,
        strength=strength,
        enable_safety_checker=enable_safety_checker,
    )
    try:
        prepared = prepare_request(request)
        if dry_run:
            return _dry_run(prepared, started)
        do_save = runtime.save_by_default if save is None else (save and _may_save(runtime))
        api = runtime.api(ctx.headers)
        key = runtime.current_key(ctx.headers)
        runtime.guard.reserve(key, num_images)
        try:
            prediction = await api.submit_image(prepared)
        except AtlasError as err:
            if getattr(err, "sent", True) is False or _refused(err):
                runtime.guard.release(key, num_images)  # nothing was started, nothing billed
            raise
        await notify(ctx, "info", f"submitted prediction {prediction.id} ({prepared.model}, {prepared.width}x{prepared.height})")
        total = runtime.settings.wait_seconds
        if wait and not prediction.is_terminal:
            remaining = max(0.0, total - (time.monotonic() - started))
            try:
                prediction = await _wait_with_progress(ctx, api, prediction, remaining, started, total)
            except AtlasError as err:
                err.extend_message(_ALREADY_SUBMITTED.format(pid=prediction.id))
                raise
        return await _finish(
            ctx,
            runtime,
            api,
            prediction,
            started=started,
            save=do_save,
            mode=return_image or runtime.settings.image_mode,
            size=(prepared.width, prepared.height),
            seed=seed,
            ignored=prepared.ignored,
        )
    except AtlasError as err:
        raise _fail(err) from err


_ALREADY_SUBMITTED = (
    "The picture was already requested as prediction {pid} and may still finish (it is billed when it "
    'runs), so do not call generate_image again: call get_prediction with prediction_id "{pid}" and '
    "wait_seconds=30 to collect it."
)


def _refused(err: AtlasError) -> bool:
    """Atlas answered the generation POST with a 4xx: the job was refused, not started."""
    return isinstance(err, APIStatusError) and 400 <= err.status_code < 500


def _may_save(runtime: Runtime) -> bool:
    """Over HTTP, files are written only when the operator set ATLAS_MCP_OUTPUT_DIR."""
    if runtime.remote and not runtime.settings.output_dir_explicit:
        raise ToolError("Saving pictures is off on this hosted server (ATLAS_MCP_OUTPUT_DIR is not set); pass save=false.")
    return True


async def get_prediction(
    prediction_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$",
            description="The prediction_id returned by generate_image.",
        ),
    ],
    ctx: Context,
    wait_seconds: Annotated[
        float,
        Field(ge=0, le=600, allow_inf_nan=False, description="Wait up to this long for it to finish (capped by "
              "ATLAS_MCP_WAIT_SECONDS). 0 = just look."),
    ] = 0,
    return_image: ReturnImageParam = None,
) -> Annotated[CallToolResult, GenerationResult]:
    """Check a prediction (optionally waiting for it) and return its pictures like generate_image does."""
    started = time.monotonic()
    runtime = _runtime(ctx)
    try:
        api = runtime.api(ctx.headers)
        try:
            prediction = await api.get_prediction(prediction_id)
        except NotFoundError as err:
            raise ToolError(
                f"No prediction with id {prediction_id!r} was found at Atlas. Check the id: it is the "
                "prediction_id from a generate_image result (predictions are kept for a limited time)."
            ) from err
        limit = min(wait_seconds, runtime.settings.wait_seconds)
        if limit > 0 and not prediction.is_terminal:
            prediction = await _wait_with_progress(ctx, api, prediction, limit, started, limit)
        return await _finish(
            ctx,
            runtime,
            api,
            prediction,
            started=started,
            save=runtime.save_by_default,
            mode=return_image or runtime.settings.image_mode,
        )
    except AtlasError as err:
        raise _fail(err) from err


def _decode_data(data: str, filename: str | None) -> tuple[bytes, str]:
    text = data.strip()
    mime = None
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or ";base64" not in header:
            raise InvalidParameterError("data", "a data: URI must look like data:image/png;base64,....")
        mime = header[5:].split(";")[0] or None
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameterError("data", "is not valid base64 (or a data:...;base64, URI).") from None
    if filename is None:
        ext = (mimetypes.guess_extension(mime) if mime else None) or ".bin"
        filename = f"upload{'.jpg' if ext == '.jpe' else ext}"
    return raw, filename


def _local_path(runtime: Runtime, file_path: str) -> Path:
    """Resolve ``file_path`` and check it may be read (over HTTP: only inside ATLAS_MCP_UPLOAD_ROOT)."""
    if runtime.remote and runtime.settings.upload_root is None:
        raise LocalFileError(
            "Reading server-side files is off on this hosted server. Send the file's content as base64 in "
            "`data` (with `filename`) instead of file_path."
        )
    raw = Path(file_path).expanduser()
    if not raw.is_absolute():
        hint = " (a Windows path cannot be read by this server)" if PureWindowsPath(file_path).drive else ""
        raise LocalFileError(f"file_path must be an absolute path{hint}; got {file_path[:200]!r}.", path=file_path)
    try:
        resolved = raw.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # ValueError: a NUL character in the path
        raise LocalFileError(f"No file at {file_path[:200]!r}. Give the absolute path of an existing file.") from None
    root = runtime.settings.upload_root
    if runtime.remote and root is not None and not resolved.is_relative_to(root):
        raise LocalFileError(f"{file_path[:200]!r} is outside the folder this server may read (ATLAS_MCP_UPLOAD_ROOT).")
    return resolved


async def upload_media(
    ctx: Context,
    file_path: Annotated[
        str | None, Field(max_length=4096, description="Absolute path of a local file to upload.")
    ] = None,
    data: Annotated[
        str | None,
        Field(max_length=_MAX_DATA_CHARS, description="Instead of file_path: the file as base64 or a data: URI."),
    ] = None,
    filename: Annotated[
        str | None,
        Field(min_length=1, max_length=255, description="File name with extension (e.g. photo.png), for data."),
    ] = None,
) -> Annotated[CallToolResult, UploadResult]:
    """Upload a local file (or base64 data) to Atlas and get a temporary URL to use as a generation input."""
    runtime = _runtime(ctx)
    try:
        if (file_path is None) == (data is None):
            raise InvalidParameterError("file_path/data", "give exactly one of file_path or data.")
        api = runtime.api(ctx.headers)
        limit = runtime.settings.max_upload_bytes
        if data is not None:
            raw, name = _decode_data(data, filename)
            upload = await api.upload_media(raw, name, max_bytes=limit)
        else:
            path = await anyio.to_thread.run_sync(_local_path, runtime, file_path or "")
            upload = await api.upload_media(path, filename, max_bytes=limit)
    except AtlasError as err:
        raise _fail(err) from err
    note = (
        "This URL is temporary and meant as input to a generation: pass it as `image` (or `mask_image`) "
        "of generate_image. Do not use it as permanent hosting."
    )
    result = UploadResult(
        download_url=upload.download_url,
        filename=upload.filename,
        size=upload.size,
        content_type=upload.content_type,
        note=note,
    )
    text = (
        f"Uploaded {upload.filename} ({upload.size} bytes, {upload.content_type}).\n"
        f"download_url: {upload.download_url}\n{note}"
    )
    await notify(ctx, "info", f"uploaded {upload.filename} ({upload.size} bytes)")
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=result.model_dump())


async def list_models(
    ctx: Context,
    query: Annotated[
        str | None, Field(max_length=200, description="Filter by words in the id, name or description.")
    ] = None,
) -> Annotated[CallToolResult, ModelList]:
    """List the image models of the Atlas catalogue with their price per run, FLUX first."""
    runtime = _runtime(ctx)
    try:
        models = await runtime.client.list_models()
    except AtlasError as err:
        raise _fail(err) from err
    words = (query or "").lower().split()
    picked = [
        m for m in models if all(w in f"{m.id} {m.name} {m.description}".lower() for w in words)
    ]
    picked.sort(key=lambda m: (not m.id.startswith("black-forest-labs/flux"), m.id))
    entries = [
        ModelEntry(id=m.id, name=m.name, price=m.price, price_unit=m.price_unit, description=m.description[:300])
        for m in picked
    ]
    lines = [f"{len(entries)} image model(s)" + (f" matching {query!r}" if query else "") + ":"]
    for e in entries:
        price = f" — ${e.price}/{e.price_unit or 'run'}" if e.price else ""
        lines.append(f"- {e.id} ({e.name}){price}")
    if not entries:
        lines.append("None. Try a shorter query, or call list_models without one.")
    structured = ModelList(models=entries, query=query).model_dump()
    return CallToolResult(content=[TextContent(type="text", text="\n".join(lines))], structured_content=structured)


# name -> (title, readOnlyHint, idempotentHint). None is destructive; all reach Atlas (openWorldHint).
# get_prediction is not read-only: it saves the pictures it collects (same names, so idempotent).
_TOOL_HINTS: dict[str, tuple[str, bool, bool]] = {
    "generate_image": ("Generate image (FLUX)", False, False),
    "get_prediction": ("Get prediction", False, True),
    "upload_media": ("Upload media", False, False),
    "list_models": ("List image models", True, True),
}


def register_tools(server: MCPServer[Any]) -> None:
    """Add the four tools, with titles and honest annotations."""
    for fn in (generate_image, get_prediction, upload_media, list_models):
        title, read_only, idempotent = _TOOL_HINTS[fn.__name__]
        hints = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=False,
            idempotent_hint=idempotent,
            open_world_hint=True,
        )
        server.add_tool(fn, title=title, annotations=hints)
