"""``list_models``: the image models, what each is for and takes, and what it costs."""

from __future__ import annotations

from typing import Annotated

import anyio
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ..call import Call
from ..catalogue import ModelKind, ModelSpec
from ..params import ListModelsArguments

__all__ = ["ModelList", "list_models"]

#: Schemas read per call for models whose row is not known yet (the others show their category).
_SCHEMAS_PER_CALL = 24
_KIND_ORDER: dict[ModelKind, int] = {
    "text-to-image": 0,
    "edit": 1,
    "multi-edit": 2,
    "inpaint": 3,
    "variation": 4,
}


class ModelEntry(BaseModel):
    id: str
    name: str
    kind: ModelKind = Field(description="text-to-image, edit, multi-edit, inpaint or variation.")
    references: int = Field(description="Input pictures it takes: 0, 1 (image) or up to N (images).")
    mask: bool = Field(description="Whether it takes a mask_image (inpainting).")
    price: str | None = Field(default=None, description="USD per price_unit as listed by Atlas.")
    price_unit: str | None = None
    description: str = ""


class ModelList(BaseModel):
    """The structured result of list_models."""

    models: list[ModelEntry]
    query: str | None = None


async def list_models(call: Call, args: ListModelsArguments) -> Annotated[CallToolResult, ModelList]:
    """List the image models: kind (generate, edit, inpaint, ...), inputs and price, FLUX first."""
    runtime = call.runtime
    catalogue = runtime.catalogue
    await catalogue.refresh_listing(runtime.client)
    words = (args.query or "").lower().split()
    picked = [
        spec
        for spec in catalogue.rows()
        if all(w in f"{spec.id} {spec.name} {spec.kind} {spec.description}".lower() for w in words)
    ]
    await _read_schemas(call, [s.id for s in picked if not s.from_schema and s.sizing == "none"])
    picked = [catalogue.get(s.id) or s for s in picked]
    picked.sort(key=lambda s: (not s.id.startswith("black-forest-labs/flux"), _KIND_ORDER[s.kind], s.id))
    entries = [_entry(spec) for spec in picked]
    lines = [f"{len(entries)} image model(s)" + (f" matching {args.query!r}" if args.query else "") + ":"]
    lines += [_line(e) for e in entries]
    if not entries:
        lines.append("None. Try a shorter query, or call list_models without one.")
    if catalogue.listed(picked[0].id if picked else "") is None:
        lines.append("(The live catalogue could not be read; these are the built-in models.)")
    structured = ModelList(models=entries, query=args.query).model_dump()
    return CallToolResult(
        content=[TextContent(type="text", text="\n".join(lines))], structured_content=structured
    )


async def _read_schemas(call: Call, model_ids: list[str]) -> None:
    """Read the schemas of models not known yet (a few at a time, a bounded number per call)."""
    runtime = call.runtime
    limiter = anyio.Semaphore(4)

    async def one(model_id: str) -> None:
        async with limiter:
            await runtime.catalogue.spec(model_id, runtime.client)

    async with anyio.create_task_group() as tg:
        for model_id in model_ids[:_SCHEMAS_PER_CALL]:
            tg.start_soon(one, model_id)


def _entry(spec: ModelSpec) -> ModelEntry:
    return ModelEntry(
        id=spec.id,
        name=spec.name,
        kind=spec.kind,
        references=spec.references,
        mask=spec.mask,
        price=f"{spec.price:f}" if spec.price is not None else None,
        price_unit=spec.price_unit if spec.price is not None else None,
        description=spec.description[:300],
    )


def _line(e: ModelEntry) -> str:
    inputs = {0: "", 1: ", 1 picture"}.get(e.references, f", up to {e.references} pictures")
    mask = ", mask" if e.mask else ""
    price = f" — ${e.price}/{e.price_unit}" if e.price else ""
    return f"- {e.id} ({e.name}): {e.kind}{inputs}{mask}{price}"
