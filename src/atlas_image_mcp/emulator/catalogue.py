"""The emulator's model catalogue: a handful of entries shaped like ``GET /api/v1/models``.

Source: ``shared/reference/atlas-api.md`` 4.1.1 (FLUX schnell), 4.1.2 (FLUX dev) and 4.5 (catalogue
and schema documents). The two FLUX models carry their exact Input schema and are validated
strictly; every other image model is a pass-through (any extra parameter is accepted). The video,
text and hidden (``display_console: false``) entries exist so that clients can be tested on
filtering them out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "MODELS",
    "CatalogueModel",
    "catalogue_entry",
    "find_model",
    "find_model_by_slug",
    "price_for",
    "readme_text",
    "schema_document",
    "slug",
]

_SEED_MAX = 2**31 - 1


def _prop(type_: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "description": description, **extra}


_PROMPT = _prop("string", "The prompt to generate an image from.")
_IMAGE = _prop("string", "Optional input image (URL or base64) for image-to-image generation.")
_MASK = _prop("string", "Optional mask image: white = generate, black = keep.")
_STRENGTH = _prop("number", "How strongly the input image is transformed.", default=0.8, minimum=0, maximum=1)
_SIZE = _prop("string", "Output image size, width*height in pixels.", default="1024*1024")
_SEED = _prop("integer", "Random seed; -1 for random.", default=-1, minimum=-1, maximum=_SEED_MAX)
_NUM_IMAGES = _prop("integer", "Number of images to generate.", default=1, minimum=1, maximum=4)
_STEPS = _prop("integer", "Number of inference steps.", default=28, minimum=1, maximum=50)
_GUIDANCE = _prop("number", "Classifier-free guidance scale.", default=3.5, minimum=0, maximum=20)
_SYNC = _prop("boolean", "Wait for the image to be generated before returning the response.", default=False)
_BASE64 = _prop("boolean", "Return the output as a BASE64 string instead of a URL.", default=False)
_SAFETY = _prop("boolean", "Enable the safety checker.", default=True)

_SCHNELL_INPUT: dict[str, dict[str, Any]] = {
    "prompt": _PROMPT,
    "image": _IMAGE,
    "mask_image": _MASK,
    "strength": _STRENGTH,
    "size": _SIZE,
    "seed": _SEED,
    "num_images": _NUM_IMAGES,
    "enable_sync_mode": _SYNC,
    "enable_base64_output": _BASE64,
    "enable_safety_checker": _SAFETY,
}

_DEV_INPUT: dict[str, dict[str, Any]] = {
    "prompt": _PROMPT,
    "image": _IMAGE,
    "mask_image": _MASK,
    "strength": _STRENGTH,
    "size": _SIZE,
    "num_inference_steps": _STEPS,
    "seed": _SEED,
    "guidance_scale": _GUIDANCE,
    "num_images": _NUM_IMAGES,
    "enable_base64_output": _BASE64,
    "enable_safety_checker": _SAFETY,
}

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

_KONTEXT_INPUT: dict[str, dict[str, Any]] = {
    "prompt": _PROMPT,
    "image": _prop("string", "The image to edit (URL or base64)."),
    "size": _SIZE,
    "num_inference_steps": _STEPS,
    "guidance_scale": {**_GUIDANCE, "default": 2.5},
    "seed": _SEED,
    "num_images": _NUM_IMAGES,
    "enable_base64_output": _BASE64,
    "enable_safety_checker": _SAFETY,
}

_SEEDREAM_INPUT: dict[str, dict[str, Any]] = {
    "prompt": _PROMPT,
    "size": {**_SIZE, "default": "2048*2048"},
    "seed": _SEED,
    "enable_base64_output": _BASE64,
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

    @property
    def uuid(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"atlas-emulator:{self.id}"))


MODELS: tuple[CatalogueModel, ...] = (
    CatalogueModel(
        id="black-forest-labs/flux-schnell",
        type="Image",
        display_name="FLUX.1 [schnell]",
        organization="Black Forest Labs",
        categories=("TEXT-TO-IMAGE",),
        base_price="0.003",
        unit="image",
        profile="FLUX.1 [schnell] is the fastest FLUX text-to-image model, tuned for 1-4 steps.",
        priority=10,
        input_properties=_SCHNELL_INPUT,
        strict=True,
        size_range=(256, 1536),
        tags=("flux", "fast"),
    ),
    CatalogueModel(
        id="black-forest-labs/flux-dev",
        type="Image",
        display_name="FLUX.1 [dev]",
        organization="Black Forest Labs",
        categories=("TEXT-TO-IMAGE",),
        base_price="0.012",
        unit="image",
        profile="FLUX.1 [dev] is a 12B guidance-distilled text-to-image model with high prompt fidelity.",
        priority=9,
        input_properties=_DEV_INPUT,
        strict=True,
        size_range=(512, 1536),
        tags=("flux", "quality"),
    ),
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
        id="black-forest-labs/flux-kontext-dev",
        type="Image",
        display_name="FLUX.1 Kontext [dev]",
        organization="Black Forest Labs",
        categories=("IMAGE-TO-IMAGE",),
        base_price="0.025",
        unit="image",
        profile="FLUX.1 Kontext [dev] edits an image from a text instruction.",
        priority=7,
        input_properties=_KONTEXT_INPUT,
        required=("prompt", "image"),
        tags=("flux", "edit"),
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

_BY_ID = {spec.id: spec for spec in MODELS}


def slug(model_id: str) -> str:
    """The static-file name of a model: its id with ``/`` replaced by ``-``."""
    return model_id.replace("/", "-")


_BY_SLUG = {slug(spec.id): spec for spec in MODELS}


def find_model(model_id: object) -> CatalogueModel | None:
    return _BY_ID.get(model_id) if isinstance(model_id, str) else None


def find_model_by_slug(name: str) -> CatalogueModel | None:
    return _BY_SLUG.get(name)


def price_for(spec: CatalogueModel, num_images: int) -> str:
    """Price of one prediction as a decimal string: per-image price times the image count."""
    total = Decimal(spec.base_price) * (num_images if spec.unit == "image" else 1)
    return format(total.normalize(), "f")


def catalogue_entry(spec: CatalogueModel, base: str) -> dict[str, Any]:
    """One ``/api/v1/models`` entry (atlas-api.md 4.5)."""
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
    properties.update(spec.input_properties or {})
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
                    "responses": {"200": {"description": "EmulatedPrediction created"}},
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
