"""Pillow drawing of the emulator's output pictures.

A picture is a pure function of (prompt, seed, size, model, index): a two-colour gradient with a
soft glow, a few translucent shapes, the prompt word-wrapped on a panel in the centre and a small
footer naming the emulator, model and seed. Same inputs give byte-identical bytes (JPEG or PNG).
The most recent 64 renders are cached. Rendering is CPU work: call it from a worker thread
(``anyio.to_thread.run_sync``), not on the event loop.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

__all__ = ["JPEG_QUALITY", "encode", "picture_size", "render_avatar_png", "render_edit", "render_picture"]

JPEG_QUALITY = 90
_CACHE_SIZE = 64
_ELLIPSIS = "…"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGB = tuple[int, int, int]


def encode(image: Image.Image, output_format: str) -> bytes:
    """``image`` as ``output_format`` ("jpeg" or "png") bytes."""
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


@lru_cache(maxsize=_CACHE_SIZE)
def render_picture(
    prompt: str, seed: int, width: int, height: int, model: str, index: int = 0, output_format: str = "jpeg"
) -> bytes:
    """The encoded bytes of one output picture (cached)."""
    return encode(draw_picture(prompt, seed, width, height, model, index), output_format)


@lru_cache(maxsize=16)
def render_avatar_png(name: str) -> bytes:
    """A small square avatar for a catalogue entry."""
    first, second = _palette(random.Random(name))[:2]
    return encode(_gradient(64, 64, first, second), "png")


def picture_size(data: bytes) -> tuple[int, int] | None:
    """The size of an encoded picture, or None when it is not one Pillow reads."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            return int(width), int(height)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def render_edit(
    sources: list[bytes | None],
    mask: bytes | None,
    prompt: str,
    seed: int,
    width: int,
    height: int,
    model: str,
    kind: str,
    index: int = 0,
    output_format: str = "jpeg",
    top: int = 0,
) -> bytes:
    """The encoded bytes of an edited picture (see :func:`draw_edit`)."""
    image = draw_edit(sources, mask, prompt, seed, width, height, model, kind, index, top)
    return encode(image, output_format)


def banner_text(kind: str, prompt: str) -> str:
    """What an edit's banner says: ``EDIT: <instruction>`` (``VARIATION``, ``INPAINT``)."""
    label = {"variation": "VARIATION", "inpaint": "INPAINT"}.get(kind, "EDIT")
    return f"{label}: {prompt}" if prompt else label


def banner_height(width: int, height: int, text: str) -> int:
    """The height in pixels of the banner :func:`draw_edit` draws with ``text`` on a picture of that size."""
    draw = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    return _banner_layout(draw, width, height, text)[3]


def banner_top_after(source_rows: int, source_size: tuple[int, int], size: tuple[int, int]) -> int:
    """Where a banner goes in a picture of ``size`` made from a source of ``source_size`` whose first
    ``source_rows`` rows carry banners already: the row below them, as the source is fitted (scaled
    and centre-cropped, like :func:`draw_edit` does); 0 when they are cropped away."""
    (sw, sh), (w, h) = source_size, size
    if source_rows <= 0 or sw <= 0 or sh <= 0:
        return 0
    if sw / sh > w / h:  # wider: the sides are cropped, rows map by height
        scale, cropped_top = h / sh, 0.0
    else:  # taller: the top and bottom are cropped
        scale = w / sw
        cropped_top = (sh * scale - h) / 2
    return max(0, min(h - 1, round(source_rows * scale - cropped_top)))


def draw_edit(
    sources: list[bytes | None],
    mask: bytes | None,
    prompt: str,
    seed: int,
    width: int,
    height: int,
    model: str,
    kind: str,
    index: int = 0,
    top: int = 0,
) -> Image.Image:
    """An edit a person recognises as one: the input picture(s), changed, with the instruction on top
    (below ``top``, the rows of the banners an edited source carries already, so an edit of an edit
    shows both instructions).

    * edit: the source, tinted in a colour of the seed, with a banner "EDIT: <instruction>";
    * multi-edit: the references side by side, the same banner;
    * inpaint: the source, with the mask's white area visibly repainted (stripes in the seed's
      colours) and its outline drawn;
    * variation: the source mirrored and hue-shifted per output, with a "VARIATION" banner.

    A source the emulator cannot read (not one of its own outputs or uploads) is drawn as a grey
    panel saying so.
    """
    rng = random.Random(hashlib.sha256(f"{prompt}\x00{seed}\x00{index}".encode()).digest())
    palette = _palette(rng)
    pictures = [_open(data, width, height) for data in (sources or [None])]
    if kind == "multi-edit" and len(pictures) > 1:
        base = _side_by_side(pictures, width, height)
    else:
        base = pictures[0]
    if kind == "variation":
        base = _vary(base, index)
    elif kind == "inpaint":
        base = _repaint(base, _open_mask(mask, width, height), palette)
    else:
        tint = Image.new("RGB", (width, height), palette[index % len(palette)])
        base = Image.blend(base, tint, 0.22)
    image = base.convert("RGBA")
    image = Image.alpha_composite(image, _banner(width, height, banner_text(kind, prompt), top))
    image = Image.alpha_composite(image, _footer(width, height, model, seed))
    return image.convert("RGB")


def _open(data: bytes | None, width: int, height: int) -> Image.Image:
    if data is not None:
        try:
            with Image.open(io.BytesIO(data)) as img:
                return ImageOps.fit(img.convert("RGB"), (width, height), Image.Resampling.BILINEAR)
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    panel = Image.new("RGB", (width, height), (96, 96, 104))
    draw = ImageDraw.Draw(panel)
    font = _font(max(12, round(min(width, height) / 20)))
    draw.text((width / 20, height / 20), "source picture not readable by the emulator", font=font)
    return panel


def _open_mask(data: bytes | None, width: int, height: int) -> Image.Image:
    if data is not None:
        try:
            with Image.open(io.BytesIO(data)) as img:
                mask: Image.Image = img.convert("L").resize((width, height), Image.Resampling.NEAREST)
                return mask
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    return Image.new("L", (width, height), 0)


def _side_by_side(pictures: list[Image.Image], width: int, height: int) -> Image.Image:
    strip = Image.new("RGB", (width, height))
    step = width / len(pictures)
    for n, picture in enumerate(pictures):
        left, right = round(n * step), round((n + 1) * step)
        strip.paste(ImageOps.fit(picture, (max(1, right - left), height)), (left, 0))
    return strip


def _vary(base: Image.Image, index: int) -> Image.Image:
    shifted = base.convert("HSV")
    h, s, v = shifted.split()
    h = h.point(lambda value: (value + 40 * (index + 1)) % 256)
    varied = Image.merge("HSV", (h, s, v)).convert("RGB")
    return ImageOps.mirror(varied) if index % 2 == 0 else varied


def _repaint(base: Image.Image, mask: Image.Image, palette: list[RGB]) -> Image.Image:
    width, height = base.size
    stripes = Image.new("RGB", (width, height), palette[0])
    draw = ImageDraw.Draw(stripes)
    step = max(8, min(width, height) // 16)
    for x in range(-height, width, step * 2):
        draw.polygon(
            [(x, 0), (x + step, 0), (x + step + height, height), (x + height, height)], fill=palette[2]
        )
    selected = mask.point(lambda value: 255 if value >= 128 else 0)
    painted = Image.composite(stripes, base, selected)
    outline = selected.filter(ImageFilter.FIND_EDGES)
    return Image.composite(Image.new("RGB", (width, height), (255, 255, 255)), painted, outline)


def _banner_layout(
    draw: ImageDraw.ImageDraw, width: int, height: int, text: str
) -> tuple[Font, list[str], int, int]:
    """The banner's font, lines, line height and band height for ``text`` on a picture of that size."""
    size = max(12, round(min(width, height) / 18))
    font = _font(size)
    line_height = round(size * 1.3)
    max_width = width * 0.9
    lines = _fit_lines(draw, _wrap(draw, _safe_text(draw, text, font), font, max_width), font, max_width, 3)
    return font, lines, line_height, line_height * len(lines) + size


def _banner(width: int, height: int, text: str, top: int = 0) -> Image.Image:
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font, lines, line_height, band = _banner_layout(draw, width, height, text)
    top = max(0, min(top, height - band))  # a banner always fits, even below many others
    draw.rectangle((0, top, width, top + band), fill=(12, 14, 24, 170))
    pad = (band - line_height * len(lines)) / 2
    for number, line in enumerate(lines):
        position = (width * 0.05, top + pad + number * line_height)
        draw.text(position, line, font=font, fill=(255, 255, 255, 245))
    return layer


def draw_picture(prompt: str, seed: int, width: int, height: int, model: str, index: int = 0) -> Image.Image:
    """Draw the picture (RGB, exactly ``width`` x ``height``)."""
    digest = hashlib.sha256(f"{prompt}\x00{seed}\x00{index}".encode()).digest()
    rng = random.Random(digest)
    palette = _palette(rng)
    image = _gradient(width, height, palette[0], palette[1]).convert("RGBA")
    image = Image.alpha_composite(image, _glow(width, height, palette[2], rng))
    image = Image.alpha_composite(image, _shapes(width, height, palette, rng))
    image = Image.alpha_composite(image, _prompt_panel(width, height, prompt))
    image = Image.alpha_composite(image, _footer(width, height, model, seed))
    return image.convert("RGB")


def _palette(rng: random.Random) -> list[RGB]:
    hue = rng.random()
    offsets = (0.0, rng.uniform(0.08, 0.3), rng.uniform(0.45, 0.6), rng.uniform(0.7, 0.9))
    colours = []
    for offset in offsets:
        lightness = rng.uniform(0.35, 0.65)
        saturation = rng.uniform(0.45, 0.85)
        r, g, b = colorsys.hls_to_rgb((hue + offset) % 1.0, lightness, saturation)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def _gradient(width: int, height: int, top: RGB, bottom: RGB) -> Image.Image:
    mask = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    return Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask
    )


def _glow(width: int, height: int, colour: RGB, rng: random.Random) -> Image.Image:
    radius = int(max(width, height) * rng.uniform(0.35, 0.6))
    falloff = Image.radial_gradient("L").resize((2 * radius, 2 * radius), Image.Resampling.BILINEAR)
    alpha = falloff.point(lambda v: max(0, 150 - v * 150 // 255))
    layer = Image.new("RGBA", (width, height), (*colour, 0))
    spot = Image.new("RGBA", (2 * radius, 2 * radius), (*colour, 255))
    spot.putalpha(alpha)
    origin = (int(rng.uniform(0, width)) - radius, int(rng.uniform(0, height)) - radius)
    layer.paste(spot, origin, spot)
    return layer


def _shapes(width: int, height: int, palette: list[RGB], rng: random.Random) -> Image.Image:
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    unit = min(width, height)
    for _ in range(rng.randint(3, 6)):
        colour = (*rng.choice(palette), rng.randint(50, 110))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = unit * rng.uniform(0.08, 0.3)
        kind = rng.choice(("circle", "ring", "square", "triangle"))
        box = (cx - r, cy - r, cx + r, cy + r)
        if kind == "circle":
            draw.ellipse(box, fill=colour)
        elif kind == "ring":
            draw.ellipse(box, outline=colour, width=max(2, int(r / 6)))
        elif kind == "square":
            draw.rounded_rectangle(box, radius=r / 4, fill=colour)
        else:
            draw.regular_polygon((cx, cy, r), 3, rotation=rng.uniform(0, 120), fill=colour)
    return layer


@lru_cache(maxsize=32)
def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Font) -> float:
    return draw.textlength(text, font=font)


def _safe_text(draw: ImageDraw.ImageDraw, text: str, font: Font) -> str:
    """``text``, or an ASCII stand-in when the font cannot encode it (bitmap fallback font)."""
    try:
        draw.textlength(text, font=font)
        return text
    except UnicodeError:
        return text.encode("ascii", "replace").decode("ascii")


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, max_width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        while _text_width(draw, word, font) > max_width and len(word) > 1:
            cut = _longest_prefix(draw, word, font, max_width)
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{current} {word}" if current else word
        if _text_width(draw, candidate, font) <= max_width:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def _longest_prefix(draw: ImageDraw.ImageDraw, word: str, font: Font, max_width: float) -> int:
    cut = len(word) - 1
    while cut > 1 and _text_width(draw, word[:cut], font) > max_width:
        cut -= 1
    return cut


def _fit_lines(
    draw: ImageDraw.ImageDraw, lines: list[str], font: Font, max_width: float, max_lines: int
) -> list[str]:
    if len(lines) <= max_lines:
        return lines
    kept = lines[:max_lines]
    last = kept[-1]
    while last and _text_width(draw, last + _ELLIPSIS, font) > max_width:
        last = last[:-1]
    kept[-1] = last.rstrip() + _ELLIPSIS
    return kept


def _prompt_panel(width: int, height: int, prompt: str) -> Image.Image:
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(12, round(min(width, height) / 14))
    font = _font(size)
    text = _safe_text(draw, prompt, font)
    line_height = round(size * 1.3)
    max_width = width * 0.78
    max_lines = max(1, int(height * 0.55 // line_height))
    lines = _fit_lines(draw, _wrap(draw, text, font, max_width), font, max_width, max_lines)
    if not lines:
        return layer
    block_width = max(_text_width(draw, line, font) for line in lines)
    block_height = line_height * len(lines)
    pad = size * 0.7
    top = (height - block_height) / 2
    draw.rounded_rectangle(
        (
            (width - block_width) / 2 - pad,
            top - pad,
            (width + block_width) / 2 + pad,
            top + block_height + pad,
        ),
        radius=pad,
        fill=(12, 14, 24, 150),
    )
    for number, line in enumerate(lines):
        x = (width - _text_width(draw, line, font)) / 2
        draw.text((x, top + number * line_height), line, font=font, fill=(255, 255, 255, 245))
    return layer


def _footer(width: int, height: int, model: str, seed: int) -> Image.Image:
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(9, round(min(width, height) / 42))
    font = _font(size)
    text = _safe_text(draw, f"atlas emulator · {model.rsplit('/', 1)[-1]} · seed {seed}", font)
    band = round(size * 1.9)
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0, 90))
    x = (width - _text_width(draw, text, font)) / 2
    draw.text(
        (max(x, size / 2), height - band + (band - size) / 2), text, font=font, fill=(255, 255, 255, 210)
    )
    return layer
