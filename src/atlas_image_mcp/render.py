"""Turning a prediction into what a tool returns: text, structured content and picture blocks.

Pure functions (plus Pillow work, run in a worker thread by the caller): no network, no MCP
server objects. Three layers, so every client gets something useful:

1. text that always works, even in clients that drop images;
2. ``structuredContent`` matching :class:`GenerationResult` (the tools' ``outputSchema``);
3. the picture as MCP image content: a thumbnail (at most 512 px on the long side) or the
   original, never more than :data:`MAX_BASE64_CHARS` of base64 in one result.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel, Field

from .constants import IMAGE_URI, MAX_BASE64_CHARS, MAX_URL_CHARS, OFFLINE_BASE_URL, THUMBNAIL_SIZE, ImageMode

__all__ = [
    "MAX_BASE64_CHARS",
    "THUMBNAIL_SIZE",
    "AssetFile",
    "BatchJob",
    "BatchResult",
    "GenerationResult",
    "OutputImage",
    "ShownPicture",
    "inline_images",
    "inspect_image",
    "price_text",
    "resource_links",
    "result_text",
    "shown_url",
    "structured",
    "thumbnail",
    "tool_result",
    "without_local_paths",
]


class AssetFile(BaseModel):
    """The file delivered for one output: save_as, or the picture remade (output_size, output_format)."""

    path: str = Field(description="Its absolute path (for an MCP App's frame: its path in the workspace).")
    relative: str = Field(description="Its path in the workspace (or its name in the output folder).")
    width: int
    height: int


class OutputImage(BaseModel):
    """One output picture."""

    url: str = Field(description="Temporary Atlas URL (expires).")
    path: str | None = Field(
        default=None,
        description="The saved copy: its absolute path, or only its file name (in the output folder) for "
        "a client that shows results in an MCP App.",
    )
    width: int | None = None
    height: int | None = None
    mime_type: str | None = None
    resource_uri: str | None = Field(default=None, description="MCP resource of the picture.")
    error: str | None = Field(default=None, description="What went wrong with this picture, if anything.")
    file: AssetFile | None = Field(default=None, description="The file delivered (save_as, output_size...).")


class BatchJob(BaseModel):
    """One job of a batch (``generate_image`` with ``prompts`` or ``count``)."""

    prediction_id: str | None = Field(description="Its prediction id (null: it was never accepted).")
    status: str
    prompt: str | None = None
    seed: int | None = None
    price: str | None = None
    pictures: list[int] = Field(
        default_factory=list, description="Its pictures: positions in outputs (1-based)."
    )
    error: str | None = None


class GenerationResult(BaseModel):
    """The structured result of the picture tools (generate, edit, variations, get_prediction)."""

    prediction_id: str | None = Field(description="Atlas prediction id; pass it to get_prediction.")
    status: str = Field(
        description="completed, processing (call get_prediction later), dry_run; not sent: declined or "
        "confirmation_required (see next_step)."
    )
    model: str | None = None
    prompt: str | None = Field(default=None, description="The prompt sent, if any.")
    sources: list[str] = Field(default_factory=list, description="URLs of the input pictures used.")
    outputs: list[OutputImage] = Field(default_factory=list)
    seed: int | None = Field(default=None, description="Seed used, when known (reuse it to reproduce).")
    price: str | None = Field(default=None, description="Cost in USD, as Atlas charged it (may come later).")
    estimated_price: str | None = Field(
        default=None, description="Expected cost in USD before sending (price x images); null: unknown."
    )
    error: str | None = Field(default=None, description="Why it failed, or a download problem.")
    elapsed_seconds: float | None = Field(
        default=None, description="Seconds the job took (Atlas' timing; while processing, this call's wait)."
    )
    ignored_parameters: list[str] = Field(
        default_factory=list, description="Parameters the model does not accept (not sent)."
    )
    request_body: dict[str, Any] | None = Field(
        default=None, description="dry_run: the exact JSON body it would send."
    )
    next_step: str | None = Field(default=None, description="What to do next.")


class BatchResult(GenerationResult):
    """The structured result of ``generate_image``: one job's, or a batch's with its jobs."""

    jobs: list[BatchJob] | None = Field(
        default=None,
        description="A batch: every job with its id, seed and pictures (outputs lists them all).",
    )

    def pictures_of(self, job: BatchJob) -> list[OutputImage]:
        return [self.outputs[n - 1] for n in job.pictures if 0 < n <= len(self.outputs)]


#: Keys a result leaves out while they are null, so results that do not use them keep their shape.
_DROPPED_WHEN_NULL = ("jobs",)
_OUTPUT_DROPPED_WHEN_NULL = ("file",)


@dataclass(frozen=True)
class ShownPicture:
    """An output to show: its bytes (empty when it stays on disk), what Pillow says about it, and
    its thumbnail when one was made already."""

    data: bytes
    mime_type: str
    width: int | None
    height: int | None
    preview: ShownPicture | None = None


def shown_url(url: str, prediction_id: str | None, index: int) -> str:
    """What a result shows for an output: its URL, or (for an inline ``data:`` output, an output of the
    offline emulator, which only this process can reach, or anything that is not a plausible URL) the
    resource URI that serves it, so no payload is ever echoed and what is shown can be opened."""
    offline = url.startswith(f"{OFFLINE_BASE_URL}/")
    if url.startswith(("http://", "https://")) and len(url) <= MAX_URL_CHARS and not offline:
        return url
    return IMAGE_URI.format(prediction_id=prediction_id or "unknown", index=index)


def inspect_image(data: bytes, fallback_mime: str = "") -> ShownPicture:
    """Read the size and format of ``data`` (header only); tolerate non-images."""
    from PIL import Image, UnidentifiedImageError  # deferred: Pillow is ~10 ms of the stdio start-up

    try:
        with Image.open(io.BytesIO(data)) as img:
            mime = Image.MIME.get(img.format or "", fallback_mime) or fallback_mime or "image/png"
            return ShownPicture(data=data, mime_type=mime, width=img.width, height=img.height)
    except (UnidentifiedImageError, OSError, ValueError):
        return ShownPicture(
            data=data, mime_type=fallback_mime or "application/octet-stream", width=None, height=None
        )


def thumbnail(picture: ShownPicture, max_side: int = THUMBNAIL_SIZE) -> ShownPicture:
    """A copy at most ``max_side`` px on its long side (JPEG, or PNG when there is transparency)."""
    from PIL import Image  # deferred: Pillow is ~10 ms of the stdio start-up

    with Image.open(io.BytesIO(picture.data)) as img:
        img.draft("RGB", (max_side, max_side))  # fast JPEG downscale while decoding
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        has_alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
        if has_alpha:
            img.save(out, format="PNG", optimize=True)
            mime = "image/png"
        else:
            img.convert("RGB").save(out, format="JPEG", quality=85, optimize=True)
            mime = "image/jpeg"
        return ShownPicture(data=out.getvalue(), mime_type=mime, width=img.width, height=img.height)


_warming: list[threading.Thread] = []


def warm_up_in_background() -> None:
    """Load Pillow and run its JPEG codec once, in a thread, the first time a job is waited for.

    The first picture of a process otherwise paid for Pillow's import and its codecs' first use
    after the job was done (~130 ms of the first call on the benchmark machine, against ~20 ms for
    later calls); here that happens while the job runs, when the call only waits. Once per process.
    """
    if not _warming:
        _warming.append(threading.Thread(target=_warm_up, name="atlas-image-mcp-warm-up", daemon=True))
        _warming[0].start()


def _warm_up() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64)).save(out, format="JPEG")
    thumbnail(inspect_image(out.getvalue()), max_side=16)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def inline_images(pictures: list[ShownPicture], mode: ImageMode) -> tuple[list[ImageContent], list[str]]:
    """Image blocks for ``pictures`` within the base64 budget, and notes on what was downscaled or left out.

    The budget counts base64 characters (what actually travels), not decoded bytes.
    """
    if mode == "none":
        return [], []
    blocks: list[ImageContent] = []
    notes: list[str] = []
    used = 0
    for n, picture in enumerate(pictures, start=1):
        if picture.width is None:
            notes.append(f"Image {n} is not a picture Pillow can read, so it is not shown inline.")
            continue
        small = picture.preview
        encoded = _b64(picture.data) if mode == "full" and picture.data else ""
        if encoded and used + len(encoded) <= MAX_BASE64_CHARS:
            candidate = picture
        else:
            candidate = small or thumbnail(picture)
            encoded = _b64(candidate.data)
            if mode == "full":
                notes.append(
                    f"Image {n} is shown as a {candidate.width}x{candidate.height} thumbnail: the original "
                    f"would exceed the {MAX_BASE64_CHARS // 1_000_000} MB inline budget. Open its path or "
                    "URL for full resolution."
                )
        if used + len(encoded) > MAX_BASE64_CHARS:
            notes.append(f"Image {n} is not shown inline: the result's inline image budget is used up.")
            continue
        used += len(encoded)
        blocks.append(ImageContent(type="image", data=encoded, mime_type=candidate.mime_type))
    return blocks, notes


def without_local_paths(result: GenerationResult) -> GenerationResult:
    """``result`` with each saved copy named by its file name only, and each delivered file by its path
    in the workspace (for clients that show it in a frame)."""

    def local(out: OutputImage) -> OutputImage:
        update: dict[str, Any] = {}
        if out.path:
            update["path"] = Path(out.path).name
        if out.file is not None:
            update["file"] = out.file.model_copy(update={"path": out.file.relative})
        return out.model_copy(update=update) if update else out

    return result.model_copy(update={"outputs": [local(o) for o in result.outputs]})


def resource_links(result: GenerationResult) -> list[ResourceLink]:
    return [
        ResourceLink(
            type="resource_link",
            uri=uri,
            name=uri.removeprefix("atlas-image://predictions/").replace("/images/", "-"),
            title=f"Picture {uri.rsplit('/', 1)[-1]} of prediction {uri.split('/')[3]}",
            mime_type=out.mime_type,
        )
        for out in result.outputs
        if (uri := out.resource_uri)
    ]


def result_text(result: GenerationResult, notes: list[str] | None = None) -> TextContent:
    """The plain-text layer: everything an assistant needs, readable without images."""
    lines = [f"Status: {result.status}" + (f" (model {result.model})" if result.model else "")]
    if result.prediction_id:
        lines.append(f"Prediction id: {result.prediction_id}")
    for n, source in enumerate(result.sources, start=1):
        lines.append(f"Source {n}: {source}")
    if isinstance(result, BatchResult) and result.jobs is not None:
        lines.extend(_job_lines(result))
    else:
        lines.extend(_output_lines(result.outputs))
    if result.seed is not None:
        lines.append(f"Seed: {result.seed}")
    if result.price:
        lines.append(f"Cost: ${result.price}")
    elif result.estimated_price and result.status not in ("dry_run", "declined", "confirmation_required"):
        lines.append(f"Estimated cost: ${result.estimated_price} (Atlas reports the charge when it is known)")
    if result.elapsed_seconds is not None:
        lines.append(f"Took: {result.elapsed_seconds:.1f} s")
    if result.ignored_parameters:
        model = result.model or "this model"
        lines.append(f"Ignored (not accepted by {model}, not sent): {', '.join(result.ignored_parameters)}")
    if result.request_body is not None:
        lines.append("Request body that would be sent (nothing was sent, nothing billed):")
        lines.append(json.dumps(result.request_body, indent=2, ensure_ascii=False))
    if result.error:
        lines.append(f"Note: {result.error}")
    lines.extend(notes or [])
    if result.next_step:
        lines.append(result.next_step)
    return TextContent(type="text", text="\n".join(lines))


def _output_lines(outputs: list[OutputImage], first: int = 1, indent: str = "") -> list[str]:
    lines: list[str] = []
    for n, out in enumerate(outputs, start=first):
        size = f" {out.width}x{out.height}" if out.width and out.height else ""
        kind = f" {out.mime_type}" if out.mime_type else ""
        lines.append(f"{indent}Image {n}{size}{kind}: {out.url}")
        if out.path and Path(out.path).is_absolute():
            lines.append(f"{indent}  saved to: {out.path}")
        elif out.path:
            lines.append(f"{indent}  saved as {out.path} in the output folder")
        if out.file is not None:
            made = f"{out.file.width}x{out.file.height}"
            where = (
                f"{out.file.path} ({out.file.relative})"
                if out.file.path != out.file.relative
                else out.file.path
            )
            lines.append(f"{indent}  written to: {where}, {made}")
    return lines


def _job_lines(result: BatchResult) -> list[str]:
    lines: list[str] = []
    for number, job in enumerate(result.jobs or [], start=1):
        about = [f"prediction {job.prediction_id}" if job.prediction_id else "not sent", job.status]
        if job.seed is not None:
            about.append(f"seed {job.seed}")
        if job.price:
            about.append(f"${job.price}")
        prompt = f' "{job.prompt}"' if job.prompt else ""
        lines.append(f"Job {number}{prompt}: {', '.join(about)}")
        if job.error:
            lines.append(f"  Failed: {job.error}")
        first = job.pictures[0] if job.pictures else 1
        lines.extend(_output_lines(result.pictures_of(job), first, "  "))
    return lines


def structured(result: BaseModel) -> dict[str, Any]:
    """``result`` as ``structuredContent``: keys of newer features that are null are left out."""
    dumped: dict[str, Any] = result.model_dump(mode="json")
    for key in _DROPPED_WHEN_NULL:
        if dumped.get(key, 0) is None:
            del dumped[key]
    for out in dumped.get("outputs", []):
        for key in _OUTPUT_DROPPED_WHEN_NULL:
            if out.get(key, 0) is None:
                del out[key]
    return dumped


def tool_result(
    result: GenerationResult, blocks: list[Any], notes: list[str], *, is_error: bool = False
) -> CallToolResult:
    """The three layers as one tool result: text, the picture blocks and resource links, and ``result``."""
    content: list[Any] = [result_text(result, notes), *blocks, *resource_links(result)]
    return CallToolResult(content=content, structured_content=structured(result), is_error=is_error)


def price_text(amount: Decimal | None) -> str | None:
    """An amount of USD as results carry it (``"0.036"``), or None."""
    return format(amount.normalize(), "f") if amount is not None else None
