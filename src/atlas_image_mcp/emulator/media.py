"""Uploaded media (``POST /api/v1/model/uploadMedia``), kept in memory and served back by URL.

The original file name and its extension are kept: the real service classifies files by
extension and models check the URL's extension (docs/atlas-api.md, uploads).
"""

from __future__ import annotations

import mimetypes
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import PurePosixPath

__all__ = ["MediaFile", "MediaStore", "media_kind", "safe_filename"]

_KINDS: dict[str, frozenset[str]] = {
    "image": frozenset(
        {"png", "jpg", "jpeg", "webp", "gif", "bmp", "avif", "heic", "heif", "svg", "tif", "tiff"}
    ),
    "video": frozenset({"mp4", "mov", "webm", "mkv", "avi", "m4v"}),
    "audio": frozenset({"mp3", "wav", "m4a", "aac", "ogg", "flac", "opus"}),
}
_EXTRA_TYPES = {
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".opus": "audio/opus",
    ".m4a": "audio/mp4",
    ".mkv": "video/x-matroska",
    ".md": "text/markdown",
}


def safe_filename(name: str | None) -> str:
    """The last path component of a client-supplied file name (``upload`` when there is none)."""
    base = PurePosixPath((name or "").replace("\\", "/")).name.strip()
    return base or "upload"


def media_kind(filename: str) -> str:
    """``image`` / ``video`` / ``audio`` / ``file``, by extension."""
    extension = PurePosixPath(filename).suffix.lower().lstrip(".")
    for kind, extensions in _KINDS.items():
        if extension in extensions:
            return kind
    return "file"


def content_type_for(filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


@dataclass(frozen=True)
class MediaFile:
    id: str
    filename: str
    content: bytes = field(repr=False)

    @property
    def kind(self) -> str:
        return media_kind(self.filename)

    @property
    def content_type(self) -> str:
        return content_type_for(self.filename)


class MediaStore:
    """Uploaded files by id."""

    def __init__(self) -> None:
        self._files: dict[str, MediaFile] = {}
        self._lock = threading.Lock()

    def add(self, filename: str, content: bytes) -> MediaFile:
        media = MediaFile(id=uuid.uuid4().hex, filename=safe_filename(filename), content=content)
        with self._lock:
            self._files[media.id] = media
        return media

    def get(self, media_id: str) -> MediaFile | None:
        return self._files.get(media_id)

    def __len__(self) -> int:
        return len(self._files)

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
