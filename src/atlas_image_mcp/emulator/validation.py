"""Validation of a submit body (``POST /api/v1/model/generateImage``) against a model's Input schema.

The two FLUX models are strict (atlas-api.md 4.1.1 / 4.1.2): an unknown property, a wrong type, a
value out of range or a malformed ``size`` is a 400. Other image models are pass-through: only
``prompt`` (and their other required fields) are checked, and ``size``, ``seed`` and
``num_images`` are read leniently so a picture can still be drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .catalogue import CatalogueModel

__all__ = ["Submission", "SubmissionError", "validate_submission"]

_SIZE_RE = re.compile(r"^(\d+)\*(\d+)$")
_LENIENT_SIZE_RE = re.compile(r"^\s*(\d+)\s*[*xX×]\s*(\d+)\s*$")
_DEFAULT_SIDE = 1024
_LENIENT_SIDE_RANGE = (64, 2048)
_LENIENT_MAX_IMAGES = 4


class SubmissionError(ValueError):
    """The body is not acceptable; the message is sent back as the 400 ``msg``."""


@dataclass(frozen=True)
class Submission:
    """What the emulator needs from an accepted submit body."""

    prompt: str
    width: int
    height: int
    num_images: int
    seed: int | None  # None: pick a random seed
    base64_output: bool
    sync_mode: bool
    params: dict[str, Any]


def validate_submission(body: dict[str, Any], spec: CatalogueModel) -> Submission:
    """Check ``body`` for ``spec``; raise :class:`SubmissionError` with the API's message."""
    _check_prompt(body)
    if spec.strict:
        _check_strict(body, spec)
    for name in spec.required:
        if name not in body:
            raise SubmissionError(f"{name} is required")
    width, height = _read_size(body, spec)
    return Submission(
        prompt=body["prompt"],
        width=width,
        height=height,
        num_images=_read_num_images(body),
        seed=_read_seed(body),
        base64_output=body.get("enable_base64_output") is True,
        sync_mode=body.get("enable_sync_mode") is True,
        params=dict(body),
    )


def _check_prompt(body: dict[str, Any]) -> None:
    if "prompt" not in body:
        raise SubmissionError("prompt is required")
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise SubmissionError("invalid type for parameter prompt: expected string")
    if not prompt.strip():
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


def _read_size(body: dict[str, Any], spec: CatalogueModel) -> tuple[int, int]:
    size = body.get("size")
    if spec.strict:
        return _strict_size("1024*1024" if size is None else size, spec)
    match = _LENIENT_SIZE_RE.match(size) if isinstance(size, str) else None
    if match is None:
        return _DEFAULT_SIDE, _DEFAULT_SIDE
    low, high = _LENIENT_SIDE_RANGE
    width, height = (min(max(int(side), low), high) for side in match.groups())
    return width, height


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
