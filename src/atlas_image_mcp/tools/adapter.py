"""The one adapter between the SDK and the tool functions.

A tool function here is plain: ``async def generate_image(call: Call, args: GenerateImageArguments)``
returns its ``CallToolResult``; its argument model (from :mod:`atlas_image_mcp.params`) is what a
reader sees and what the schema in ``tools/list`` says. :func:`adapt` turns one into the SDK's
``Tool``, and :class:`AdaptedTool` runs it:

1. the raw arguments are checked against the argument model first (after the SDK's own
   pre-parsing of lists and objects sent as JSON text), so a bad or unknown argument gets the
   server's plain sentence instead of pydantic's dump ("Invalid width: 5000 is out of range;
   allowed: 256 to 1536.", "Unknown argument size (use width and height, or aspect_ratio); the
   accepted arguments are prompt, ..."), before anything is sent;
2. the :class:`~atlas_image_mcp.call.Call` is built, once;
3. the function runs; an :class:`~atlas_image_mcp.errors.AtlasError` it raises becomes the tool
   error the assistant reads, as does a ``ToolError``; anything else is a crash whose text stays in
   the server's log.

Unknown names fail the call instead of proceeding with a note: the check runs before anything is
sent, so the refusal costs nothing, while proceeding would bill a picture that is not the one asked
for; the message lists the accepted names, so the next call gets it right. The published schemas are
trimmed by :func:`~atlas_image_mcp.schema.compact_schema`, and the input schema says
``additionalProperties: false``, which is what the check enforces.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, get_type_hints

from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field

from ..call import Call
from ..errors import AtlasError, InvalidParameterError
from ..params import Arguments, NoArguments
from ..schema import compact_schema

if TYPE_CHECKING:
    from mcp.server.mcpserver.context import Context

__all__ = ["AdaptedTool", "ToolFunction", "adapt"]

#: What a tool function returns: its result, or (a picture tool on 2026-07-28) a question first.
Answer = CallToolResult | InputRequiredResult
ToolFunction = Callable[..., Awaitable[Answer]]


class AdaptedTool(Tool):
    """A tool function ``fn(call, args)`` (or ``fn(call)``) as the SDK's ``Tool``."""

    arguments: type[Arguments] = Field(exclude=True)

    async def run(
        self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False
    ) -> Any:
        try:
            # The SDK's own pre-parsing first (JSON text for a list or object field), so that
            # exactly what the SDK would accept passes here too.
            args = self.arguments(**self.fn_metadata.pre_parse_json(arguments))
        except InvalidParameterError as err:
            raise ToolError(f"Error executing tool {self.name}: {err.message}") from err
        try:
            call = Call.of(context)
            with call.runtime.lend(call.caller):  # its key may settle its own orphans meanwhile
                result = await (self.fn(call) if self.arguments is NoArguments else self.fn(call, args))
        except MCPError:
            raise  # a protocol-level answer, not a tool error
        except AtlasError as err:
            raise ToolError(f"Error executing tool {self.name}: {err.message}") from err
        except (ToolError, ResourceError) as err:
            raise ToolError(f"Error executing tool {self.name}: {err}") from err
        except Exception as err:  # a crash: its text stays in the server's log
            raise UnexpectedToolError(f"Error executing tool {self.name}") from err
        return self.fn_metadata.convert_result(result) if convert_result else result


def adapt(
    fn: ToolFunction,
    *,
    title: str,
    annotations: ToolAnnotations,
    meta: dict[str, Any] | None = None,
) -> AdaptedTool:
    """The SDK ``Tool`` for ``fn``: its name and description from the function, its input schema
    from its argument model, its output schema from the model its result's ``structuredContent``
    follows (the second argument of its ``Annotated`` return type)."""
    hints = get_type_hints(fn, include_extras=True)
    parameters = list(inspect.signature(fn).parameters)
    model: type[Arguments] = hints[parameters[1]] if len(parameters) > 1 else NoArguments
    result_model: type[BaseModel] = hints["return"].__metadata__[0]
    metadata = FuncMetadata(arg_model=model, output_model=result_model)
    if metadata.output_schema is not None:
        metadata.output_schema = compact_schema(metadata.output_schema, output=True)
    return AdaptedTool(
        fn=fn,
        name=fn.__name__,
        title=title,
        description=fn.__doc__ or "",
        parameters=_input_schema(model),
        fn_metadata=metadata,
        is_async=True,
        context_kwarg=None,
        annotations=annotations,
        meta=meta,
        arguments=model,
    )


def _input_schema(model: type[Arguments]) -> dict[str, Any]:
    """``model``'s JSON Schema as ``tools/list`` publishes it: trimmed, and closed to other names."""
    schema = compact_schema(model.model_json_schema(by_alias=True))
    published: dict[str, Any] = {"type": "object", "properties": schema.get("properties", {})}
    for key in ("required", "$defs"):
        if key in schema:
            published[key] = schema[key]
    published["additionalProperties"] = False
    return published
