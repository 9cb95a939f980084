"""The model table: what each image model is for, what it accepts, and what it costs, in one place.

A :class:`ModelSpec` is one row: the model's kind (text-to-image, edit, multi-reference edit,
inpainting, variation), its parameters by friendly name (each with its wire name, type, range,
choices and default), how it is sized (``size: "W*H"`` within a side range, an ``aspect_ratio``
choice, or not at all), how many reference pictures it takes, whether it takes a mask, whether it
takes a prompt, and its price per image.

:data:`BUILT_IN` holds the rows we know from Atlas' published model pages and clients, not checked
against the live service (docs/atlas-api.md, the model catalogue); the live catalogue (``GET
/api/v1/models`` and each entry's ``schema`` document) is the authority: :func:`spec_from_schema`
turns a schema into a row, and :class:`Catalogue` prefers it whenever it could be read, falling
back to the built-in row. The tools' validation and wire mapping
(:mod:`atlas_image_mcp.wire`), ``list_models`` and the emulator all read these rows: adding a
model is adding a row.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from .constants import MAX_NUM_IMAGES, MODELS_TTL, SEED_MAX
from .errors import AtlasError, InvalidParameterError
from .models import ModelInfo
from .validation import format_number

__all__ = [
    "BUILT_IN",
    "DEFAULT_EDIT_MODELS",
    "DEFAULT_INPAINT_MODELS",
    "DEFAULT_MULTI_EDIT_MODELS",
    "DEFAULT_VARIATION_MODELS",
    "Catalogue",
    "ModelKind",
    "ModelSpec",
    "Param",
    "ModelSource",
    "Range",
    "builtin_spec",
    "MAX_REFERENCES",
    "SIDE_ENVELOPE",
    "spec_from_schema",
]

logger = logging.getLogger(__name__)

ModelKind = Literal["text-to-image", "edit", "multi-edit", "inpaint", "variation"]
PromptUse = Literal["required", "optional", "none"]
Sizing = Literal["size", "aspect_ratio", "none"]
ParamType = Literal["integer", "number", "boolean", "string"]

#: Picked, in this order, by the first one the live catalogue lists (the built-in table otherwise).
#: Kontext [dev] first: it is the Kontext model Atlas' catalogue was seen to carry (2026-03 sync report)
#: and the cheapest; pro and max edit better and cost more.
DEFAULT_EDIT_MODELS = (
    "black-forest-labs/flux-kontext-dev",
    "black-forest-labs/flux-kontext-pro",
    "black-forest-labs/flux-kontext-max",
)
DEFAULT_MULTI_EDIT_MODELS = (
    "black-forest-labs/flux-2-pro/edit",
    "black-forest-labs/flux-kontext-pro/multi",
    "black-forest-labs/flux-2-dev/edit",
)
DEFAULT_INPAINT_MODELS = ("black-forest-labs/flux-fill-dev",)
DEFAULT_VARIATION_MODELS = ("black-forest-labs/flux-redux-dev", "black-forest-labs/flux-redux-pro")

#: Friendly parameter name -> wire name, where they differ (everything else keeps its name).
WIRE_NAMES = {"steps": "num_inference_steps"}
FRIENDLY_NAMES = {wire: friendly for friendly, wire in WIRE_NAMES.items()}
#: Parameters a request carries that are not sent under their own name.
SIZE_PARAMS = frozenset({"width", "height", "aspect_ratio"})
#: Aspect ratios the aspect-ratio models take (BFL's list).
ASPECT_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")


@dataclass(frozen=True)
class Range:
    """An inclusive numeric range; ``check`` raises the plain-words error the tools show."""

    minimum: float
    maximum: float

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
class Param:
    """One parameter a model accepts (besides prompt, size and references)."""

    wire: str
    type: ParamType
    range: Range | None = None
    choices: tuple[str, ...] | None = None
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """One model: what it is for, what it accepts, what it costs. See the module docstring."""

    id: str
    name: str
    kind: ModelKind
    params: Mapping[str, Param] = field(default_factory=dict)
    prompt: PromptUse = "required"
    sizing: Sizing = "size"
    side: Range | None = None
    default_size: str | None = None
    references: int = 0  # 0: none; 1: one ``image``; more: up to that many ``images``
    references_required: bool = False
    mask: bool = False
    price: Decimal | None = None  # USD per image, or per run when price_unit is not "image"
    price_unit: str = "image"
    description: str = ""
    from_schema: bool = False  # built from the live schema (else the built-in row)

    @property
    def multiple_outputs(self) -> bool:
        return "num_images" in self.params

    def estimate(self, num_images: int) -> Decimal | None:
        """The expected charge for ``num_images`` pictures in one prediction (None: price unknown)."""
        if self.price is None:
            return None
        count = num_images if self.price_unit == "image" else 1
        return self.price * count


# --- the built-in rows -----------------------------------------------------------------------------

_SEED = Param("seed", "integer", Range(-1, SEED_MAX), default=-1, description="Random seed; -1 for random.")
_NUM_IMAGES = Param(
    "num_images", "integer", Range(1, MAX_NUM_IMAGES), default=1, description="Images to generate."
)
_STRENGTH = Param(
    "strength", "number", Range(0, 1), default=0.8, description="How far to move from the image."
)
_STEPS = Param("num_inference_steps", "integer", Range(1, 50), default=28, description="Inference steps.")
_SAFETY = Param("enable_safety_checker", "boolean", default=True, description="Enable the safety checker.")
_BASE64 = Param("enable_base64_output", "boolean", default=False, description="Return outputs as base64.")
_SYNC = Param("enable_sync_mode", "boolean", default=False, description="Answer the submit when done.")
_FORMAT = Param(
    "output_format", "string", choices=("jpeg", "png"), default="jpeg", description="Output file type."
)


def _guidance(default: float, high: float = 20.0) -> Param:
    return Param("guidance_scale", "number", Range(0, high), default=default, description="Prompt adherence.")


def _params(*items: Param) -> dict[str, Param]:
    return {FRIENDLY_NAMES.get(p.wire, p.wire): p for p in items}


_FLUX1 = "FLUX.1"
_KONTEXT_EDIT = _params(_NUM_IMAGES, _STEPS, _SEED, _SAFETY, _BASE64)
_BFL = "black-forest-labs/"


def _row(model: str, name: str, kind: ModelKind, price: str | None, **kw: Any) -> ModelSpec:
    return ModelSpec(id=_BFL + model, name=name, kind=kind, price=Decimal(price) if price else None, **kw)


BUILT_IN: tuple[ModelSpec, ...] = (
    # text to image
    _row(
        "flux-schnell", f"{_FLUX1} [schnell]", "text-to-image", "0.003",
        side=Range(256, 1536), default_size="1024*1024", references=1, mask=True,
        params=_params(_STRENGTH, _SEED, _NUM_IMAGES, _SYNC, _BASE64, _SAFETY),
        description="The fastest FLUX model; drafts in about a second.",
    ),
    _row(
        "flux-dev", f"{_FLUX1} [dev]", "text-to-image", "0.012",
        side=Range(512, 1536), default_size="1024*1024", references=1, mask=True,
        params=_params(_STRENGTH, _STEPS, _SEED, _guidance(3.5), _NUM_IMAGES, _BASE64, _SAFETY),
        description="Higher quality than schnell, with steps and guidance.",
    ),
    _row(
        "flux-dev-ultra-fast", f"{_FLUX1} [dev] ultra fast", "text-to-image", "0.005",
        side=Range(512, 1536), default_size="1024*1024", references=1, mask=True,
        params=_params(_STRENGTH, _STEPS, _SEED, _guidance(3.5), _NUM_IMAGES, _BASE64, _SAFETY),
        description="FLUX.1 [dev] on a faster serving stack.",
    ),
    _row(
        "flux-1.1-pro", "FLUX 1.1 [pro]", "text-to-image", "0.04",
        side=Range(256, 1440), default_size="1024*1024", params=_params(_SEED, _SAFETY),
        description="Professional-grade prompt following and detail; one picture per run.",
    ),
    _row(
        "flux-1.1-pro-ultra", "FLUX 1.1 [pro] ultra", "text-to-image", "0.06",
        sizing="aspect_ratio", params=_params(_SEED, _SAFETY),
        description="Up to 4 megapixels, sized by aspect ratio; one picture per run.",
    ),
    _row(
        "flux-kontext-pro/text-to-image", "FLUX.1 Kontext [pro] text to image", "text-to-image", "0.04",
        sizing="aspect_ratio", params=_params(_guidance(3.5), _SEED, _NUM_IMAGES, _SAFETY),
        description="Kontext used without an input picture.",
    ),
    _row(
        "flux-kontext-max/text-to-image", "FLUX.1 Kontext [max] text to image", "text-to-image", None,
        sizing="aspect_ratio", params=_params(_guidance(3.5), _SEED, _NUM_IMAGES, _SAFETY),
        description="Kontext [max] used without an input picture.",
    ),
    _row(
        "flux-2-pro/text-to-image", "FLUX.2 [pro] text to image", "text-to-image", None,
        side=Range(256, 2048), default_size="1024*1024", params=_params(_SEED, _FORMAT, _SAFETY),
        description="FLUX.2 [pro]: sides up to 2048 px.",
    ),
    _row(
        "flux-2-dev/text-to-image", "FLUX.2 [dev] text to image", "text-to-image", None,
        side=Range(256, 2048), default_size="1024*1024", params=_params(_SEED, _FORMAT, _SAFETY),
        description="FLUX.2 [dev]: sides up to 2048 px.",
    ),
    # editing one picture
    _row(
        "flux-kontext-dev", "FLUX.1 Kontext [dev]", "edit", "0.025",
        side=Range(256, 1536), references=1, references_required=True,
        params={**_KONTEXT_EDIT, **_params(_guidance(2.5))},
        description="Edits a picture from an instruction; keeps what the instruction leaves alone.",
    ),
    _row(
        "flux-kontext-pro", "FLUX.1 Kontext [pro]", "edit", "0.04",
        side=Range(256, 1536), references=1, references_required=True,
        params={**_KONTEXT_EDIT, **_params(_guidance(3.5))},
        description="Kontext [pro]: better edits than [dev].",
    ),
    _row(
        "flux-kontext-max", "FLUX.1 Kontext [max]", "edit", "0.08",
        side=Range(256, 1536), references=1, references_required=True,
        params={**_KONTEXT_EDIT, **_params(_guidance(3.5))},
        description="Kontext [max]: the strongest Kontext edits, with the best text rendering.",
    ),
    # editing with several references
    _row(
        "flux-kontext-pro/multi", "FLUX.1 Kontext [pro] multi", "multi-edit", "0.04",
        sizing="aspect_ratio", references=4, references_required=True,
        params=_params(_guidance(3.5), _SEED, _NUM_IMAGES, _SAFETY),
        description="Combines up to 4 reference pictures from an instruction.",
    ),
    _row(
        "flux-kontext-max/multi", "FLUX.1 Kontext [max] multi", "multi-edit", "0.08",
        sizing="aspect_ratio", references=4, references_required=True,
        params=_params(_guidance(3.5), _SEED, _NUM_IMAGES, _SAFETY),
        description="Kontext [max] with up to 4 reference pictures.",
    ),
    _row(
        "flux-2-pro/edit", "FLUX.2 [pro] edit", "multi-edit", "0.03",
        side=Range(256, 2048), references=8, references_required=True,
        params=_params(_SEED, _FORMAT, _SAFETY),
        description="FLUX.2 [pro] editing with up to 8 reference pictures; a flat price per run.",
        price_unit="generation",
    ),
    _row(
        "flux-2-dev/edit", "FLUX.2 [dev] edit", "multi-edit", None,
        side=Range(256, 2048), references=4, references_required=True,
        params=_params(_SEED, _FORMAT, _SAFETY),
        description="FLUX.2 [dev] editing with up to 4 reference pictures.",
    ),
    # inpainting
    _row(
        "flux-fill-dev", "FLUX.1 Fill [dev]", "inpaint", None,
        side=Range(256, 1536), references=1, references_required=True, mask=True,
        params=_params(_guidance(30.0, 100.0), _STEPS, _SEED),
        description="Repaints the white area of a mask, from a prompt.",
    ),
    # variations
    _row(
        "flux-redux-dev", "FLUX.1 Redux [dev]", "variation", None,
        prompt="none", side=Range(256, 1536), references=1, references_required=True,
        params=_params(_STEPS, _guidance(3.5), _NUM_IMAGES, _SEED),
        description="Variations of a picture, without a prompt.",
    ),
    _row(
        "flux-redux-pro", "FLUX.1 Redux [pro]", "variation", None,
        prompt="optional", side=Range(256, 1536), references=1, references_required=True,
        params=_params(_guidance(3.5), _NUM_IMAGES, _SEED, _SAFETY),
        description="Variations of a picture, steered by an optional prompt.",
    ),
)  # fmt: skip

_BUILT_IN_BY_ID = {spec.id: spec for spec in BUILT_IN}


def builtin_spec(model_id: str) -> ModelSpec | None:
    """The built-in row of ``model_id``, if there is one."""
    return _BUILT_IN_BY_ID.get(model_id)


#: What any built-in model accepts, for the tools' published bounds (each model checks its own range).
SIDE_ENVELOPE = Range(
    min(s.side.minimum for s in BUILT_IN if s.side), max(s.side.maximum for s in BUILT_IN if s.side)
)
MAX_REFERENCES = max(s.references for s in BUILT_IN)
#: What a picture of a model whose price is unknown is held at against a daily budget: the most
#: expensive per-picture price of the built-in table (FLUX.1 Kontext [max]), so an unknown price
#: never counts for less than any known one.
UNKNOWN_PRICE_PER_IMAGE: Decimal = max(
    s.price for s in BUILT_IN if s.price is not None and s.price_unit == "image"
)


# --- the live schema -------------------------------------------------------------------------------


def spec_from_schema(
    model_id: str,
    schema: Mapping[str, Any],
    *,
    name: str | None = None,
    price: str | None = None,
    price_unit: str | None = None,
    description: str = "",
    known: ModelSpec | None = None,
) -> ModelSpec | None:
    """A row from an OpenAPI schema document (``components.schemas.Input``), or None when unreadable.

    What the schema says wins (parameters, ranges, choices, defaults, references, mask, prompt);
    what it cannot say (the side range of a ``"W*H"`` size, the kind when ambiguous) comes from the
    built-in row ``known`` when there is one.
    """
    components = schema.get("components")
    schemas = components.get("schemas") if isinstance(components, Mapping) else None
    inputs = schemas.get("Input") if isinstance(schemas, Mapping) else None
    properties = inputs.get("properties") if isinstance(inputs, Mapping) else None
    if not isinstance(properties, Mapping):
        return None
    raw_required = inputs.get("required") if isinstance(inputs, Mapping) else None
    required = {str(r) for r in raw_required} if isinstance(raw_required, list) else set()
    params: dict[str, Param] = {}
    for wire, prop in properties.items():
        if not isinstance(prop, Mapping) or wire in (
            "model",
            "prompt",
            "size",
            "aspect_ratio",
            "image",
            "images",
            "mask_image",
        ):
            continue
        param = _param_from_property(str(wire), prop)
        if param is not None:
            params[FRIENDLY_NAMES.get(str(wire), str(wire))] = param
    images = properties.get("images")
    references = 0
    if isinstance(images, Mapping):
        max_items = images.get("maxItems")
        references = int(max_items) if isinstance(max_items, int) and max_items > 1 else 4
    elif "image" in properties:
        references = 1
    prompt: PromptUse = (
        "none" if "prompt" not in properties else ("required" if "prompt" in required else "optional")
    )
    sizing: Sizing = (
        "size" if "size" in properties else "aspect_ratio" if "aspect_ratio" in properties else "none"
    )
    mask = "mask_image" in properties
    references_required = bool(required & {"image", "images"})
    kind = _kind(known, references, references_required, mask, prompt)
    size_prop = properties.get("size")
    default_size = size_prop.get("default") if isinstance(size_prop, Mapping) else None
    return ModelSpec(
        id=model_id,
        name=name or (known.name if known else model_id),
        kind=kind,
        params=params,
        prompt=prompt,
        sizing=sizing,
        side=known.side if known and known.side else (Range(256, 2048) if sizing == "size" else None),
        default_size=default_size if isinstance(default_size, str) else None,
        references=references,
        references_required=references_required,
        mask=mask,
        price=_decimal(price) if price is not None else (known.price if known else None),
        price_unit=price_unit or (known.price_unit if known else "image"),
        description=description or (known.description if known else ""),
        from_schema=True,
    )


def _kind(
    known: ModelSpec | None, references: int, references_required: bool, mask: bool, prompt: PromptUse
) -> ModelKind:
    if known is not None:
        return known.kind
    if mask and references_required:
        return "inpaint"
    if references > 1:
        return "multi-edit"
    if references_required and prompt == "none":
        return "variation"
    if references_required:
        return "edit"
    return "text-to-image"


_TYPES: dict[str, ParamType] = {
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "string": "string",
}


def _param_from_property(wire: str, prop: Mapping[str, Any]) -> Param | None:
    kind = _TYPES.get(str(prop.get("type")))
    if kind is None:
        return None
    low, high = prop.get("minimum"), prop.get("maximum")
    bounded = _is_number(low) and _is_number(high)
    enum = prop.get("enum")
    choices = tuple(str(v) for v in enum) if isinstance(enum, list) and kind == "string" else None
    return Param(
        wire=wire,
        type=kind,
        range=Range(float(low), float(high)) if bounded and low is not None and high is not None else None,
        choices=choices,
        default=prop.get("default"),
        description=str(prop.get("description") or "")[:200],
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _decimal(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number >= 0 else None


# --- the table a server uses -----------------------------------------------------------------------


class ModelSource(Protocol):
    """Where the live catalogue comes from (the Atlas client)."""

    async def list_models(self, *, refresh: bool = False) -> list[ModelInfo]: ...

    async def model_schema(self, url: str) -> dict[str, Any]: ...


@dataclass
class Catalogue:
    """The rows a server uses: built from the live catalogue when it can be read, built-in otherwise.

    The listing (``GET /api/v1/models``) is read once per :data:`MODELS_TTL`; a model's schema is
    read the first time the model is used (and again after the TTL). Reading failures are logged
    and the built-in row is used; a model that neither the live catalogue nor the built-in table
    knows is reported by :meth:`spec` as None.
    """

    clock: Callable[[], float] = time.monotonic
    _listing: dict[str, ModelInfo] | None = None
    _listed_at: float = -math.inf
    _live: dict[str, tuple[ModelSpec, float]] = field(default_factory=dict)

    def get(self, model_id: str) -> ModelSpec | None:
        """The best row known right now, without reading anything."""
        live = self._live.get(model_id)
        if live is not None:
            return live[0]
        known = _BUILT_IN_BY_ID.get(model_id)
        info = (self._listing or {}).get(model_id)
        if known is not None and info is not None and info.price is not None:
            return replace(known, price=_decimal(info.price), price_unit=info.price_unit or known.price_unit)
        return known

    def listed(self, model_id: str) -> bool | None:
        """Whether the live catalogue lists ``model_id`` (None: it could not be read)."""
        return None if self._listing is None else model_id in self._listing

    def first_available(self, candidates: Iterable[str]) -> str:
        """The first of ``candidates`` the live catalogue lists (the first one when it was not read)."""
        options = list(candidates)
        if self._listing is not None:
            for model_id in options:
                if model_id in self._listing:
                    return model_id
        return options[0]

    def closest(self, model_id: str, limit: int = 3) -> list[str]:
        """The known model ids most like ``model_id`` (a typo, another case, the id without its owner):
        the best match, and any about as close as it."""
        from difflib import SequenceMatcher  # deferred: only a refused model id needs it

        wanted = model_id.strip().lower()
        scores: dict[str, float] = {}
        for known in dict.fromkeys([*(self._listing or {}), *_BUILT_IN_BY_ID]):
            lower = known.lower()
            whole = SequenceMatcher(None, wanted, lower).ratio()
            tail = SequenceMatcher(None, wanted.rsplit("/", 1)[-1], lower.rsplit("/", 1)[-1]).ratio()
            scores[known] = max(whole, tail)
        ranked = sorted((score, known) for known, score in scores.items() if score >= 0.75)[::-1]
        best = ranked[0][0] if ranked else 1.0
        return [known for score, known in ranked if score >= best - 0.02][:limit]

    def rows(self) -> list[ModelSpec]:
        """Every row known right now: the catalogue's models (as well as known), then built-in ones."""
        ids = list(self._listing or {}) + [s.id for s in BUILT_IN if s.id not in (self._listing or {})]
        return [spec for model_id in ids if (spec := self.get(model_id) or self._guess(model_id)) is not None]

    def _guess(self, model_id: str) -> ModelSpec | None:
        """A row for a listed model whose schema has not been read: kind from its categories."""
        info = (self._listing or {}).get(model_id)
        if info is None:
            return None
        categories = {c.upper().replace("_", "-") for c in info.categories}
        kind: ModelKind = "edit" if "IMAGE-TO-IMAGE" in categories else "text-to-image"
        return ModelSpec(
            id=model_id, name=info.name, kind=kind, sizing="none", price=_decimal(info.price),
            price_unit=info.price_unit or "image", description=info.description[:300],
        )  # fmt: skip

    async def refresh_listing(self, source: ModelSource) -> None:
        """Read the listing again when it is older than the TTL; failures keep what was known."""
        if self.clock() - self._listed_at < MODELS_TTL:
            return
        self._listed_at = self.clock()  # one attempt per TTL, even when it fails
        try:
            models = await source.list_models()
        except AtlasError as err:
            logger.info("model catalogue unreadable, using the built-in table: %s", err.message)
            return
        self._listing = {m.id: m for m in models}

    async def spec(self, model_id: str, source: ModelSource) -> ModelSpec | None:
        """The row for ``model_id``, from its live schema when it can be read (cached for the TTL)."""
        await self.refresh_listing(source)
        live = self._live.get(model_id)
        if live is not None and self.clock() - live[1] < MODELS_TTL:
            return live[0]
        info = (self._listing or {}).get(model_id)
        if info is not None and info.schema_url:
            try:
                schema = await source.model_schema(info.schema_url)
            except AtlasError as err:
                logger.info("schema of %s unreadable, using the built-in row: %s", model_id, err.message)
            else:
                spec = spec_from_schema(
                    model_id,
                    schema,
                    name=info.name,
                    price=info.price,
                    price_unit=info.price_unit,
                    description=info.description[:300],
                    known=_BUILT_IN_BY_ID.get(model_id),
                )
                if spec is not None:
                    self._live[model_id] = (spec, self.clock())
                    return spec
        return self.get(model_id) or self._guess(model_id)
