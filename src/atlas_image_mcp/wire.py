"""From a request in friendly names to the exact body Atlas expects, checked against the model's row.

Friendly names map to the wire through the model table (:mod:`atlas_image_mcp.catalogue`):
``width`` + ``height`` (or ``aspect_ratio``) become ``size: "W*H"`` for models sized that way, or
the nearest ``aspect_ratio`` choice for models sized by ratio; ``steps`` becomes
``num_inference_steps``; ``image`` / ``images`` / ``mask_image`` go to models that take them. Every
value is checked against the model's own range before anything is sent; a parameter the model
does not take is left out and reported back as ignored. A model that no table knows is sent what
was given, and nothing the caller did not ask for.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .catalogue import ASPECT_RATIOS, SIZE_PARAMS, WIRE_NAMES, ModelSpec, Range, builtin_spec
from .constants import DEFAULT_MODEL, MAX_MODEL_ID_CHARS, MAX_PROMPT_CHARS
from .errors import InvalidParameterError
from .params import GenerationRequest
from .prepared import PictureSlot, PreparedRequest

__all__ = ["aspect_ratio_size", "nearest_size", "prepare_request", "ratio_text"]

MEGAPIXEL = 1024 * 1024
_ASPECT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:/x]\s*(\d+(?:\.\d+)?)\s*$")
_DEFAULT_SIDE = 1024
#: Fields of a request that are not model parameters sent under their own name.
_NOT_PARAMETERS = {
    "prompt",
    "model",
    "width",
    "height",
    "aspect_ratio",
    "extra",
    "image",
    "images",
    "mask_image",
}


def _parse_ratio(ratio: str) -> tuple[float, float]:
    match = _ASPECT.match(ratio or "")
    if not match:
        raise InvalidParameterError("aspect_ratio", f"{ratio!r} is not a ratio like '16:9', '1:1' or '2:3'.")
    rw, rh = float(match.group(1)), float(match.group(2))
    if rw <= 0 or rh <= 0 or not 1 / 4 <= rw / rh <= 4:
        raise InvalidParameterError("aspect_ratio", f"{ratio!r} must be between 1:4 and 4:1.")
    return rw, rh


def aspect_ratio_size(ratio: str, side: Range | None = None) -> tuple[int, int]:
    """About one megapixel at ``ratio`` (``"16:9"``), each side a multiple of 16 inside ``side``."""
    rw, rh = _parse_ratio(ratio)
    width = math.sqrt(MEGAPIXEL * rw / rh)
    height = width * rh / rw
    lo, hi = (side.minimum, side.maximum) if side else (256, 2048)
    # Scale down (or up) so that both sides fit, keeping the ratio, before rounding.
    scale = min(1.0, hi / max(width, height))
    scale = max(scale, lo / min(width, height)) if min(width, height) * scale < lo else scale
    w = int(min(hi, max(lo, round(width * scale / 16) * 16)))
    h = int(min(hi, max(lo, round(height * scale / 16) * 16)))
    return w, h


def nearest_size(width: int, height: int, side: Range | None = None) -> tuple[int, int]:
    """The size nearest ``width`` x ``height`` with the same ratio that a model taking ``side`` makes:
    scaled only as far as ``side`` requires, each side rounded up to a multiple of 16 (so the
    picture is cropped to the exact size, never stretched), within ``side``."""
    lo, hi = (side.minimum, side.maximum) if side else (256, 2048)
    scale = min(1.0, hi / max(width, height))
    if min(width, height) * scale < lo:
        scale = lo / min(width, height)
    w = min(int(hi) // 16 * 16, max(math.ceil(lo / 16) * 16, math.ceil(width * scale / 16) * 16))
    h = min(int(hi) // 16 * 16, max(math.ceil(lo / 16) * 16, math.ceil(height * scale / 16) * 16))
    return w, h


def ratio_text(width: int, height: int) -> str:
    """``width``:``height`` as an aspect ratio the tools accept (kept between 1:4 and 4:1)."""
    ratio = min(4.0, max(0.25, width / height))
    return f"{ratio:.4f}:1"


def _nearest_ratio(width: float, height: float) -> str:
    """The listed aspect ratio closest to ``width``:``height`` (compared in log space)."""
    target = math.log(width / height)

    def distance(choice: str) -> float:
        a, b = _parse_ratio(choice)
        return abs(math.log(a / b) - target)

    return min(ASPECT_RATIOS, key=distance)


def _normal_ratio(ratio: str) -> str:
    rw, rh = _parse_ratio(ratio)
    text = f"{rw:g}:{rh:g}"
    return text if text in ASPECT_RATIOS else _nearest_ratio(rw, rh)


def _check_prompt(prompt: str, spec: ModelSpec | None) -> str | None:
    text = prompt.strip()
    if "\x00" in text:
        raise InvalidParameterError("prompt", "contains a NUL character.")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidParameterError(
            "prompt", f"is {len(text)} characters long; keep it under {MAX_PROMPT_CHARS}."
        )
    if spec is not None and spec.prompt == "none":
        return None
    if not text and (spec is None or spec.prompt == "required"):
        raise InvalidParameterError("prompt", "is empty; describe the picture to draw.")
    return text or None


def _check_model(model: str) -> str:
    model = model.strip()
    if not model or len(model) > MAX_MODEL_ID_CHARS or any(c.isspace() for c in model):
        raise InvalidParameterError("model", f"{model!r} is not a model id like '{DEFAULT_MODEL}'.")
    return model


class _Body:
    """The body being built, with what was left out and the notes for the result."""

    def __init__(self, model: str) -> None:
        self.fields: dict[str, Any] = {"model": model}
        self.ignored: list[str] = []
        self.notes: list[str] = []
        self.width: int | None = None
        self.height: int | None = None
        #: the pictures the body carries, as references until the call resolves them
        self.pictures: list[PictureSlot] = []


def _size(req: GenerationRequest, spec: ModelSpec | None, out: _Body) -> None:
    """``size`` or ``aspect_ratio`` for the model, from width/height or aspect_ratio."""
    given = req.width is not None or req.height is not None
    if req.aspect_ratio and given:
        raise InvalidParameterError("aspect_ratio", "give either aspect_ratio or width/height, not both.")
    sizing = spec.sizing if spec is not None else ("size" if given or req.aspect_ratio else "none")
    if sizing == "none":
        out.ignored.extend(n for n in ("width", "height", "aspect_ratio") if getattr(req, n) is not None)
        return
    if sizing == "aspect_ratio":
        if req.aspect_ratio:
            ratio = _normal_ratio(req.aspect_ratio)
        elif given:
            width, height = req.width or _DEFAULT_SIDE, req.height or _DEFAULT_SIDE
            ratio = _nearest_ratio(width, height)
            out.notes.append(f"{spec.id if spec else 'This model'} is sized by aspect ratio: sent {ratio}.")
        else:
            return
        out.fields["aspect_ratio"] = ratio
        return
    side = spec.side if spec is not None else None
    if req.aspect_ratio:
        width, height = aspect_ratio_size(req.aspect_ratio, side)
    elif given:
        width = _DEFAULT_SIDE if req.width is None else req.width
        height = _DEFAULT_SIDE if req.height is None else req.height
        if side is not None:
            side.check("width", width)
            side.check("height", height)
    else:
        # not asked: the model's own default (for edits, the input picture's size), not sent
        out.width, out.height = _parse_size(spec.default_size if spec is not None else None)
        return
    out.fields["size"] = f"{width}*{height}"
    out.width, out.height = width, height


def _parse_size(size: str | None) -> tuple[int | None, int | None]:
    width, _, height = (size or "").partition("*")
    return (int(width), int(height)) if width.isdigit() and height.isdigit() else (None, None)


def _references(req: GenerationRequest, spec: ModelSpec | None, out: _Body) -> None:
    """``image`` / ``images`` / ``mask_image`` for the models that take them.

    Each picture the body will carry is noted as a :class:`PictureSlot`, in the order a call
    resolves them: ``image``, ``mask_image``, then ``images``. A picture the model does not take is
    reported as ignored, and never resolved (nor uploaded).
    """
    given = [("image", req.image)] if req.image else []
    given += [("images", ref) for ref in req.images or []]
    placed: list[PictureSlot] = []
    if spec is None:
        placed = [PictureSlot("image", "image", None, req.image)] if req.image else []
        placed += [PictureSlot("images", "images", i, ref) for i, ref in enumerate(req.images or [])]
    elif spec.references == 1:
        if len(given) > 1:
            raise InvalidParameterError(
                "images", f"{spec.id} edits one picture; give one image, or choose a multi-reference model."
            )
        placed = [PictureSlot(name, "image", None, ref) for name, ref in given]
    elif spec.references > 1:
        if len(given) > spec.references:
            raise InvalidParameterError(
                "images",
                f"{spec.id} takes at most {spec.references} reference pictures ({len(given)} given).",
            )
        placed = [PictureSlot(name, "images", i, ref) for i, (name, ref) in enumerate(given)]
    elif given:
        out.ignored.append("image" if req.image else "images")
    if spec is not None and spec.references_required and not given:
        what = "pictures to combine (images)" if spec.references > 1 else "the picture to change (image)"
        raise InvalidParameterError("image", f"{spec.id} needs {what}.")
    for slot in placed:
        if slot.index is None:
            out.fields[slot.field] = slot.ref
        else:
            out.fields.setdefault(slot.field, []).append(slot.ref)
    mask = _mask(req, spec, bool(given), out)
    if mask is not None:
        out.fields["mask_image"] = mask
        placed.append(PictureSlot("mask_image", "mask_image", None, mask))
    order = {"image": 0, "mask_image": 1, "images": 2}
    out.pictures = sorted(placed, key=lambda slot: order[slot.parameter])


def _mask(req: GenerationRequest, spec: ModelSpec | None, given: bool, out: _Body) -> str | None:
    """The mask to send, or None (left out, and reported, when the model takes none)."""
    if req.mask_image:
        if spec is not None and not spec.mask:
            out.ignored.append("mask_image")
            return None
        if not given:
            raise InvalidParameterError("mask_image", "needs an image to paint into; pass image as well.")
        return req.mask_image
    if spec is not None and spec.kind == "inpaint":
        raise InvalidParameterError(
            "mask_image", f"{spec.id} repaints the white area of a mask: pass mask_image."
        )
    return None


def prepare_request(req: GenerationRequest, spec: ModelSpec | None = None) -> PreparedRequest:
    """Validate ``req`` against its model's row and build the flat body Atlas expects.

    ``spec`` is the model's row (the live catalogue's when the caller has it); without one the
    built-in table is used, and a model it does not know is passed what was given.

    Raises:
        InvalidParameterError: a value is out of range or missing, with what is allowed in the message.
    """
    model = _check_model(req.model)
    spec = spec if spec is not None else builtin_spec(model)
    out = _Body(model)
    prompt = _check_prompt(req.prompt, spec)
    if prompt is not None:
        out.fields["prompt"] = prompt
    elif req.prompt.strip() and spec is not None and spec.prompt == "none":
        out.ignored.append("prompt")
    _size(req, spec, out)
    _references(req, spec, out)
    explicit = req.model_fields_set
    for name, value in req.model_dump(exclude_none=True, exclude=_NOT_PARAMETERS).items():
        if spec is None:
            if name in explicit:  # a model no table knows gets nothing the caller did not ask for
                out.fields[WIRE_NAMES.get(name, name)] = value
            continue
        param = spec.params.get(name)
        if param is None:
            if name in explicit:
                out.ignored.append(name)
            continue
        if param.range is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            param.range.check(name, value)
        if param.choices is not None and str(value) not in param.choices:
            raise InvalidParameterError(name, f"{value!r} is not one of {', '.join(param.choices)}.")
        out.fields[param.wire] = value
    wire_names = {p.wire for p in spec.params.values()} if spec is not None else set()
    for key, value in req.extra.items():
        if spec is not None and key not in wire_names and key not in SIZE_PARAMS:
            out.ignored.append(key)
        elif key not in out.fields:
            out.fields[key] = value
    return PreparedRequest(
        body=out.fields,
        width=out.width,
        height=out.height,
        ignored=tuple(out.ignored),
        notes=tuple(out.notes),
        pictures=tuple(out.pictures),
    )
