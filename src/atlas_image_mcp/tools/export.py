"""``export_image``: one picture to the files a project needs, in the workspace, here and free.

The picture is any reference the picture tools take (:func:`~atlas_image_mcp.sources.read_picture`):
an earlier output is read from its saved copy (else its URL is fetched), a URL through the guarded
downloader, data and files as they are; nothing is uploaded or submitted, so nothing is billed.
Each entry of ``sizes`` makes files beside ``save_as`` (``public/logo.png``):

* ``favicon``: ``favicon.ico`` (16, 32, 48 and 64 px), ``apple-touch-icon.png`` (180 px) and
  ``icon-512.png`` (512 px), square crops of the centre;
* ``og``: the 1200x630 social card, ``logo-1200x630.png``;
* ``WxH``: ``logo-WxH.png``;

each in ``save_as``'s format, or the one its own suffix names (``64x64.webp``), cropped (``cover``)
or padded (``contain``). Every file is checked before any is written (inside the workspace, not
there yet unless ``overwrite``), and written as ``save_as`` writes (:mod:`atlas_image_mcp.workspace`).
The picture is decoded once, within the pixel cap and the process's decode limiter.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated

import anyio
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ..asset_plan import workspace_target
from ..assets import (
    FAVICON_SIZES,
    AssetSpec,
    IconSpec,
    extension_of,
    format_of_extension,
    make_assets,
    parse_color,
    parse_size,
    writable_formats,
)
from ..call import Call
from ..errors import InvalidParameterError, SaveError
from ..fetch import Budget
from ..params import ExportImageArguments
from ..pictures import PictureError
from ..sources import read_picture
from ..workspace import SaveTarget, target_is_free, write_confined

__all__ = ["ExportResult", "ExportedFile", "export_image"]

_OG = (1200, 630)
_TOUCH_ICON = 180
_LARGE_ICON = 512
_MAX_ICO_SIDE = 256


class ExportedFile(BaseModel):
    entry: str = Field(description="The size asked for that made it (favicon, og, WxH).")
    path: str = Field(description="Its absolute path (for an MCP App's frame: its path in the workspace).")
    relative: str = Field(description="Its path in the workspace.")
    width: int
    height: int
    mime_type: str


class ExportResult(BaseModel):
    """The structured result of export_image."""

    files: list[ExportedFile]
    root: str = Field(description="The workspace folder the files are in.")


@dataclass(frozen=True)
class _Entry:
    label: str
    target: SaveTarget
    spec: AssetSpec | IconSpec


async def export_image(call: Call, args: ExportImageArguments) -> Annotated[CallToolResult, ExportResult]:
    """Make project files from one picture in the workspace: favicon set, social card, exact sizes and
    formats. Free and local: nothing is sent to Atlas."""
    base = await workspace_target(call, args.save_as, overwrite=args.overwrite)
    entries = _entries(args, base)
    for entry in entries:
        await anyio.to_thread.run_sync(target_is_free, entry.target)
    settings = call.runtime.settings
    scratch = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))
    try:
        sources = call.picture_sources(upload=False, keyless=True)
        deadline = call.runtime.client.deadline_in(settings.wait_seconds)  # no key needed
        budget = Budget(bytes_left=settings.max_call_download_bytes, deadline=deadline)
        path = await read_picture(args.image, "image", sources, scratch=scratch, budget=budget)
        try:
            async with call.runtime.decodes:
                made = await anyio.to_thread.run_sync(
                    lambda: make_assets(path, [e.spec for e in entries], max_pixels=settings.max_pixels)
                )
        except PictureError as err:
            raise InvalidParameterError("image", f"the picture {err}.") from None
        files: list[ExportedFile] = []
        for entry, asset in zip(entries, made, strict=True):
            try:
                written = await anyio.to_thread.run_sync(write_confined, entry.target, asset.data)
            except SaveError as err:
                done = ", ".join(f.relative for f in files)
                err.extend_message(f"Written before it: {done}." if done else "Nothing was written.")
                raise
            shown = entry.target.relative if call.shows_apps else str(written)
            files.append(
                ExportedFile(entry=entry.label, path=shown, relative=entry.target.relative, width=asset.width,
                             height=asset.height, mime_type=asset.mime_type)
            )  # fmt: skip
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(scratch, ignore_errors=True))
    root = base.root.path
    result = ExportResult(files=files, root=root.name if call.shows_apps else str(root))
    return CallToolResult(
        content=[TextContent(type="text", text=_text(result, base))],
        structured_content=result.model_dump(mode="json"),
    )


def _entries(args: ExportImageArguments, base: SaveTarget) -> list[_Entry]:
    """One entry per file to make, in the order asked, each named once."""
    own = format_of_extension(base.extension)
    if own is None or own not in writable_formats(icons=True):
        raise InvalidParameterError(
            "save_as",
            f"{base.parts[-1]!r} must end in an extension that names the format: "
            f"{', '.join('.' + extension_of(f) for f in writable_formats(icons=True))}.",
        )
    stem = PurePosixPath(base.parts[-1]).stem
    try:
        background = parse_color(args.background) if args.background is not None else None
    except ValueError as err:
        raise InvalidParameterError("background", f"{err}.") from None
    entries: dict[str, _Entry] = {}
    for raw in args.sizes:
        text = raw.strip().lower()
        name, dot, suffix = text.partition(".")
        fmt = format_of_extension(suffix) if dot else own
        if fmt is None or fmt not in writable_formats(icons=True):
            raise InvalidParameterError("sizes", f"{raw!r}: .{suffix} is not a format written here.")
        if name == "favicon":
            if dot:
                raise InvalidParameterError(
                    "sizes", "'favicon' makes its own files (.ico and .png); drop the suffix."
                )
            made = [
                _Entry(text, base.renamed("favicon.ico"), IconSpec(FAVICON_SIZES)),
                _Entry(text, base.renamed("apple-touch-icon.png"), _square(_TOUCH_ICON, args, background)),
                _Entry(text, base.renamed(f"icon-{_LARGE_ICON}.png"), _square(_LARGE_ICON, args, background)),
            ]
        else:
            try:
                size = _OG if name == "og" else parse_size(name)
            except ValueError as err:
                raise InvalidParameterError("sizes", f"{err}: use 'favicon', 'og' or 'WxH'.") from None
            target = base.renamed(f"{stem}-{size[0]}x{size[1]}.{extension_of(fmt)}")
            if fmt == "ico":
                if size[0] != size[1] or size[0] > _MAX_ICO_SIDE:
                    raise InvalidParameterError("sizes", f"{raw!r}: an .ico is square, at most 256 px.")
                made = [_Entry(text, target, IconSpec((size[0],)))]
            else:
                spec = AssetSpec(size, args.fit or "cover", background, fmt, args.quality)
                made = [_Entry(text, target, spec)]
        for entry in made:
            entries.setdefault(entry.target.relative, entry)
    return list(entries.values())


def _square(side: int, args: ExportImageArguments, background: tuple[int, int, int, int] | None) -> AssetSpec:
    return AssetSpec((side, side), args.fit or "cover", background, "png", None)


def _text(result: ExportResult, base: SaveTarget) -> str:
    where = f"{result.root} ({base.root.origin})"
    lines = [f"Wrote {len(result.files)} file(s) into {where}; nothing was sent to Atlas:"]
    for file in result.files:
        lines.append(f"- {file.relative}: {file.width}x{file.height} {file.mime_type} ({file.entry})")
    return "\n".join(lines)
