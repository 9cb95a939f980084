"""Checking and shrinking pictures that came from outside: header first, then a bounded decode.

Blocking Pillow work (callers run it in a worker thread). Nothing is decoded before its header
says it is a picture in an accepted format (:data:`~atlas_image_mcp.constants.PICTURE_FORMATS`:
no EPS, PDF or other formats that run external programs or need unbounded memory) and within
the pixel cap; Pillow's own decompression-bomb guard is set from the same cap. A picture that
does not decode whole (a truncated JPEG, a corrupt PNG) is refused, so it is never saved,
previewed or served.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .constants import PICTURE_FORMATS, THUMBNAIL_SIZE
from .settings import env_name

__all__ = [
    "CheckedPicture",
    "InputPicture",
    "PictureError",
    "check_input",
    "examine",
    "open_picture",
    "sniff",
]


class PictureError(ValueError):
    """A file that is not an acceptable picture (the message completes "Image n ...")."""


@dataclass(frozen=True)
class CheckedPicture:
    """A checked picture on disk, plus its preview when one was made."""

    path: Path
    mime_type: str
    width: int
    height: int
    size: int
    preview: bytes | None = None
    preview_mime: str = "image/jpeg"
    preview_width: int | None = None
    preview_height: int | None = None


@dataclass(frozen=True)
class InputPicture:
    """What the one input check learned of a picture a caller gave (its header only)."""

    mime_type: str
    width: int
    height: int


def check_input(data: bytes, max_pixels: int) -> InputPicture:
    """The one check of a picture a caller gives any tool (``upload_media``, ``edit_image``...).

    Not empty, an accepted format by its content (never its name), within the pixel cap, from its
    header alone. Raises :class:`PictureError` (the message completes a sentence about the input).
    """
    from PIL import Image

    if not data:
        raise PictureError("is empty")
    with _open(io.BytesIO(data), max_pixels) as img:
        mime = Image.MIME.get(img.format or "") or "application/octet-stream"
        return InputPicture(mime_type=mime, width=img.width, height=img.height)


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def _open(source: Path | IO[bytes], max_pixels: int) -> Any:
    """The picture opened (header only), or :class:`PictureError` (not a picture, too many pixels)."""
    from PIL import Image, UnidentifiedImageError  # deferred: Pillow is ~10 ms of the stdio start-up

    # Pillow's own guard, a backstop to the check below (it raises at twice this number, and warns
    # above it: a warning made an error is caught too); its message names the pixels it counted
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        img = Image.open(source, formats=list(PICTURE_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = _BOMB_PIXELS.search(str(exc))
        size = f"{int(found.group(1)) / 1e6:.1f} million pixels" if found else "too many pixels"
        raise PictureError(f"has {size}{_LIMIT}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise PictureError(f"is not a picture in an accepted format ({', '.join(PICTURE_FORMATS)})") from exc
    pixels = img.width * img.height
    if pixels > max_pixels or img.width <= 0 or img.height <= 0:
        img.close()
        raise PictureError(f"is {img.width}x{img.height} ({pixels / 1e6:.1f} million pixels){_LIMIT}")
    return img


def open_picture(source: Path | IO[bytes], max_pixels: int) -> Any:
    """The picture at ``source``, opened (header read, nothing decoded) once it is an accepted format
    within the pixel cap; raises :class:`PictureError`. The caller closes it."""
    return _open(source, max_pixels)


_LIMIT = f", over the limit ({env_name('max_megapixels')}); it was not decoded"


def sniff(source: Path | bytes, max_pixels: int) -> str | None:
    """The media type of ``source`` when its content is an accepted picture (header only), else None."""
    from PIL import Image

    try:
        with _open(io.BytesIO(source) if isinstance(source, bytes) else source, max_pixels) as img:
            return Image.MIME.get(img.format or "")
    except PictureError:
        return None


def examine(path: Path, *, max_pixels: int, decode: bool, preview: bool) -> CheckedPicture:
    """Check the picture at ``path``: header, pixel cap, then (``decode``) a full decode.

    ``preview``: also make a thumbnail of at most :data:`THUMBNAIL_SIZE` px (implies a decode).
    Raises :class:`PictureError` for anything that is not a whole picture within the cap.
    """
    from PIL import Image

    size = path.stat().st_size
    with _open(path, max_pixels) as img:
        mime = Image.MIME.get(img.format or "") or "application/octet-stream"
        width, height = img.width, img.height
        if not (decode or preview):
            return CheckedPicture(path=path, mime_type=mime, width=width, height=height, size=size)
        try:
            if preview:
                img.draft("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))  # fast JPEG downscale while decoding
            img.load()
            shown = _thumbnail(img) if preview else None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, MemoryError) as exc:
            raise PictureError(f"does not decode as a whole picture ({_reason(exc)})") from exc
    if shown is None:
        return CheckedPicture(path=path, mime_type=mime, width=width, height=height, size=size)
    data, preview_mime, preview_size = shown
    return CheckedPicture(
        path=path,
        mime_type=mime,
        width=width,
        height=height,
        size=size,
        preview=data,
        preview_mime=preview_mime,
        preview_width=preview_size[0],
        preview_height=preview_size[1],
    )


def _thumbnail(img: Any) -> tuple[bytes, str, tuple[int, int]]:
    """JPEG, or PNG when there is transparency, at most :data:`THUMBNAIL_SIZE` px on its long side."""
    from PIL import Image

    img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img.save(out, format="PNG", optimize=True)
        return out.getvalue(), "image/png", img.size
    img.convert("RGB").save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue(), "image/jpeg", img.size


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:120]
