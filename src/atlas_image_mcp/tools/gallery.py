"""``show_gallery``: this session's pictures, newest first (the viewer shows them as a gallery)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ..call import Call
from ..constants import IMAGE_URI
from ..history import HistoryEntry
from ..params import ShowGalleryArguments

__all__ = ["GalleryPicture", "GalleryResult", "gallery", "show_gallery"]


class GalleryPicture(BaseModel):
    prediction_id: str
    index: int = Field(description="Which output of the prediction (1-based).")
    resource_uri: str = Field(description="MCP resource URI of the picture.")
    url: str = Field(description="Temporary URL of the picture at Atlas Cloud.")
    path: str | None = Field(
        default=None,
        description="The saved copy: its absolute path, or only its file name (in the output folder) for "
        "a client that shows results in an MCP App.",
    )
    model: str | None = None
    prompt: str | None = None
    tool: str = Field(description="The tool that made it.")
    created: str = Field(description="When it was requested (ISO 8601, UTC).")
    batch: str | None = Field(default=None, description="The batch it belongs to (shared by its pictures).")


class GalleryResult(BaseModel):
    """The structured result of show_gallery."""

    pictures: list[GalleryPicture] = Field(description="Newest first.")
    total: int = Field(description="How many pictures this session has in all.")


def gallery(entries: list[HistoryEntry], limit: int, *, file_names: bool = False) -> GalleryResult:
    """One row per picture of ``entries`` (newest first), at most ``limit``."""
    pictures: list[GalleryPicture] = []
    for entry in entries:
        created = datetime.fromtimestamp(entry.created, tz=timezone.utc).isoformat(timespec="seconds")
        for n, url in enumerate(entry.outputs, start=1):
            saved = entry.paths[n - 1] if n <= len(entry.paths) else None
            pictures.append(
                GalleryPicture(
                    prediction_id=entry.prediction_id,
                    index=n,
                    resource_uri=IMAGE_URI.format(prediction_id=entry.prediction_id, index=n),
                    url=url,
                    path=Path(saved).name if saved and file_names else saved,
                    model=entry.model,
                    prompt=entry.prompt,
                    tool=entry.tool,
                    created=created,
                    batch=entry.batch,
                )
            )
    return GalleryResult(pictures=pictures[:limit], total=len(pictures))


#: Said where nothing the server verified tells this client from any other (see Caller.shared).
ONE_IDENTITY = (
    "Note: every client of this server uses its one Atlas key, and this connection keeps no session "
    "(stateless HTTP or protocol 2026-07-28), so all such clients are one identity here: these "
    "pictures, and 'last', are shared by all of them."
)


def gallery_text(result: GalleryResult, *, shared: bool = False) -> str:
    note = f"\n{ONE_IDENTITY}" if shared else ""
    if not result.pictures:
        return "No pictures in this session yet: make one with generate_image." + note
    lines = [f"This session's pictures, newest first ({len(result.pictures)} of {result.total}):"]
    for n, pic in enumerate(result.pictures, start=1):
        about = ", ".join(part for part in (pic.model, pic.tool) if part)
        prompt = f'"{pic.prompt}" ' if pic.prompt else ""
        lines.append(f"{n}. {prompt}({about}) prediction {pic.prediction_id}, picture {pic.index}: {pic.url}")
        if pic.path and Path(pic.path).is_absolute():
            lines.append(f"   saved to: {pic.path}")
        elif pic.path:
            lines.append(f"   saved as {pic.path} in the output folder")
    return "\n".join(lines) + note


async def show_gallery(call: Call, args: ShowGalleryArguments) -> Annotated[CallToolResult, GalleryResult]:
    """Show the pictures made in this conversation, newest first (in the picture viewer where the client
    has one; otherwise as a list with their URLs)."""
    caller = call.caller
    entries = await call.runtime.history.entries(caller.history)
    result = gallery(entries, args.limit, file_names=call.shows_apps)
    shared = caller.shared and not caller.history.session
    return CallToolResult(
        content=[TextContent(type="text", text=gallery_text(result, shared=shared))],
        structured_content=result.model_dump(mode="json"),
    )
