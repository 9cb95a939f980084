"""``upload_media``: a local file or base64 data to a temporary Atlas URL, for use as an input picture."""

from __future__ import annotations

from typing import Annotated

import anyio
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ..call import Call
from ..errors import InvalidParameterError, LocalFileError
from ..media import DataError, decode_data, filename_for, read_local_file
from ..params import UploadMediaArguments
from ..pictures import PictureError, check_input
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


def _checked(runtime: Runtime, content: bytes, shown: str) -> None:
    """The one input check (as for every tool that takes a picture), unless any file may be uploaded."""
    settings = runtime.settings
    if settings.upload_any_file and content:
        return
    try:
        check_input(content, settings.max_pixels)
    except PictureError as err:
        advice = (
            " upload_media sends pictures to use as generation inputs; the server's operator can "
            f"allow any file with {env_name('upload_any_file')}=1."
            if "accepted format" in str(err)
            else ""
        )
        raise LocalFileError(f"{shown} {err}, so it was not uploaded.{advice}") from None


async def upload_media(call: Call, args: UploadMediaArguments) -> Annotated[CallToolResult, UploadResult]:
    """Upload a local file (or base64 data) to Atlas and get a temporary URL to use as a generation input."""
    runtime = call.runtime
    if (args.file_path is None) == (args.data is None):
        raise InvalidParameterError("file_path/data", "give exactly one of file_path or data.")
    api = call.api
    settings = runtime.settings
    limit = settings.max_upload_bytes
    if args.data is not None:
        try:
            decoded = decode_data(args.data)
        except DataError as err:
            raise InvalidParameterError("data", f"{err}.") from None
        content, name, shown = (
            decoded.content,
            args.filename or filename_for(decoded.content_type),
            "The data",
        )
    else:
        if runtime.remote and settings.upload_root is None:
            raise LocalFileError(
                "Reading server-side files is off on this hosted server. Send the file's content as base64 "
                "in `data` (with `filename`) instead of file_path."
            )
        # read once, off the event loop: what is checked below is what is sent
        local = await anyio.to_thread.run_sync(
            lambda: read_local_file(args.file_path or "", root=settings.upload_root, max_bytes=limit)
        )
        content, name, shown = local.content, args.filename or local.name, repr((args.file_path or "")[:200])
    await anyio.to_thread.run_sync(_checked, runtime, content, shown)
    upload = await api.upload_media(content, name, max_bytes=limit)
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
    await call.notify("info", f"uploaded {upload.filename} ({upload.size} bytes)", operator=True)
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=result.model_dump()
    )
