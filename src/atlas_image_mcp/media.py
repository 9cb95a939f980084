"""Files and inline data on their way in: reading a local file, decoding ``data:`` URIs, in one place.

* :func:`read_local_file` reads a file a client names, for every tool that takes one: opened once,
  without following a link swapped in (walked from ``ATLAS_MCP_UPLOAD_ROOT`` when it is set),
  checked on the opened descriptor (a regular file, not empty, within the upload cap), never
  blocking on a pipe. What is checked and sent is what was read.
* :func:`upload_source` checks what the client's ``upload_media`` is asked to send (bytes, or a path
  for callers of the client itself) before anything goes on the network.
* :func:`decode_data` reads what a client sends as base64 or a ``data:...;base64,`` URI.
* :func:`resolve_local_path` turns a client's path into a checked absolute path, inside an
  allowed root when one is set.
"""

from __future__ import annotations

import base64
import binascii
import errno
import io
import mimetypes
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import IO

from .errors import LocalFileError
from .settings import env_name

__all__ = [
    "DataError",
    "DecodedData",
    "LocalFile",
    "UploadSource",
    "decode_data",
    "filename_for",
    "read_local_file",
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


@dataclass(frozen=True)
class LocalFile:
    """A local file as it was read: its own name and every byte of it."""

    name: str
    content: bytes


#: Opening the file itself: never through a link, never waiting for a writer (a pipe), not inherited.
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = (
    os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)
_READ_CHUNK = 1024 * 1024


def read_local_file(file_path: str, *, root: Path | None, max_bytes: int) -> LocalFile:
    """Read the file at ``file_path`` once, inside ``root`` when set; raise :class:`LocalFileError`.

    Blocking (call it from a worker thread). The path is resolved and checked first (for the plain
    messages of :func:`resolve_local_path`); then it is opened once, component by component from
    ``root`` without following links, so a file swapped for a link or a pipe after the check is
    refused, never read; the opened descriptor must be a regular, non-empty file within
    ``max_bytes``, and what is returned is what was read from it.
    """
    path = resolve_local_path(file_path, root=root)
    shown = repr(file_path[:200])
    fd = _open_inside(path, root, shown)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise LocalFileError(
                f"{shown} is a directory, not a file. Give the path of one file.", path=str(path)
            )
        if not stat.S_ISREG(info.st_mode):
            raise LocalFileError(f"{shown} is not a regular file (device, pipe or socket).", path=str(path))
        if info.st_size == 0:  # also what /proc and /sys files report, whatever they would give
            raise LocalFileError(f"{shown} is empty; there is nothing to upload.", path=str(path))
        if info.st_size > max_bytes:
            raise LocalFileError(_size_message(info.st_size, max_bytes), path=str(path))
        content = _read(fd, max_bytes + 1, shown)
    finally:
        os.close(fd)
    if not content:
        raise LocalFileError(f"{shown} is empty; there is nothing to upload.", path=str(path))
    if len(content) > max_bytes:  # it grew while it was read
        raise LocalFileError(_size_message(len(content), max_bytes), path=str(path))
    return LocalFile(name=path.name, content=content)


def _open_inside(path: Path, root: Path | None, shown: str) -> int:
    """A descriptor of ``path``, opened without following any link below ``root``."""
    try:
        if root is None or os.open not in os.supports_dir_fd:
            return os.open(path, _FILE_FLAGS)
        parts = path.relative_to(root).parts
        folder = os.open(root, _DIR_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))  # the operator's own folder
        try:
            for part in parts[:-1]:
                inner = os.open(part, _DIR_FLAGS, dir_fd=folder)
                os.close(folder)
                folder = inner
            if not parts:
                return os.open(".", _FILE_FLAGS, dir_fd=folder)
            return os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
        finally:
            os.close(folder)
    except OSError as exc:
        raise _open_error(exc, shown, path) from None


def _open_error(exc: OSError, shown: str, path: Path) -> LocalFileError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return LocalFileError(
            f"{shown} changed while it was being opened (a link or another kind of file took its place), "
            "so it was not read.",
            path=str(path),
        )
    if exc.errno == errno.ENOENT:
        return LocalFileError(
            f"No file at {shown}. Give the absolute path of an existing file.", path=str(path)
        )
    if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket
        return LocalFileError(f"{shown} is not a regular file (device, pipe or socket).", path=str(path))
    return LocalFileError(f"{shown} could not be opened ({exc.strerror or exc}).", path=str(path))


def _read(fd: int, limit: int, shown: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = os.read(fd, min(_READ_CHUNK, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise LocalFileError(f"{shown} could not be read ({exc.strerror or exc}).") from None
    return b"".join(chunks)
