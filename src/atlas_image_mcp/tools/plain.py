"""The SDK's ``Tool`` with plain argument errors, unknown names refused, and a lean schema.

Out of the box the SDK answers a schema violation with pydantic's own dump (type names, a
pydantic.dev link) and silently drops argument names it does not know, so a guessed name such as
``size`` produces a picture that ignores it. :class:`PlainTool` checks the raw arguments against
the tool's argument model first (the model :func:`~atlas_image_mcp.params.tool_signature` gave the
function, with ``extra="forbid"``), so every tool, now or later, answers in the server's own words:

    Invalid width: 5000 is out of range; allowed: 256 to 1536.
    Unknown argument size; the accepted arguments are prompt, model, width, ...

Unknown names fail the call instead of proceeding with a note: the check runs before anything is
sent, so the refusal costs nothing, while proceeding would bill a picture that is not the one asked
for; the message lists the accepted names, so the next call gets it right.

The schemas published in ``tools/list`` are trimmed by :func:`~atlas_image_mcp.schema.compact_schema`
and the input schema says ``additionalProperties: false``, which is what the check enforces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import Field, create_model

from ..errors import InvalidParameterError
from ..params import Arguments, arguments_model
from ..schema import compact_schema

if TYPE_CHECKING:
    from mcp.server.mcpserver.context import Context

__all__ = ["PlainTool", "plain_tool"]


class PlainTool(Tool):
    """A tool whose arguments are checked against ``strict_arguments`` before the SDK sees them."""

    strict_arguments: type[Arguments] | None = Field(default=None, exclude=True)

    async def run(
        self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False
    ) -> Any:
        if self.strict_arguments is not None:
            try:
                # The SDK's own pre-parsing first (JSON text for a list or object field), so that
                # exactly the arguments the SDK accepts pass here too.
                self.strict_arguments(**self.fn_metadata.pre_parse_json(arguments))
            except InvalidParameterError as err:
                raise ToolError(f"Error executing tool {self.name}: {err.message}") from err
        return await super().run(arguments, context, convert_result)


def plain_tool(
    fn: Callable[..., Any],
    *,
    title: str | None = None,
    annotations: ToolAnnotations | None = None,
    meta: dict[str, Any] | None = None,
) -> PlainTool:
    """A :class:`PlainTool` for ``fn``, its schemas trimmed for ``tools/list``."""
    tool = PlainTool.from_function(fn, title=title, annotations=annotations, meta=meta)
    assert isinstance(tool, PlainTool)
    model = arguments_model(fn) or _model_of(tool)
    tool.strict_arguments = model
    tool.parameters = {**compact_schema(tool.parameters), "additionalProperties": False}
    if tool.fn_metadata.output_schema is not None:  # read live by the SDK (before the first tools/list)
        tool.fn_metadata.output_schema = compact_schema(tool.fn_metadata.output_schema, output=True)
    return tool


def _model_of(tool: Tool) -> type[Arguments]:
    """For a tool function declared without an argument model: one from its signature's fields."""
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in tool.fn_metadata.arg_model.model_fields.items()
    }
    return create_model(f"{tool.name}_arguments", __base__=Arguments, **fields)
