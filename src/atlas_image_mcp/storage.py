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

from .errors import SaveError
from .settings import env_name

__all__ = [
    "PartialFiles",
    "extension_for",
    "find_saved",
    "output_path",
    "partial_files",
    "place_atomic",
    "save_atomic",
    "write_atomic",
]

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


class PartialFiles:
    """Temporary files being written right now.

    A write runs in a worker thread that does not outlive the interpreter, so whatever is still
    listed at exit is removed then (:meth:`remove_all` is registered with :mod:`atexit`).
    """

    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._lock = threading.Lock()

    def add(self, path: str) -> None:
        with self._lock:
            self._paths.add(path)

    def discard(self, path: str) -> None:
        with self._lock:
            self._paths.discard(path)

    def __len__(self) -> int:
        return len(self._paths)

    def remove_all(self) -> None:
        """Delete every file still listed (and forget them)."""
        with self._lock:
            leftovers = list(self._paths)
            self._paths.clear()
        for tmp in leftovers:
            try:
                os.unlink(tmp)
            except OSError:
                pass


#: The files this process is writing; emptied (and deleted) at exit.
partial_files = PartialFiles()
atexit.register(partial_files.remove_all)


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed into place; return the absolute path.

    Blocking: call it from a worker thread (:func:`save_atomic` does).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    partial_files.add(tmp)
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
        partial_files.discard(tmp)
    return path.resolve()


async def save_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (in a worker thread); return the absolute path."""
    try:
        return await anyio.to_thread.run_sync(write_atomic, path, data)
    except OSError as exc:
        raise save_error(path.parent, exc) from exc


def save_error(folder: Path, exc: OSError) -> SaveError:
    """The error for a picture that could not be written into ``folder``, with what to do about it."""
    return SaveError(
        f"Could not save the picture to {str(folder)!r}: {exc.strerror or exc}. Set "
        f"{env_name('output_dir')} to a writable folder, or pass save=false."
    )


async def place_atomic(finished: Path, path: Path) -> Path:
    """Rename ``finished`` (a complete file written beside ``path``) into place; return the absolute path."""

    def place() -> Path:
        try:
            os.chmod(finished, 0o644)  # mkstemp makes 0600; a saved picture is an ordinary user file
            os.replace(finished, path)
        finally:
            partial_files.discard(str(finished))
        return path.resolve()

    try:
        return await anyio.to_thread.run_sync(place)
    except OSError as exc:
        raise save_error(path.parent, exc) from exc
