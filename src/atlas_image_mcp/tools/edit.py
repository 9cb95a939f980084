"""``edit_image`` and ``generate_variations``: change, combine and vary pictures in one call."""

from __future__ import annotations

from typing import Annotated, Any

from ..call import Call
from ..catalogue import (
    DEFAULT_EDIT_MODELS,
    DEFAULT_INPAINT_MODELS,
    DEFAULT_MULTI_EDIT_MODELS,
    DEFAULT_VARIATION_MODELS,
    FRIENDLY_NAMES,
)
from ..constants import IMAGE_URI
from ..errors import AtlasError, InvalidParameterError
from ..params import EditImageArguments, EditParams, GenerationRequest, VariationsArguments
from ..render import GenerationResult
from .jobs import JobAnswer, run_job
from .plan import Job, model_spec

__all__ = ["edit_image", "generate_variations"]

#: Parameters of an earlier request that a variation repeats (the seed is new, the count is asked).
_REPLAYED = frozenset(
    {"prompt", "image", "images", "mask_image", "strength", "guidance_scale", "steps"}
    | {"enable_safety_checker", "output_format"}
)


async def edit_image(call: Call, args: EditImageArguments) -> Annotated[JobAnswer, GenerationResult]:
    """Edit a picture from an instruction, repaint a masked area, or combine pictures, in one call."""
    return await run_job(call, args, _edit)


async def generate_variations(
    call: Call, args: VariationsArguments
) -> Annotated[JobAnswer, GenerationResult]:
    """Make 1-4 variations of an earlier picture: its request again with new seeds, in one call."""
    return await run_job(call, args, _variations)


async def _edit(call: Call, args: EditImageArguments) -> Job:
    if not args.image and not args.images:
        raise InvalidParameterError("image", "give the picture to change (image), or several in images.")
    references = (1 if args.image else 0) + len(args.images or [])
    notes: list[str] = []
    model = args.model
    if model is None:
        defaults = (
            DEFAULT_INPAINT_MODELS
            if args.mask_image
            else DEFAULT_MULTI_EDIT_MODELS
            if references > 1
            else DEFAULT_EDIT_MODELS
        )
        model = call.runtime.catalogue.first_available(defaults)
        notes.append(f"Model: {model} (the default for this kind of edit; pass model to choose another).")
    spec = await model_spec(call, model)
    if spec is not None and spec.references == 0:
        raise InvalidParameterError(
            "model", f"{model} makes pictures from text only; choose an edit model (see list_models)."
        )
    fields = args.model_dump(include=set(EditParams.model_fields) - {"model"}, exclude_defaults=True)
    request = GenerationRequest(model=model, **fields)
    return Job("edit_image", request, args, tuple(notes), spec)


async def _variations(call: Call, args: VariationsArguments) -> Job:
    body, why = await _earlier_request(call, args.prediction_id)
    request, note = await _replay(call, body, args.count) if body is not None else (None, why)
    if request is None:
        model = call.runtime.catalogue.first_available(DEFAULT_VARIATION_MODELS)
        image = IMAGE_URI.format(prediction_id=args.prediction_id, index=1)
        request = GenerationRequest(model=model, image=image, num_images=args.count)
        note = f"The request of {args.prediction_id} cannot be repeated ({note}), so {model} varied it."
    spec = await model_spec(call, request.model)
    return Job("generate_variations", request, args, (note,), spec)


async def _earlier_request(call: Call, prediction_id: str) -> tuple[dict[str, Any] | None, str]:
    """The body an earlier job was sent with (this caller's history, else Atlas'), or None and why."""
    entry = await call.runtime.history.find(call.caller.history, prediction_id)
    if entry is not None and entry.request_body is not None:
        return dict(entry.request_body), ""
    try:
        body = await call.api.request_body_of(prediction_id)
    except AtlasError as err:
        return None, f"Atlas' history could not be read: {err.message}"
    return body, "" if body is not None else "Atlas' history does not have it"


async def _replay(call: Call, body: dict[str, Any], count: int) -> tuple[GenerationRequest | None, str]:
    """The earlier request with new seeds and ``count`` pictures, or None (and why) when it cannot be."""
    model = body.get("model")
    if not isinstance(model, str):
        return None, "its request names no model"
    spec = await model_spec(call, model)
    if spec is not None and count > 1 and not spec.multiple_outputs:
        return None, f"{model} makes one picture per run"
    fields: dict[str, Any] = {"model": model, "num_images": count, "seed": -1}
    extra: dict[str, Any] = {}
    for wire, value in body.items():
        name = FRIENDLY_NAMES.get(wire, wire)
        if name in _REPLAYED:
            fields[name] = value
        elif wire == "size" and isinstance(value, str) and "*" in value:
            width, _, height = value.partition("*")
            if width.isdigit() and height.isdigit():
                fields["width"], fields["height"] = int(width), int(height)
        elif wire == "aspect_ratio" and isinstance(value, str):
            fields["aspect_ratio"] = value
        elif wire not in ("model", "seed", "num_images"):
            extra[wire] = value
    references = [fields.get("image"), fields.get("mask_image"), *(fields.get("images") or [])]
    for ref in references:
        if isinstance(ref, str) and ref.startswith("http") and not await call.runtime.client.reachable(ref):
            return None, "its input pictures have expired at Atlas"
    try:
        request = GenerationRequest(**fields, extra=extra)
    except InvalidParameterError as err:
        return None, f"its request cannot be repeated ({err.message})"
    return request, f"Variations: the earlier job's request again ({model}), with new seeds."
