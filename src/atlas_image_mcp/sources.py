"""A picture from anywhere, as a URL Atlas can read.

The picture tools take their input pictures in any of these forms, resolved here:

* ``last``: the latest picture this session produced;
* a prediction id, or an ``atlas-image://predictions/{id}/images/{n}`` URI from an earlier result:
  its output URL, checked to still answer; when it has expired, the copy saved here is uploaded
  (with per-user keys only for the identity that made it: see :meth:`Call.owns_prediction
  <atlas_image_mcp.call.Call.owns_prediction>`);
* an ``http(s)`` URL: passed to Atlas as is (Atlas fetches it, not this server);
* a ``data:`` URI or bare base64: decoded, checked to be a picture, uploaded (``uploadMedia``);
* an absolute file path, over stdio only (inside ``ATLAS_MCP_UPLOAD_ROOT`` when it is set): checked
  to be a picture, uploaded. A hosted server refuses paths: the file would be on the server.

Results name the URLs used (``sources``), never the data itself.

:func:`read_picture` takes the same forms to a file here instead, sending nothing to Atlas (for
``export_image``): an earlier output is its saved copy when there is one, else its URL fetched; a
URL is fetched through the guarded downloader; data and files are read as they are.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import anyio

from .client import AtlasClient
from .constants import IMAGE_URI_PATTERN, MAX_PREDICTION_ID_CHARS
from .errors import AtlasError, InvalidParameterError, LocalFileError, NotFoundError, no_such_prediction
from .fetch import Budget
from .history import HistoryScope, PictureHistory
from .media import DataError, decode_data, filename_for, read_local_file
from .pictures import PictureError, check_input
from .settings import env_name
from .storage import find_saved

__all__ = ["PENDING_UPLOAD", "SourceContext", "read_picture", "resolve_picture"]

_RESOURCE = re.compile(IMAGE_URI_PATTERN)
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_MIN_BASE64_CHARS = 64
_FETCHABLE = ("https://", "http://", "data:")
#: Where a dry run shows a picture that a real call would upload first.
PENDING_UPLOAD = "https://upload.pending/"


@dataclass(frozen=True)
class SourceContext:
    """What resolving needs from the call: the caller's client, session and the server's settings."""

    api: AtlasClient
    history: PictureHistory
    session: HistoryScope
    output_dir: Path
    remote: bool
    upload_root: Path | None
    max_upload_bytes: int
    max_pixels: int
    #: Whether the caller may use the copies saved here of a prediction (the identity that made it).
    owns: Callable[[str], Awaitable[bool]]
    upload: bool  # False (dry runs): check pictures that would be uploaded, send nothing


async def resolve_picture(ref: str, parameter: str, ctx: SourceContext) -> str:
    """The URL Atlas will read for one picture reference (see the module docstring for the forms)."""
    text = ref.strip()
    if text.lower() == "last":
        entry = await ctx.history.last(ctx.session)
        if entry is None:
            raise InvalidParameterError(
                parameter,
                "'last' means this session's latest picture, and there is none yet: generate one first, or "
                "pass a URL, a prediction id or the picture itself.",
            )
        return await _earlier_output(entry.prediction_id, 1, parameter, ctx)
    if match := _RESOURCE.match(text):
        return await _earlier_output(match.group(1), int(match.group(2)), parameter, ctx)
    if _HEX_ID.match(text) or (
        len(text) <= MAX_PREDICTION_ID_CHARS and await ctx.history.lookup(ctx.session, text)
    ):
        return await _earlier_output(text, 1, parameter, ctx)
    if text.startswith(("https://", "http://")):
        return text
    if text.startswith("data:"):
        return await _upload_data(text, parameter, ctx)
    path_like = _looks_like_path(text)
    if len(text) >= _MIN_BASE64_CHARS and _BASE64.match(text):
        # base64 may start with "/" (a JPEG's does) and a long path is made of base64's letters: a file
        # that exists here is the file; text that does not decode and looks like a path is a path
        if not (path_like and not ctx.remote and await _is_local_file(text)):
            try:
                return await _upload_data(text, parameter, ctx, undecodable_ok=path_like)
            except _NotBase64:
                pass
    if path_like:
        return await _upload_path(text, parameter, ctx)
    raise InvalidParameterError(
        parameter,
        f"{text[:80]!r} is not a picture reference. Give an https URL, a data: URI or base64, a prediction "
        "id or atlas-image:// URI from an earlier result, 'last', or (over stdio) an absolute file path.",
    )


async def read_picture(
    ref: str, parameter: str, ctx: SourceContext, *, scratch: Path, budget: Budget
) -> Path:
    """A file here holding the picture ``ref`` names (in ``scratch`` unless it is a saved copy or the
    caller's own file); nothing is uploaded or submitted. The caller checks it is a picture."""
    text = ref.strip()
    if text.lower() == "last":
        entry = await ctx.history.last(ctx.session)
        if entry is None:
            raise InvalidParameterError(
                parameter, "'last' means this session's latest picture, and there is none yet."
            )
        return await _earlier_file(entry.prediction_id, 1, parameter, ctx, scratch, budget)
    if match := _RESOURCE.match(text):
        return await _earlier_file(match.group(1), int(match.group(2)), parameter, ctx, scratch, budget)
    if _HEX_ID.match(text) or (
        len(text) <= MAX_PREDICTION_ID_CHARS and await ctx.history.lookup(ctx.session, text)
    ):
        return await _earlier_file(text, 1, parameter, ctx, scratch, budget)
    if text.startswith(("https://", "http://")):
        return (
            await ctx.api.download(text, folder=scratch, max_bytes=ctx.max_upload_bytes, budget=budget)
        ).path
    if text.startswith("data:") or (len(text) >= _MIN_BASE64_CHARS and _BASE64.match(text)):
        try:
            decoded = decode_data(text, max_bytes=ctx.max_upload_bytes)
        except DataError as err:
            raise InvalidParameterError(parameter, f"{err}.") from None
        path = scratch / filename_for(decoded.content_type)
        await anyio.Path(path).write_bytes(decoded.content)
        return path
    if _looks_like_path(text):
        if ctx.remote:
            raise InvalidParameterError(
                parameter,
                "this server is hosted, so it cannot read files on your computer; pass a URL or data.",
            )
        try:  # opened once, no links followed: what is checked is what is read
            local = await anyio.to_thread.run_sync(
                lambda: read_local_file(
                    text.removeprefix("file://"), root=ctx.upload_root, max_bytes=ctx.max_upload_bytes
                )
            )
        except LocalFileError as err:
            raise InvalidParameterError(parameter, err.message) from None
        path = scratch / local.name
        await anyio.Path(path).write_bytes(local.content)
        return path
    raise InvalidParameterError(
        parameter,
        f"{text[:80]!r} is not a picture reference. Give an https URL, a data: URI or base64, a prediction "
        "id or atlas-image:// URI from an earlier result, 'last', or (over stdio) an absolute file path.",
    )


async def _earlier_file(
    prediction_id: str, index: int, parameter: str, ctx: SourceContext, scratch: Path, budget: Budget
) -> Path:
    """An earlier output here: its saved copy, else its URL (from this session, else Atlas) fetched."""
    entry = await ctx.history.lookup(ctx.session, prediction_id)
    kept = entry.paths[index - 1] if entry is not None and 0 < index <= len(entry.paths) else None
    if kept and await anyio.Path(kept).is_file():
        return Path(kept)
    saved = find_saved(ctx.output_dir, prediction_id, index) if await ctx.owns(prediction_id) else None
    if saved is not None:  # only the copy of a picture this caller made
        return saved
    outputs = [url for url in entry.outputs if url.startswith(_FETCHABLE)] if entry is not None else []
    if len(outputs) < index:  # not in this session (or shown by resource URI): ask Atlas
        try:
            outputs = (await ctx.api.get_prediction(prediction_id)).outputs
        except AtlasError:
            outputs = []
    if not 0 < index <= len(outputs):
        raise InvalidParameterError(
            parameter, f"picture {index} of prediction {prediction_id} is not known here or at Atlas."
        )
    return (
        await ctx.api.download(
            outputs[index - 1], folder=scratch, max_bytes=ctx.max_upload_bytes, budget=budget
        )
    ).path


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "~", "file://")) or bool(PureWindowsPath(text).drive)


async def _is_local_file(text: str) -> bool:
    def check() -> bool:
        try:
            return Path(text.removeprefix("file://")).expanduser().is_file()
        except (OSError, RuntimeError, ValueError):  # too long, ~user unknown, a NUL character
            return False

    return await anyio.to_thread.run_sync(check)


class _NotBase64(Exception):
    """Text taken for base64 does not decode (it may be a path after all)."""


async def _earlier_output(prediction_id: str, index: int, parameter: str, ctx: SourceContext) -> str:
    """An earlier output's URL while it still answers; else its saved copy, uploaded again."""
    entry = await ctx.history.lookup(ctx.session, prediction_id)
    outputs = list(entry.outputs) if entry is not None else []
    unknown = False  # Atlas says there is no such prediction (a mistyped id, most likely)
    if not any(url.startswith(("http://", "https://")) for url in outputs):
        # not in this session, or shown by its resource URI (inline or offline outputs): ask Atlas
        try:
            outputs = (await ctx.api.get_prediction(prediction_id)).outputs
        except NotFoundError:
            outputs, unknown = [], entry is None
        except AtlasError:
            outputs = []  # gone at Atlas: the saved copy may still be here
    url = outputs[index - 1] if 0 < index <= len(outputs) else None
    if url is not None and url.startswith(("http://", "https://")) and await ctx.api.reachable(url):
        return url
    saved = find_saved(ctx.output_dir, prediction_id, index) if await ctx.owns(prediction_id) else None
    if saved is not None:
        data = await anyio.Path(saved).read_bytes()
        return await _upload_picture(data, saved.name, parameter, ctx, shown=f"The saved copy {saved}")
    if url is not None and url.startswith("data:"):
        return await _upload_data(url, parameter, ctx)
    if unknown:  # what get_prediction says, then why no picture of it can be used here either
        raise InvalidParameterError(
            parameter,
            f"{no_such_prediction(prediction_id)} No copy of it was saved here for you, so picture {index} "
            "of it is no longer available; pass the picture itself (a URL, base64 data or a file).",
            whole=True,
        )
    raise InvalidParameterError(
        parameter,
        f"picture {index} of prediction {prediction_id} is no longer available at Atlas and no copy was "
        "saved "
        "here. Generate it again, or pass the picture itself (a URL, base64 data or a file).",
    )


async def _upload_data(text: str, parameter: str, ctx: SourceContext, *, undecodable_ok: bool = False) -> str:
    try:
        decoded = decode_data(text, max_bytes=ctx.max_upload_bytes)
    except DataError as err:
        if undecodable_ok and len(text) * 3 // 4 <= ctx.max_upload_bytes:  # not a size refusal
            raise _NotBase64 from None
        raise InvalidParameterError(parameter, f"{err}.") from None
    name = filename_for(decoded.content_type)
    return await _upload_picture(decoded.content, name, parameter, ctx, shown="The data")


async def _upload_path(text: str, parameter: str, ctx: SourceContext) -> str:
    if ctx.remote:
        raise InvalidParameterError(
            parameter,
            "this server is hosted, so it cannot read files on your computer. Pass the picture as an https "
            "URL or as base64 data, or upload it with upload_media and pass its download_url.",
        )
    path_text = text.removeprefix("file://")
    try:  # read once, off the event loop: what is checked and sent is what was read
        local = await anyio.to_thread.run_sync(
            lambda: read_local_file(path_text, root=ctx.upload_root, max_bytes=ctx.max_upload_bytes)
        )
    except LocalFileError as err:
        raise InvalidParameterError(parameter, err.message) from None
    return await _upload_picture(local.content, local.name, parameter, ctx, shown=repr(path_text[:200]))


async def _upload_picture(data: bytes, name: str, parameter: str, ctx: SourceContext, *, shown: str) -> str:
    """Upload ``data`` once it is known to be a picture; ``shown`` names it in a refusal."""
    if len(data) > ctx.max_upload_bytes:
        raise InvalidParameterError(
            parameter,
            f"the picture is {len(data) / 1024 / 1024:.1f} MB, over the upload limit "
            f"({env_name('max_upload_mb')}).",
        )
    try:  # the one input check, as for upload_media
        picture = await anyio.to_thread.run_sync(check_input, data, ctx.max_pixels)
    except PictureError as err:
        raise InvalidParameterError(parameter, f"{shown} {err}.") from None
    if "." not in name:
        name = filename_for(picture.mime_type)
    if not ctx.upload:
        return f"{PENDING_UPLOAD}{name}"
    upload = await ctx.api.upload_media(data, name, max_bytes=ctx.max_upload_bytes)
    return upload.download_url
