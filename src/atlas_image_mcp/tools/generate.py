"""``generate_image``: from a sentence to a saved picture in one call."""

from __future__ import annotations

from typing import Annotated, Any

from mcp_types import CallToolResult

from ..errors import AtlasError
from ..params import CallOptions, GenerateImageArguments, tool_signature
from ..render import GenerationResult
from .jobs import Job, run_generation
from .results import ToolContext, fail

__all__ = ["generate_image"]


@tool_signature(GenerateImageArguments)
async def generate_image(ctx: ToolContext, **arguments: Any) -> Annotated[CallToolResult, GenerationResult]:
    """Generate pictures with FLUX on Atlas Cloud and return them in one call (URL, saved path, preview)."""
    try:
        args = GenerateImageArguments(**arguments)
    except AtlasError as err:
        raise fail(err) from err
    options = CallOptions(**args.model_dump(include=set(CallOptions.model_fields)))
    return await run_generation(ctx, Job("generate_image", args.request(), options))
