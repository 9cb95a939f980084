"""Saving output pictures to disk: server-built names, atomic writes, absolute paths.

A file name is ``<prediction_id>-<n>.<ext>``; the caller never supplies a path. Each file is
written to a temporary name in the same folder and renamed into place, so a partially written
picture never appears under its final name (not even if the process is killed mid-write).
"""

from __future__ import annotations

import atexit
import os
import re
import tempfile
import threading
from pathlib import Path

import anyio

from .errors import AtlasError

__all__ = ["SaveError", "extension_for", "find_saved", "output_path", "save_atomic"]

_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "image/bmp": "bmp",
}


class SaveError(AtlasError):
    """A picture could not be written to the output folder."""


def extension_for(content_type: str, url: str = "") -> str:
    """File extension from the content type, else from the URL, else ``png``."""
    ext = _EXTENSIONS.get(content_type.split(";")[0].strip().lower())
    if ext:
        return ext
    match = re.search(r"\.(jpe?g|png|webp|gif|avif|bmp)(?:$|[?#])", url.lower())
    if match:
        return "jpg" if match.group(1).startswith("jp") else match.group(1)
    return "png"


def output_path(folder: Path, prediction_id: str, index: int, ext: str) -> Path:
    """``folder/<prediction_id>-<index>.<ext>``, refusing ids that could escape the folder."""
    if not _SAFE_ID.match(prediction_id):
        raise SaveError(f"Refusing to save: {prediction_id[:80]!r} is not a safe prediction id.")
    return folder / f"{prediction_id}-{index}.{ext}"


def find_saved(folder: Path, prediction_id: str, index: int) -> Path | None:
    """The picture :func:`output_path` named for this output, whatever its extension, if saved."""
    if not _SAFE_ID.match(prediction_id):
        return None
    try:
        return next(iter(sorted(folder.glob(f"{prediction_id}-{index}.*"))), None)
    except OSError:
        return None


# Temporary files being written right now. A write runs in a worker thread that does not outlive
# the interpreter, so whatever is still listed at exit is removed then (see _remove_pending).
_pending: set[str] = set()
_pending_lock = threading.Lock()


def _remove_pending() -> None:
    with _pending_lock:
        leftovers = list(_pending)
        _pending.clear()
    for tmp in leftovers:
        try:
            os.unlink(tmp)
        except OSError:
            pass


atexit.register(_remove_pending)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    with _pending_lock:
        _pending.add(tmp)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a saved picture is an ordinary user file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        with _pending_lock:
            _pending.discard(tmp)
    return path.resolve()


async def save_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (in a worker thread); return the absolute path."""
    try:
        return await anyio.to_thread.run_sync(_write, path, data)
    except OSError as exc:
        raise SaveError(
            f"Could not save the picture to {str(path.parent)!r}: {exc.strerror or exc}. Set "
            "ATLAS_MCP_OUTPUT_DIR to a writable folder, or pass save=false."
        ) from exc
