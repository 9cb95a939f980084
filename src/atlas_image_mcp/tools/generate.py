"""``generate_image``: from a sentence to a saved picture in one call."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Resolve
from mcp_types import CallToolResult

from ..catalogue import ModelSpec
from ..params import GenerateImageArguments, tool_signature
from ..render import GenerationResult
from .cost import Confirmation, Plan, confirm_resolver, plan_resolver
from .jobs import Job, run_generation
from .results import ToolContext

__all__ = ["generate_image"]


async def _plan(ctx: ToolContext, arguments: dict[str, Any]) -> tuple[Job, ModelSpec | None]:
    args = GenerateImageArguments(**arguments)
    return Job("generate_image", args.request(), args), None


_PLAN = plan_resolver(GenerateImageArguments, _plan)
_CONFIRM = confirm_resolver(_PLAN)


@tool_signature(GenerateImageArguments)
async def generate_image(
    ctx: ToolContext,
    plan: Annotated[Plan, Resolve(_PLAN)],
    confirmation: Annotated[Confirmation, Resolve(_CONFIRM)],
    **arguments: Any,
) -> Annotated[CallToolResult, GenerationResult]:
    """Generate pictures with FLUX on Atlas Cloud and return them in one call (URL, saved path, preview)."""
    return await run_generation(ctx, plan, confirmation)
