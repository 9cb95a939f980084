"""Files and inline data on their way in: upload checks and ``data:`` URI decoding, in one place.

* :func:`upload_source` checks what ``upload_media`` is asked to send (a local file or bytes)
  before anything goes on the network, and returns a reopenable stream.
* :func:`decode_data` reads what a client sends as base64 or a ``data:...;base64,`` URI.
* :func:`resolve_local_path` turns a client's path into a checked absolute path, inside an
  allowed root when one is set.
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import IO

from .errors import LocalFileError
from .settings import env_name

__all__ = [
    "DataError",
    "DecodedData",
    "UploadSource",
    "decode_data",
    "filename_for",
    "resolve_local_path",
    "safe_filename",
    "upload_source",
]

_UNSAFE_NAME_CHARS = '<>:"|?*'
_FALLBACK_NAME = "upload.bin"


@dataclass(frozen=True)
class UploadSource:
    """What will be uploaded: a file name (with extension), its size, and how to open it."""

    name: str
    size: int
    content_type: str
    open: Callable[[], IO[bytes]]


@dataclass(frozen=True)
class DecodedData:
    """Bytes decoded from base64 or a ``data:`` URI, with the media type it declared (if any)."""

    content: bytes
    content_type: str | None


def safe_filename(name: str) -> str:
    """The last path component, without control characters; keeps the extension."""
    base = re.split(r"[\\/]", name.strip())[-1]
    base = "".join(c for c in base if c.isprintable() and c not in _UNSAFE_NAME_CHARS).strip(" .")
    return base[:200] or _FALLBACK_NAME


def _size_message(size: int, max_bytes: int) -> str:
    return (
        f"The file is {size / 1024 / 1024:.1f} MB, over the {max_bytes / 1024 / 1024:.0f} MB upload limit "
        f"({env_name('max_upload_mb')}). Use a smaller file."
    )


def upload_source(source: str | Path | bytes, filename: str | None, max_bytes: int | None) -> UploadSource:
    """Check the bytes or file to upload before anything is sent; the file is opened only to send it."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        name = safe_filename(filename or _FALLBACK_NAME)
        if not data:
            raise LocalFileError("The data to upload is empty.")
        if max_bytes is not None and len(data) > max_bytes:
            raise LocalFileError(_size_message(len(data), max_bytes))
        return UploadSource(name, len(data), _content_type(name), lambda: io.BytesIO(data))
    path = Path(source)
    shown = str(path)
    if not path.exists():
        raise LocalFileError(f"No file at {shown!r}. Give the absolute path of an existing file.", path=shown)
    if path.is_dir():
        raise LocalFileError(f"{shown!r} is a directory, not a file. Give the path of one file.", path=shown)
    if not path.is_file():
        raise LocalFileError(f"{shown!r} is not a regular file (device, pipe or socket).", path=shown)
    size = path.stat().st_size
    if size == 0:
        raise LocalFileError(f"{shown!r} is empty; there is nothing to upload.", path=shown)
    if max_bytes is not None and size > max_bytes:
        raise LocalFileError(_size_message(size, max_bytes), path=shown)
    name = safe_filename(filename or path.name)
    return UploadSource(name, size, _content_type(name), lambda: path.open("rb"))


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class DataError(ValueError):
    """Inline data that cannot be decoded (the message ends a sentence about what was given)."""


def decode_data(text: str, *, max_bytes: int | None = None) -> DecodedData:
    """Bytes from a ``data:...;base64,`` URI or bare base64, with the media type the URI declared.

    A ``data:`` URI without ``;base64`` is refused (clients send pictures that way; outputs Atlas
    returns inline are read by :mod:`atlas_image_mcp.fetch`). Raises :class:`DataError`, also when
    the decoded size would exceed ``max_bytes``.
    """
    text = text.strip()
    content_type = None
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or ";base64" not in header:
            raise DataError("is not a data URI like data:image/png;base64,....")
        content_type = header[5:].split(";")[0] or None
    if max_bytes is not None and len(text) * 3 // 4 > max_bytes:
        raise DataError(f"is larger than {max_bytes // (1024 * 1024)} MB")
    try:
        content = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise DataError("is not valid base64 (or a data:...;base64, URI)") from None
    return DecodedData(content=content, content_type=content_type)


def filename_for(content_type: str | None) -> str:
    """``upload.<ext>`` for a media type (``upload.bin`` when unknown)."""
    ext = (mimetypes.guess_extension(content_type) if content_type else None) or ".bin"
    return f"upload{'.jpg' if ext == '.jpe' else ext}"


def resolve_local_path(file_path: str, *, root: Path | None) -> Path:
    """``file_path`` as an absolute, existing path (``..`` and links resolved), inside ``root`` if set."""
    try:
        raw = Path(file_path).expanduser()
    except RuntimeError:  # "~user" of a user that does not exist
        raise LocalFileError(
            f"No file at {file_path[:200]!r}: its home folder is unknown.", path=file_path
        ) from None
    if not raw.is_absolute():
        hint = " (a Windows path cannot be read by this server)" if PureWindowsPath(file_path).drive else ""
        raise LocalFileError(
            f"file_path must be an absolute path{hint}; got {file_path[:200]!r}.", path=file_path
        )
    try:
        resolved = raw.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # ValueError: a NUL character in the path
        expanded = f" ({str(raw)[:200]})" if str(raw) != file_path else ""  # where ~ led, on this server
        raise LocalFileError(
            f"No file at {file_path[:200]!r}{expanded}. Give the absolute path of an existing file."
        ) from None
    if root is not None and not resolved.is_relative_to(root):
        raise LocalFileError(
            f"{file_path[:200]!r} is outside the folder this server may read ({env_name('upload_root')})."
        )
    return resolved
