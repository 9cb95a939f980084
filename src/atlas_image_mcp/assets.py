"""Pictures made to measure: an exact size (cropped or padded), a chosen format and quality, icons.

Blocking Pillow work: callers run it in a worker thread, within the process's decode limiter. The
source is opened through :func:`~atlas_image_mcp.pictures.open_picture` (accepted formats, pixel
cap) and the asset asked for is within the same cap.

* ``cover`` scales the picture to cover the size and crops the overflow evenly; ``contain`` scales
  it to fit inside and pads the rest with the background (transparent where the format keeps
  transparency, else white, unless a colour is given).
* The format is PNG, JPEG, WebP, or AVIF when this Pillow can write it (:func:`writable_formats`);
  ICO for icons. A picture asked for at its own size and in its own format is passed through
  untouched (no second compression).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .pictures import PictureError, open_picture

__all__ = [
    "FAVICON_SIZES",
    "Asset",
    "AssetSpec",
    "Fit",
    "IconSpec",
    "extension_of",
    "format_of_extension",
    "make_asset",
    "make_assets",
    "mime_of",
    "parse_color",
    "parse_size",
    "writable_formats",
]

Fit = Literal["cover", "contain"]


@dataclass(frozen=True)
class _Format:
    pillow: str
    mime: str
    extensions: tuple[str, ...]
    alpha: bool


_FORMATS = {
    "png": _Format("PNG", "image/png", ("png",), True),
    "jpeg": _Format("JPEG", "image/jpeg", ("jpg", "jpeg"), False),
    "webp": _Format("WEBP", "image/webp", ("webp",), True),
    "avif": _Format("AVIF", "image/avif", ("avif",), True),
    "ico": _Format("ICO", "image/x-icon", ("ico",), True),
}
_BY_PILLOW = {spec.pillow: name for name, spec in _FORMATS.items()}
#: The sizes inside a favicon.ico.
FAVICON_SIZES = (16, 32, 48, 64)
_DEFAULT_QUALITY = {"jpeg": 90, "webp": 90, "avif": 75}
_MAX_SIDE = 16384
_ORIENTATION = 0x0112  # the EXIF tag


def writable_formats(*, icons: bool = False) -> tuple[str, ...]:
    """The formats assets may be written in here (AVIF only where this Pillow has it)."""
    from PIL import features  # deferred: Pillow is ~10 ms of the stdio start-up

    names = ["png", "jpeg", "webp"]
    if features.check("avif"):
        names.append("avif")
    if icons:
        names.append("ico")
    return tuple(names)


def format_of_extension(extension: str) -> str | None:
    """``jpeg`` for ``jpg``; None for an extension that names no format written here."""
    ext = extension.lower().lstrip(".")
    return next((name for name, spec in _FORMATS.items() if ext in spec.extensions), None)


def extension_of(format_name: str) -> str:
    return _FORMATS[format_name].extensions[0]


def mime_of(format_name: str) -> str:
    return _FORMATS[format_name].mime


def parse_size(text: str) -> tuple[int, int]:
    """``(1200, 630)`` for ``"1200x630"`` (also ``1200*630``, ``1200×630``); ValueError otherwise."""
    cleaned = text.strip().lower().replace("×", "x").replace("*", "x")
    width, sep, height = cleaned.partition("x")
    if not (sep and width.strip().isdigit() and height.strip().isdigit()):
        raise ValueError(f"{text[:40]!r} is not a size like '1200x630'")
    w, h = int(width), int(height)
    if not (1 <= w <= _MAX_SIDE and 1 <= h <= _MAX_SIDE):
        raise ValueError(f"{text[:40]!r}: each side must be 1 to {_MAX_SIDE} px")
    return w, h


def parse_color(text: str) -> tuple[int, int, int, int]:
    """An RGBA colour from ``#rgb``, ``#rrggbb``, ``#rrggbbaa``, a CSS name or ``transparent``."""
    from PIL import ImageColor

    name = text.strip().lower()
    if name == "transparent":
        return (0, 0, 0, 0)
    try:
        color = ImageColor.getrgb(name)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a colour like '#ffffff', 'white' or 'transparent'") from None
    return (color[0], color[1], color[2], color[3] if len(color) == 4 else 255)


@dataclass(frozen=True)
class AssetSpec:
    """What to make of a picture: its size and fit, its format and quality, the padding colour."""

    size: tuple[int, int] | None = None
    fit: Fit = "cover"
    #: RGBA; None: transparent where the format keeps it, else white.
    background: tuple[int, int, int, int] | None = None
    #: A name of :data:`_FORMATS`; None: the picture's own format.
    format: str | None = None
    quality: int | None = None


@dataclass(frozen=True)
class Asset:
    """A finished asset: its bytes, media type and size."""

    data: bytes
    mime_type: str
    width: int
    height: int
    format: str


def _load(source: Path | bytes, max_pixels: int) -> Any:
    """The picture decoded, turned upright by its EXIF orientation (keeping its format's name)."""
    from PIL import Image, ImageOps

    img = open_picture(io.BytesIO(source) if isinstance(source, bytes) else source, max_pixels)
    try:
        img.load()
        if img.getexif().get(_ORIENTATION, 1) == 1:
            return img
        turned = ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, MemoryError) as exc:
        img.close()
        raise PictureError(
            f"does not decode as a whole picture ({str(exc)[:120] or type(exc).__name__})"
        ) from exc
    img.close()
    return turned


def _sized(img: Any, spec: AssetSpec, background: tuple[int, int, int, int]) -> Any:
    from PIL import Image, ImageOps

    if spec.size is None or img.size == spec.size:
        return img
    if spec.fit == "cover":
        return ImageOps.fit(img, spec.size, method=Image.Resampling.LANCZOS)
    fitted = ImageOps.contain(img.convert("RGBA"), spec.size, method=Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", spec.size, background)
    canvas.alpha_composite(fitted, ((spec.size[0] - fitted.width) // 2, (spec.size[1] - fitted.height) // 2))
    return canvas


def _encoded(img: Any, name: str, quality: int | None, background: tuple[int, int, int, int]) -> bytes:
    from PIL import Image

    fmt = _FORMATS[name]
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha and not fmt.alpha:  # JPEG: laid on the background
        flat = Image.new("RGBA", img.size, background[:3] + (255,))
        flat.alpha_composite(img.convert("RGBA"))
        img = flat.convert("RGB")
    elif name != "png" and img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if has_alpha else "RGB")
    options: dict[str, Any] = {}
    if name in _DEFAULT_QUALITY:
        options["quality"] = quality if quality is not None else _DEFAULT_QUALITY[name]
    out = io.BytesIO()
    img.save(out, format=fmt.pillow, **options)
    return out.getvalue()


@dataclass(frozen=True)
class IconSpec:
    """A multi-size ICO: each size a centred square crop of the picture."""

    sizes: tuple[int, ...] = FAVICON_SIZES


def make_asset(source: Path | bytes, spec: AssetSpec, *, max_pixels: int) -> Asset:
    """The asset ``spec`` asks for, made from the picture at ``source`` (raises :class:`PictureError`)."""
    return make_assets(source, [spec], max_pixels=max_pixels)[0]


def make_assets(
    source: Path | bytes, wanted: Sequence[AssetSpec | IconSpec], *, max_pixels: int
) -> list[Asset]:
    """Each asset of ``wanted``, from one decode of the picture at ``source`` (or :class:`PictureError`)."""
    img = _load(source, max_pixels)
    try:
        return [
            _icon(img, spec) if isinstance(spec, IconSpec) else _asset(img, spec, source, max_pixels)
            for spec in wanted
        ]
    finally:
        img.close()


def _asset(img: Any, spec: AssetSpec, source: Path | bytes, max_pixels: int) -> Asset:
    own = _BY_PILLOW.get(img.format or "")
    name = spec.format or own or "png"
    if spec.size is not None and spec.size[0] * spec.size[1] > max_pixels:
        raise PictureError(f"would be {spec.size[0]}x{spec.size[1]} px, over the pixel limit")
    if (spec.size is None or spec.size == img.size) and name == own and spec.quality is None:
        data = source if isinstance(source, bytes) else source.read_bytes()
        return Asset(data, _FORMATS[name].mime, img.width, img.height, name)
    background = spec.background or ((0, 0, 0, 0) if _FORMATS[name].alpha else (255, 255, 255, 255))
    made = _sized(img, spec, background)
    data = _encoded(made, name, spec.quality, background)
    return Asset(data, _FORMATS[name].mime, made.width, made.height, name)


def _icon(img: Any, spec: IconSpec) -> Asset:
    from PIL import Image, ImageOps

    largest = max(spec.sizes)
    square = ImageOps.fit(img.convert("RGBA"), (largest, largest), method=Image.Resampling.LANCZOS)
    out = io.BytesIO()
    square.save(out, format="ICO", sizes=[(s, s) for s in spec.sizes])
    return Asset(out.getvalue(), _FORMATS["ico"].mime, largest, largest, "ico")
