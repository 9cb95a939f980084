"""Small real pictures, and broken or hostile ones, made with Pillow for the tests and the benchmark."""

from __future__ import annotations

import base64
import io
import struct
import zlib

__all__ = ["bomb_png", "jpeg", "noise_png", "png", "png_b64", "truncated_jpeg"]


def png(
    width: int = 2, height: int = 2, color: tuple[int, int, int] = (200, 30, 30), text: str = ""
) -> bytes:
    """A real PNG; ``text`` goes into a tEXt chunk (a canary that must never be shown)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: about ``width * height`` bytes."""
    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((width, height), 128).save(out, format="PNG")
    return out.getvalue()


def png_b64(width: int = 2, height: int = 2) -> str:
    return base64.b64encode(png(width, height)).decode()


def jpeg(width: int = 64, height: int = 64) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def truncated_jpeg(width: int = 256, height: int = 256) -> bytes:
    """A JPEG whose header is whole but whose picture data stops half way."""
    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((width, height), 64).convert("RGB").save(out, format="JPEG", quality=95)
    data = out.getvalue()
    return data[: len(data) // 2]


def bomb_png(width: int, height: int) -> bytes:
    """A PNG that says it is ``width`` x ``height`` (grey, 1 byte a pixel) and is tiny on the wire.

    Built by hand, row by row through one zlib stream, so making it never holds the pixels.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + one grey byte per pixel
    parts = [packer.compress(row) for _ in range(height)]
    parts.append(packer.flush())
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )
