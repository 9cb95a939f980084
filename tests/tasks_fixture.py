"""The conformance suite's tasks fixture server, built on the product's own tasks extension.

The suite's ``tasks-*`` scenarios (``@modelcontextprotocol/conformance`` 0.2.0-alpha.12) call tools
by fixed names with fixed behaviours (``conformance list`` and the scenario descriptions in the
package): ``greet`` (never a task), ``slow_compute`` (optional), ``failing_job`` (required; a tool
error), ``protocol_error_job`` (a JSON-RPC error), ``confirm_delete`` and ``multi_input`` (input
requests inside a task), ``test_tool_with_task`` (required; one synchronous input round, then a
task). They live here, in the tests, not in the product; everything else is
:class:`atlas_image_mcp.tasks_legacy.TasksWithLegacyForm` exactly as the product uses it.

    python -m tests.tasks_fixture 8765     # serve it on 127.0.0.1:8765 to run the suite by hand
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, ElicitRequest, ElicitRequestFormParams, InputRequiredResult

from atlas_image_mcp.taskids import TaskIds
from atlas_image_mcp.tasks import TaskTool, current_task
from atlas_image_mcp.tasks_legacy import TasksWithLegacyForm

__all__ = ["fixture_app", "fixture_server"]

TTL_SECONDS = 600
POLL_INTERVAL_MS = 200


def _ask(message: str, field: str, kind: str = "string") -> ElicitRequest:
    schema = {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def fixture_server() -> MCPServer[Any]:
    tasks = TasksWithLegacyForm(
        TaskIds(secrets.token_bytes(32)), ttl_seconds=TTL_SECONDS, poll_interval_ms=POLL_INTERVAL_MS
    )

    @asynccontextmanager
    async def lifespan(_server: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        async with tasks.running():
            yield {}

    server: MCPServer[Any] = MCPServer("atlas-image-mcp-tasks-fixture", extensions=[tasks], lifespan=lifespan)
    tasks.bind(server)

    @server.tool()
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    @server.tool()
    async def slow_compute(seconds: float = 1.0, label: str = "") -> str:
        await anyio.sleep(min(max(seconds, 0.0), 120.0))  # the slow work the scenario asks for
        return f"Computed {label or 'result'} after {seconds} s"

    @server.tool()
    async def failing_job() -> str:
        raise ToolError("The job failed (a tool error, reported as a completed task with isError).")

    @server.tool()
    async def protocol_error_job() -> str:
        raise MCPError(code=INTERNAL_ERROR, message="Internal error in protocol_error_job")

    @server.tool()
    async def confirm_delete(filename: str, ctx: Context) -> str | InputRequiredResult:
        answers = ctx.input_responses or {}
        if "confirm" not in answers:
            return InputRequiredResult(
                input_requests={"confirm": _ask(f"Delete {filename}?", "confirm", "boolean")}
            )
        return f"Deleted {filename}"

    @server.tool()
    async def multi_input(ctx: Context) -> str | InputRequiredResult:
        answers = ctx.input_responses or {}
        if not {"first", "second"} <= answers.keys():
            return InputRequiredResult(
                input_requests={
                    "first": _ask("First value?", "value"),
                    "second": _ask("Second value?", "value"),
                }
            )
        return "Both inputs received"

    @server.tool()
    async def test_tool_with_task(ctx: Context) -> str | InputRequiredResult:
        answers = ctx.input_responses or {}
        if "user_name" not in answers:  # answered synchronously, before any task exists
            return InputRequiredResult(input_requests={"user_name": _ask("What is your name?", "name")})
        run = current_task()
        if run is not None:
            run.handoff()  # from here on the call is a task
        content = getattr(answers["user_name"], "content", None) or {}
        return f"Hello, {content.get('name', 'stranger')}!"

    tasks.add_tool("slow_compute")
    tasks.add_tool("failing_job", TaskTool(required=True))
    tasks.add_tool("protocol_error_job")
    tasks.add_tool("confirm_delete")
    tasks.add_tool("multi_input")
    tasks.add_tool("test_tool_with_task", TaskTool(required=True, handoff=True))
    return server


def fixture_app() -> Any:
    """The fixture server as a streamable-HTTP app (``/mcp``) for 127.0.0.1."""
    return fixture_server().streamable_http_app(host="127.0.0.1")


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(fixture_app(), host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
