"""Validation of a submit body (``POST /api/v1/model/generateImage``) against a model's Input schema.

Strict models (every row of the shared model table, and the aspect-ratio-only entry) answer 400
for an unknown property, a wrong type, a value out of range or not among the choices, an array
with too many items, a malformed or out-of-range ``size``, or a missing required field (the
picture for edits, the mask for inpainting, the prompt where it is required). Other image models
are pass-through: only their required fields are checked, and ``size``, ``seed`` and
``num_images`` are read leniently so a picture can still be drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .served_models import CatalogueModel

__all__ = [
    "DEFAULT_SIDE",
    "OUTPUT_FORMATS",
    "Submission",
    "SubmissionError",
    "clamp_side",
    "validate_submission",
]

#: The encodings the emulator draws in: ``output_format`` value -> (file extension, media type).
OUTPUT_FORMATS = {"jpeg": ("jpeg", "image/jpeg"), "png": ("png", "image/png")}

_SIZE_RE = re.compile(r"^(\d+)\*(\d+)$")
_LENIENT_SIZE_RE = re.compile(r"^\s*(\d+)\s*[*xX×]\s*(\d+)\s*$")
#: The side of a picture drawn when nothing says its size.
DEFAULT_SIDE = 1024
_LENIENT_SIDE_RANGE = (64, 2048)
_LENIENT_MAX_IMAGES = 4
_RATIO_SIDE = 1024  # an aspect-ratio model draws about a megapixel


class SubmissionError(ValueError):
    """The body is not acceptable; the message is sent back as the 400 ``msg``."""


@dataclass(frozen=True)
class Submission:
    """What the emulator needs from an accepted submit body.

    ``width``/``height`` are None when the body asks for no size (an edit keeps its input's size).
    """

    prompt: str
    width: int | None
    height: int | None
    num_images: int
    seed: int | None  # None: pick a random seed
    base64_output: bool
    sync_mode: bool
    params: dict[str, Any]
    images: tuple[str, ...] = field(default=())  # input pictures: ``image`` or ``images``
    mask: str | None = None
    output_format: str = "jpeg"  # "jpeg" or "png": how the outputs are encoded


def validate_submission(body: dict[str, Any], spec: CatalogueModel) -> Submission:
    """Check ``body`` for ``spec``; raise :class:`SubmissionError` with the API's message."""
    for name in spec.required:
        if name not in body:
            raise SubmissionError(f"{name} is required")
    if spec.strict:
        _check_strict(body, spec)
    prompt = body.get("prompt", "")
    if "prompt" in body:
        _check_prompt(prompt, required="prompt" in spec.required)
    width, height = _read_size(body, spec)
    listed = body.get("images")
    images = listed if isinstance(listed, list) else [body.get("image")]
    return Submission(
        prompt=prompt if isinstance(prompt, str) else "",
        width=width,
        height=height,
        num_images=_read_num_images(body),
        seed=_read_seed(body),
        base64_output=body.get("enable_base64_output") is True,
        sync_mode=body.get("enable_sync_mode") is True,
        params=dict(body),
        images=tuple(i for i in images if isinstance(i, str) and i),
        mask=body["mask_image"] if isinstance(body.get("mask_image"), str) else None,
        output_format=_read_output_format(body, spec),
    )


def _read_output_format(body: dict[str, Any], spec: CatalogueModel) -> str:
    """The asked-for encoding, else the model's declared default, else JPEG (strict models have
    already refused a value outside their enum; a lenient one gets JPEG for anything unknown)."""
    declared = (spec.input_properties or {}).get("output_format", {}).get("default")
    asked = body.get("output_format", declared)
    return asked if isinstance(asked, str) and asked in OUTPUT_FORMATS else "jpeg"


def _check_prompt(prompt: Any, *, required: bool) -> None:
    if not isinstance(prompt, str):
        raise SubmissionError("invalid type for parameter prompt: expected string")
    if required and not prompt.strip():
        raise SubmissionError("prompt must not be empty")


def _check_strict(body: dict[str, Any], spec: CatalogueModel) -> None:
    properties = spec.input_properties or {}
    for name, value in body.items():
        if name == "model":
            continue
        schema = properties.get(name)
        if schema is None:
            raise SubmissionError(f"unknown parameter: {name}")
        _check_value(name, value, schema)


def _check_value(name: str, value: Any, schema: dict[str, Any]) -> None:
    expected = schema["type"]
    if not _is_type(value, expected):
        raise SubmissionError(f"invalid type for parameter {name}: expected {expected}")
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(str(v) for v in schema["enum"])
        raise SubmissionError(f"{name} must be one of: {allowed}")
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        raise SubmissionError(f"{name} must be between {low} and {high}, got {value}")
    if expected == "array":
        items = schema.get("items", {}).get("type")
        if items is not None and not all(_is_type(v, items) for v in value):
            raise SubmissionError(f"invalid type for an item of {name}: expected {items}")
        most, least = schema.get("maxItems"), schema.get("minItems")
        if most is not None and len(value) > most:
            raise SubmissionError(f"{name} takes at most {most} items, got {len(value)}")
        if least is not None and len(value) < least:
            raise SubmissionError(f"{name} needs at least {least} items, got {len(value)}")


def _is_type(value: Any, expected: str) -> bool:
    if isinstance(value, bool):
        return expected == "boolean"
    if expected == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float))
    if expected == "string":
        return isinstance(value, str)
    if expected == "array":
        return isinstance(value, list)
    if expected == "object":
        return isinstance(value, dict)
    return False


def _read_size(body: dict[str, Any], spec: CatalogueModel) -> tuple[int | None, int | None]:
    properties = spec.input_properties or {}
    if "aspect_ratio" in properties and "size" not in properties:
        ratio = body.get("aspect_ratio", properties["aspect_ratio"].get("default", "1:1"))
        return _ratio_size(str(ratio))
    size = body.get("size")
    if spec.strict:
        default = properties.get("size", {}).get("default")
        size = size if size is not None else default
        return (None, None) if size is None else _strict_size(size, spec)
    match = _LENIENT_SIZE_RE.match(size) if isinstance(size, str) else None
    if match is None:
        return DEFAULT_SIDE, DEFAULT_SIDE
    width, height = (clamp_side(int(side)) for side in match.groups())
    return width, height


def clamp_side(side: int) -> int:
    """A side length the emulator draws for a model it does not check strictly."""
    low, high = _LENIENT_SIDE_RANGE
    return min(max(side, low), high)


def _ratio_size(ratio: str) -> tuple[int, int]:
    left, _, right = ratio.partition(":")
    try:
        rw, rh = float(left), float(right)
    except ValueError:
        return _RATIO_SIDE, _RATIO_SIDE
    scale = (_RATIO_SIDE * _RATIO_SIDE / (rw * rh)) ** 0.5
    return int(round(rw * scale / 16) * 16), int(round(rh * scale / 16) * 16)


def _strict_size(size: str, spec: CatalogueModel) -> tuple[int, int]:
    match = _SIZE_RE.match(size)
    if match is None:
        raise SubmissionError(f"Invalid size format: {size}, expected format: width*height")
    width, height = int(match.group(1)), int(match.group(2))
    low, high = spec.size_range or (1, 1 << 16)
    if not (low <= width <= high and low <= height <= high):
        raise SubmissionError(f"Invalid size: {size}, width and height must each be between {low} and {high}")
    return width, height


def _read_num_images(body: dict[str, Any]) -> int:
    value = body.get("num_images", 1)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 1
    return min(max(int(value), 1), _LENIENT_MAX_IMAGES)


def _read_seed(body: dict[str, Any]) -> int | None:
    value = body.get("seed", -1)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return int(value)
