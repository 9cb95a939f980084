"""The models the emulator serves: entries shaped like ``GET /api/v1/models``, with their schemas.

Every model of the shared model table (:data:`atlas_image_mcp.catalogue.BUILT_IN`: FLUX schnell,
dev, 1.1 pro, Kontext, FLUX.2, Fill, Redux...) is served with the Input schema its row implies
(docs/atlas-api.md, the catalogue and submitting a job) and validated strictly: an unknown
property, a wrong type, a value out of range, a missing required picture or mask is a 400, as the
real service answers. A few other entries exist to test clients on other shapes: a pass-through
image model, a model sized only by ``aspect_ratio`` with no ``num_images`` (as Imagen and Nano
Banana are), a LoRA model, and video, text and hidden (``display_console: false``) entries that
clients must filter out.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..catalogue import ASPECT_RATIOS, BUILT_IN, ModelSpec

__all__ = [
    "MODELS",
    "CatalogueModel",
    "catalogue_entry",
    "price_for",
    "readme_text",
    "schema_document",
    "slug",
]

_SEED_MAX = 2**31 - 1
#: What the emulator charges for a model whose price nobody published (it must charge something).
_UNPUBLISHED_PRICE = "0.03"


def _prop(type_: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "description": description, **extra}


_PROMPT = _prop("string", "The prompt to generate an image from.")
_SIZE = _prop("string", "Output image size, width*height in pixels.", default="1024*1024")
_SEED = _prop("integer", "Random seed; -1 for random.", default=-1, minimum=-1, maximum=_SEED_MAX)
_NUM_IMAGES = _prop("integer", "Number of images to generate.", default=1, minimum=1, maximum=4)
_STEPS = _prop("integer", "Number of inference steps.", default=28, minimum=1, maximum=50)
_GUIDANCE = _prop("number", "Classifier-free guidance scale.", default=3.5, minimum=0, maximum=20)
_IMAGE = _prop("string", "Optional input image (URL or base64) for image-to-image generation.")
_MASK = _prop("string", "Optional mask image: white = generate, black = keep.")
_STRENGTH = _prop("number", "How strongly the input image is transformed.", default=0.8, minimum=0, maximum=1)

_DEV_LORA_INPUT: dict[str, dict[str, Any]] = {
    "prompt": _PROMPT,
    "image": _IMAGE,
    "mask_image": _MASK,
    "strength": _STRENGTH,
    "loras": _prop("array", "LoRAs to apply: [{path, scale}].", items={"type": "object"}),
    "size": _SIZE,
    "seed": _SEED,
    "guidance_scale": _GUIDANCE,
    "num_images": _NUM_IMAGES,
}

_SEEDREAM_INPUT: dict[str, dict[str, Any]] = {
    "prompt": _PROMPT,
    "size": {**_SIZE, "default": "2048*2048"},
    "seed": _SEED,
    "enable_base64_output": _prop(
        "boolean", "Return the output as a BASE64 string instead of a URL.", default=False
    ),
}

_ASPECT_ONLY_INPUT: dict[str, dict[str, Any]] = {
    "prompt": _PROMPT,
    "aspect_ratio": _prop(
        "string", "Aspect ratio of the output.", default="1:1", enum=["1:1", "16:9", "9:16"]
    ),
    "output_format": _prop("string", "Output file type.", default="png", enum=["png", "jpeg"]),
}

_VIDEO_INPUT: dict[str, dict[str, Any]] = {
    "prompt": _PROMPT,
    "size": {**_SIZE, "default": "1280*720"},
    "duration": _prop("integer", "Video length in seconds.", default=5, enum=[5, 10]),
    "seed": _SEED,
}


@dataclass(frozen=True)
class CatalogueModel:
    """One catalogue model and what the emulator knows about its input."""

    id: str
    type: str  # "Image" | "Video" | "Text" | "Audio"
    display_name: str
    organization: str
    categories: tuple[str, ...]
    base_price: str
    unit: str
    profile: str
    priority: int = 0
    display_console: bool = True
    input_properties: dict[str, dict[str, Any]] | None = None
    required: tuple[str, ...] = ("prompt",)
    strict: bool = False  # reject unknown parameters, validate types and ranges
    size_range: tuple[int, int] | None = None  # allowed side length for strict models
    tags: tuple[str, ...] = field(default=())
    kind: str = "text-to-image"  # from the shared table: how the emulator draws its outputs

    @property
    def uuid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"atlas-emulator:{self.id}"))


def _input_properties(row: ModelSpec) -> dict[str, dict[str, Any]]:
    """The Input schema a row of the shared table implies (what the real schema would say)."""
    props: dict[str, dict[str, Any]] = {}
    if row.prompt != "none":
        props["prompt"] = _PROMPT
    if row.references == 1:
        props["image"] = _prop("string", "The picture to use (URL or base64).")
    elif row.references > 1:
        props["images"] = _prop(
            "array",
            "Reference pictures (URLs).",
            items={"type": "string"},
            minItems=1,
            maxItems=row.references,
        )
    if row.mask:
        props["mask_image"] = _prop("string", "Mask: white = repaint, black = keep; same size as the image.")
    if row.sizing == "size":
        size = dict(_SIZE)
        if row.default_size:
            size["default"] = row.default_size
        else:
            size.pop("default")  # edits keep the size of the input picture
        props["size"] = size
    elif row.sizing == "aspect_ratio":
        props["aspect_ratio"] = _prop(
            "string", "Aspect ratio of the output.", default="1:1", enum=list(ASPECT_RATIOS)
        )
    for param in row.params.values():
        prop = _prop(param.type, param.description or param.wire)
        if param.default is not None:
            prop["default"] = param.default
        if param.range is not None:
            prop["minimum"] = _json_number(param.range.minimum)
            prop["maximum"] = _json_number(param.range.maximum)
        if param.choices is not None:
            prop["enum"] = list(param.choices)
        props[param.wire] = prop
    return props


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _required(row: ModelSpec) -> tuple[str, ...]:
    required = ["prompt"] if row.prompt == "required" else []
    if row.references_required:
        required.append("images" if row.references > 1 else "image")
    if row.kind == "inpaint":
        required.append("mask_image")
    return tuple(required)


_CATEGORIES = {
    "text-to-image": ("TEXT-TO-IMAGE",),
    "edit": ("IMAGE-TO-IMAGE",),
    "multi-edit": ("IMAGE-TO-IMAGE",),
    "inpaint": ("IMAGE-TO-IMAGE", "IMAGE-TOOLS"),
    "variation": ("IMAGE-TO-IMAGE",),
}


def _from_row(row: ModelSpec, priority: int) -> CatalogueModel:
    return CatalogueModel(
        id=row.id,
        type="Image",
        display_name=row.name,
        organization="Black Forest Labs",
        categories=_CATEGORIES[row.kind],
        base_price=str(row.price) if row.price is not None else _UNPUBLISHED_PRICE,
        unit=row.price_unit,
        profile=row.description or row.name,
        priority=priority,
        input_properties=_input_properties(row),
        required=_required(row),
        strict=True,
        size_range=(int(row.side.minimum), int(row.side.maximum)) if row.side is not None else None,
        tags=("flux", row.kind),
        kind=row.kind,
    )


MODELS: tuple[CatalogueModel, ...] = (
    *(_from_row(row, priority=max(1, 10 - n)) for n, row in enumerate(BUILT_IN)),
    CatalogueModel(
        id="black-forest-labs/flux-dev-lora",
        type="Image",
        display_name="FLUX.1 [dev] LoRA",
        organization="Black Forest Labs",
        categories=("TEXT-TO-IMAGE",),
        base_price="0.015",
        unit="image",
        profile="FLUX.1 [dev] with custom LoRA weights.",
        priority=8,
        input_properties=_DEV_LORA_INPUT,
        tags=("flux", "lora"),
    ),
    CatalogueModel(
        id="bytedance/seedream-v4",
        type="Image",
        display_name="Seedream 4.0",
        organization="ByteDance",
        categories=("TEXT-TO-IMAGE",),
        base_price="0.03",
        unit="image",
        profile="Seedream 4.0 text-to-image model.",
        priority=6,
        input_properties=_SEEDREAM_INPUT,
        tags=("seedream",),
    ),
    CatalogueModel(
        id="google/imagen4",
        type="Image",
        display_name="Imagen 4",
        organization="Google",
        categories=("TEXT-TO-IMAGE",),
        base_price="0.04",
        unit="image",
        profile="Imagen 4: sized by aspect ratio, one picture per run.",
        priority=6,
        input_properties=_ASPECT_ONLY_INPUT,
        strict=True,
        tags=("imagen",),
    ),
    CatalogueModel(
        id="alibaba/wan-2.6/text-to-video",
        type="Video",
        display_name="Wan 2.6 Text-to-Video",
        organization="Alibaba",
        categories=("TEXT-TO-VIDEO",),
        base_price="0.07",
        unit="second",
        profile="Wan 2.6 text-to-video model.",
        priority=5,
        input_properties=_VIDEO_INPUT,
        tags=("video",),
    ),
    CatalogueModel(
        id="deepseek-ai/DeepSeek-V3.1",
        type="Text",
        display_name="DeepSeek V3.1",
        organization="DeepSeek",
        categories=("LLM",),
        base_price="0.0",
        unit="generation",
        profile="DeepSeek V3.1 chat model (served on the LLM API, not generateImage).",
        priority=4,
        tags=("llm",),
    ),
    CatalogueModel(
        id="internal/test-image-model",
        type="Image",
        display_name="Internal test image model",
        organization="Atlas Cloud",
        categories=("TEXT-TO-IMAGE",),
        base_price="0.01",
        unit="image",
        profile="Internal model; hidden from the console.",
        display_console=False,
        input_properties={"prompt": _PROMPT, "size": _SIZE},
    ),
)


def slug(model_id: str) -> str:
    """The static-file name of a model: its id with ``/`` replaced by ``-``."""
    return model_id.replace("/", "-")


def price_for(spec: CatalogueModel, num_images: int) -> str:
    """Price of one prediction as a decimal string: per-image price times the image count."""
    total = Decimal(spec.base_price) * (num_images if spec.unit == "image" else 1)
    return format(total.normalize(), "f")


def catalogue_entry(spec: CatalogueModel, base: str) -> dict[str, Any]:
    """One ``/api/v1/models`` entry (its fields: docs/atlas-api.md)."""
    entry: dict[str, Any] = {
        "uuid": spec.uuid,
        "model": spec.id,
        "type": spec.type,
        "displayName": spec.display_name,
        "profile": spec.profile,
        "avatar": f"{base}/model/avatar/{slug(spec.id)}.png",
        "readme": f"{base}/model/readme/{slug(spec.id)}.md",
        "tags": list(spec.tags),
        "categories": list(spec.categories),
        "organization": spec.organization,
        "price": {
            "discount": "100",
            "actual": {"base_price": spec.base_price, "unit": spec.unit},
            "origin": {"base_price": spec.base_price},
        },
        "display_console": spec.display_console,
        "priority": spec.priority,
    }
    if spec.input_properties is not None:
        entry["schema"] = f"{base}/model/schema/{slug(spec.id)}.json"
    if spec.type == "Text":
        entry["supported_protocols"] = ["openai"]
        entry["contextLength"] = 131072
    return entry


def _submit_path(spec: CatalogueModel) -> str:
    return f"/api/v1/model/generate{spec.type}"


def schema_document(spec: CatalogueModel, base: str) -> dict[str, Any]:
    """The per-model OpenAPI document that the catalogue's ``schema`` field points to."""
    properties = {"model": {"type": "string", "default": spec.id, "description": "Model id."}}
    properties.update(copy.deepcopy(spec.input_properties or {}))
    return {
        "openapi": "3.0.0",
        "info": {"title": spec.display_name, "version": "1.0.0"},
        "servers": [{"url": base}],
        "paths": {
            _submit_path(spec): {
                "post": {
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Input"}}}
                    },
                    "responses": {"200": {"description": "Prediction created"}},
                }
            },
            "/api/v1/model/prediction/{id}": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/PredictionResponse"}
                                }
                            }
                        }
                    }
                }
            },
        },
        "components": {
            "schemas": {
                "Input": {
                    "type": "object",
                    "required": ["model", *spec.required],
                    "properties": properties,
                    "x-order-properties": list(properties),
                },
                "PredictionResponse": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "integer"},
                        "message": {"type": "string"},
                        "data": {"type": "object"},
                    },
                },
            }
        },
    }


def readme_text(spec: CatalogueModel) -> str:
    return (
        f"# {spec.display_name}\n\n{spec.profile}\n\n"
        f"- Model id: `{spec.id}`\n- Type: {spec.type}\n"
        f"- Price: ${spec.base_price} per {spec.unit}\n\n"
        "_Served by the local Atlas Cloud emulator._\n"
    )
