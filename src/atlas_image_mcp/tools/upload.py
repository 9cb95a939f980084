"""``upload_media``: a local file or base64 data to a temporary Atlas URL, for use as an input picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ..call import Call
from ..errors import InvalidParameterError, LocalFileError
from ..media import DataError, decode_data, filename_for, resolve_local_path
from ..params import UploadMediaArguments
from ..pictures import sniff
from ..runtime import Runtime
from ..settings import env_name

__all__ = ["UploadResult", "upload_media"]

_NOTE = (
    "This URL is temporary and meant as input to a generation: pass it as `image` (or `mask_image`) "
    "of generate_image. Do not use it as permanent hosting."
)


class UploadResult(BaseModel):
    """The structured result of upload_media."""

    download_url: str = Field(
        description="Temporary URL of the uploaded file; pass it as generate_image's image."
    )
    filename: str
    size: int = Field(description="Size in bytes.")
    content_type: str
    note: str


def _local_path(runtime: Runtime, file_path: str) -> Path:
    """A path is read only inside ATLAS_MCP_UPLOAD_ROOT when it is set (over HTTP, not at all
    without it), and only when its content is a picture (unless ATLAS_MCP_UPLOAD_ANY_FILE=1)."""
    if runtime.remote and runtime.settings.upload_root is None:
        raise LocalFileError(
            "Reading server-side files is off on this hosted server. Send the file's content as base64 in "
            "`data` (with `filename`) instead of file_path."
        )
    path = resolve_local_path(file_path, root=runtime.settings.upload_root)
    if path.is_file() and path.stat().st_size > 0:  # anything else is refused with its own reason
        _only_pictures(runtime, path, f"{file_path[:200]!r}")
    return path


def _only_pictures(runtime: Runtime, source: Path | bytes, shown: str) -> None:
    """Refuse anything whose content is not a picture (by its bytes, never its name)."""
    settings = runtime.settings
    if settings.upload_any_file or sniff(source, settings.max_pixels) is not None:
        return
    raise LocalFileError(
        f"{shown} is not a picture (JPEG, PNG, WebP or GIF, judged by its content), so it was not "
        "uploaded. upload_media sends pictures to use as generation inputs; the server's operator can "
        f"allow any file with {env_name('upload_any_file')}=1."
    )


async def upload_media(call: Call, args: UploadMediaArguments) -> Annotated[CallToolResult, UploadResult]:
    """Upload a local file (or base64 data) to Atlas and get a temporary URL to use as a generation input."""
    runtime = call.runtime
    if (args.file_path is None) == (args.data is None):
        raise InvalidParameterError("file_path/data", "give exactly one of file_path or data.")
    api = call.api
    limit = runtime.settings.max_upload_bytes
    if args.data is not None:
        try:
            decoded = decode_data(args.data)
        except DataError as err:
            raise InvalidParameterError("data", f"{err}.") from None
        name = args.filename or filename_for(decoded.content_type)
        await anyio.to_thread.run_sync(_only_pictures, runtime, decoded.content, "The data")
        upload = await api.upload_media(decoded.content, name, max_bytes=limit)
    else:
        path = await anyio.to_thread.run_sync(_local_path, runtime, args.file_path or "")
        upload = await api.upload_media(path, args.filename, max_bytes=limit)
    result = UploadResult(
        download_url=upload.download_url,
        filename=upload.filename,
        size=upload.size,
        content_type=upload.content_type,
        note=_NOTE,
    )
    text = (
        f"Uploaded {upload.filename} ({upload.size} bytes, {upload.content_type}).\n"
        f"download_url: {upload.download_url}\n{_NOTE}"
    )
    await call.notify("info", f"uploaded {upload.filename} ({upload.size} bytes)")
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=result.model_dump()
    )
