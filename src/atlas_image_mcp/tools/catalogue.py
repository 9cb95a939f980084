"""``list_models``: the image models of the Atlas catalogue, with their prices."""

from __future__ import annotations

from typing import Annotated, Any

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from ..errors import AtlasError
from ..params import ListModelsArguments, tool_signature
from .results import ToolContext, fail, runtime_of

__all__ = ["ModelList", "list_models"]


class ModelEntry(BaseModel):
    id: str
    name: str
    price: str | None = Field(default=None, description="USD per run/image as listed by Atlas.")
    price_unit: str | None = None
    description: str = ""


class ModelList(BaseModel):
    """The structured result of list_models."""

    models: list[ModelEntry]
    query: str | None = None


@tool_signature(ListModelsArguments)
async def list_models(ctx: ToolContext, **arguments: Any) -> Annotated[CallToolResult, ModelList]:
    """List the image models of the Atlas catalogue with their price per run, FLUX first."""
    runtime = runtime_of(ctx)
    try:
        args = ListModelsArguments(**arguments)
        models = await runtime.client.list_models()
    except AtlasError as err:
        raise fail(err) from err
    query = args.query
    words = (query or "").lower().split()
    picked = [m for m in models if all(w in f"{m.id} {m.name} {m.description}".lower() for w in words)]
    picked.sort(key=lambda m: (not m.id.startswith("black-forest-labs/flux"), m.id))
    entries = [
        ModelEntry(
            id=m.id, name=m.name, price=m.price, price_unit=m.price_unit, description=m.description[:300]
        )
        for m in picked
    ]
    lines = [f"{len(entries)} image model(s)" + (f" matching {query!r}" if query else "") + ":"]
    for e in entries:
        price = f" — ${e.price}/{e.price_unit or 'run'}" if e.price else ""
        lines.append(f"- {e.id} ({e.name}){price}")
    if not entries:
        lines.append("None. Try a shorter query, or call list_models without one.")
    structured = ModelList(models=entries, query=query).model_dump()
    return CallToolResult(
        content=[TextContent(type="text", text="\n".join(lines))], structured_content=structured
    )
