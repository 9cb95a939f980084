"""What the FLUX models accept, in one table, and how friendly parameters become a request body.

Sources: ``shared/reference/atlas-api.md`` 4.1.1 (schnell) and 4.1.2 (dev). Friendly names map to
the wire: ``width`` + ``height`` -> ``size: "W*H"``, ``steps`` -> ``num_inference_steps``. A
parameter the model does not accept is left out of the body and reported back as ignored. Any
other image model id is passed through, with its parameters (and ``extra``) sent as given.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .constants import MAX_MODEL_ID_CHARS, MAX_NUM_IMAGES, MAX_PROMPT_CHARS, SEED_MAX
from .errors import InvalidParameterError
from .params import DEFAULT_MODEL, GenerationRequest
from .validation import format_number

__all__ = [
    "DEFAULT_MODEL",
    "FLUX_MODELS",
    "GenerationRequest",
    "ModelSpec",
    "PreparedRequest",
    "aspect_ratio_size",
    "prepare_request",
]

MEGAPIXEL = 1024 * 1024


@dataclass(frozen=True)
class Range:
    minimum: float
    maximum: float
    integer: bool = True

    def check(self, name: str, value: float) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidParameterError(name, f"must be a finite number between {self.describe()}.")
        if not self.minimum <= value <= self.maximum:
            raise InvalidParameterError(
                name, f"{format_number(value)} is out of range; allowed: {self.describe()}."
            )

    def describe(self) -> str:
        return f"{format_number(self.minimum)} to {format_number(self.maximum)}"


@dataclass(frozen=True)
class ModelSpec:
    """The parameters one model accepts (by friendly name) and their ranges."""

    id: str
    name: str
    side: Range
    accepts: frozenset[str]
    ranges: dict[str, Range] = field(default_factory=dict)
    price_per_image: str | None = None


_COMMON = frozenset(
    {
        "size",
        "seed",
        "image",
        "mask_image",
        "strength",
        "num_images",
        "enable_safety_checker",
        "enable_base64_output",
    }
)
_COMMON_RANGES = {
    "seed": Range(-1, SEED_MAX),
    "strength": Range(0.0, 1.0, integer=False),
    "num_images": Range(1, MAX_NUM_IMAGES),
}

FLUX_MODELS: dict[str, ModelSpec] = {
    "black-forest-labs/flux-schnell": ModelSpec(
        id="black-forest-labs/flux-schnell",
        name="FLUX.1 [schnell]",
        side=Range(256, 1536),
        accepts=_COMMON | {"enable_sync_mode"},
        ranges=dict(_COMMON_RANGES),
        price_per_image="0.003",
    ),
    "black-forest-labs/flux-dev": ModelSpec(
        id="black-forest-labs/flux-dev",
        name="FLUX.1 [dev]",
        side=Range(512, 1536),
        accepts=_COMMON | {"steps", "guidance_scale"},
        ranges={**_COMMON_RANGES, "steps": Range(1, 50), "guidance_scale": Range(0.0, 20.0, integer=False)},
        price_per_image="0.012",
    ),
}

# Friendly name -> wire name, for parameters whose names differ.
_WIRE_NAMES = {"steps": "num_inference_steps"}
# Fields of a request that are not sent as they are: the prompt and model (checked first), the
# size (sent as "W*H"), and extra (merged last).
_NOT_PARAMETERS = {"prompt", "model", "width", "height", "aspect_ratio", "extra"}
_ASPECT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:/x]\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class PreparedRequest:
    """The exact body to POST, the size it asks for, and what was left out."""

    body: dict[str, Any]
    width: int
    height: int
    ignored: tuple[str, ...] = ()

    @property
    def model(self) -> str:
        return str(self.body["model"])


def aspect_ratio_size(ratio: str, side: Range | None = None) -> tuple[int, int]:
    """About one megapixel at ``ratio`` (``"16:9"``), each side a multiple of 16 inside ``side``."""
    match = _ASPECT.match(ratio or "")
    if not match:
        raise InvalidParameterError("aspect_ratio", f"{ratio!r} is not a ratio like '16:9', '1:1' or '2:3'.")
    rw, rh = float(match.group(1)), float(match.group(2))
    if rw <= 0 or rh <= 0 or not 1 / 4 <= rw / rh <= 4:
        raise InvalidParameterError("aspect_ratio", f"{ratio!r} must be between 1:4 and 4:1.")
    width = math.sqrt(MEGAPIXEL * rw / rh)
    height = width * rh / rw
    lo, hi = (side.minimum, side.maximum) if side else (256, 2048)
    # Scale down (or up) so that both sides fit, keeping the ratio, before rounding.
    scale = min(1.0, hi / max(width, height))
    scale = max(scale, lo / min(width, height)) if min(width, height) * scale < lo else scale
    w = int(min(hi, max(lo, round(width * scale / 16) * 16)))
    h = int(min(hi, max(lo, round(height * scale / 16) * 16)))
    return w, h


def _check_prompt(prompt: str) -> str:
    text = prompt.strip()
    if not text:
        raise InvalidParameterError("prompt", "is empty; describe the picture to draw.")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidParameterError(
            "prompt", f"is {len(text)} characters long; keep it under {MAX_PROMPT_CHARS}."
        )
    if "\x00" in text:
        raise InvalidParameterError("prompt", "contains a NUL character.")
    return text


def _size(req: GenerationRequest, spec: ModelSpec | None) -> tuple[int, int]:
    if req.aspect_ratio and (req.width is not None or req.height is not None):
        raise InvalidParameterError("aspect_ratio", "give either aspect_ratio or width/height, not both.")
    side = spec.side if spec else Range(64, 4096)
    if req.aspect_ratio:
        return aspect_ratio_size(req.aspect_ratio, side)
    width = 1024 if req.width is None else req.width
    height = 1024 if req.height is None else req.height
    side.check("width", width)
    side.check("height", height)
    return width, height


def prepare_request(req: GenerationRequest) -> PreparedRequest:
    """Validate ``req`` against its model and build the flat body Atlas expects.

    Raises:
        InvalidParameterError: a value is out of range, with the allowed range in the message.
    """
    prompt = _check_prompt(req.prompt)
    model = req.model.strip()
    if not model or len(model) > MAX_MODEL_ID_CHARS or any(c.isspace() for c in model):
        raise InvalidParameterError("model", f"{model!r} is not a model id like '{DEFAULT_MODEL}'.")
    spec = FLUX_MODELS.get(model)
    width, height = _size(req, spec)
    body: dict[str, Any] = {"model": model, "prompt": prompt, "size": f"{width}*{height}"}
    ignored: list[str] = []
    given = req.model_dump(exclude_none=True, exclude=_NOT_PARAMETERS)
    ranges = spec.ranges if spec else _COMMON_RANGES
    for name, value in given.items():
        if value is None:
            continue
        if spec is not None and name not in spec.accepts:
            ignored.append(name)
            continue
        if name in ranges and isinstance(value, (int, float)) and not isinstance(value, bool):
            ranges[name].check(name, value)
        if name in ("image", "mask_image") and isinstance(value, str):
            value = _check_image_ref(name, value)
        body[_WIRE_NAMES.get(name, name)] = value
    if req.mask_image and not req.image and (spec is None or "image" in spec.accepts):
        raise InvalidParameterError("mask_image", "needs an image to paint into; pass image as well.")
    for key, value in req.extra.items():
        if spec is not None and key not in spec.accepts:
            ignored.append(key)
        elif key not in body:
            body[key] = value
    return PreparedRequest(body=body, width=width, height=height, ignored=tuple(ignored))


def _check_image_ref(name: str, value: str) -> str:
    ref = value.strip()
    if ref.startswith(("http://", "https://", "data:image/")):
        return ref
    raise InvalidParameterError(
        name,
        "must be an http(s) URL or a data:image/... URI. To use a local file, call upload_media first "
        "and pass its download_url here.",
    )
