"""The private library details in ``atlas_image_mcp.compat`` are still there, in the tested versions.

These tests fail loudly when an upgrade of the MCP SDK, uvicorn or sse-starlette moves one of
them: re-check ``compat.py`` (each function says why it exists), then widen ``compat.TESTED`` and
the pins in ``pyproject.toml``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import uvicorn
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import EmptyResult
from pydantic import BaseModel

from atlas_image_mcp import compat


def test_the_installed_libraries_are_the_release_series_compat_was_checked_against() -> None:
    assert compat.untested_versions() == {}, (
        "re-check src/atlas_image_mcp/compat.py against these versions, then update compat.TESTED"
    )


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_a_request_handler_added_to_the_lowlevel_server_is_served() -> None:
    server: MCPServer[Any] = MCPServer("probe")

    class Params(BaseModel):
        level: str

    seen: list[str] = []

    async def handler(ctx: Any, params: Params) -> Any:
        seen.append(params.level)
        return EmptyResult()

    compat.add_request_handler(server, "logging/setLevel", Params, handler)
    async with Client(server, mode="legacy") as client:
        await client.set_logging_level("warning")
    assert seen == ["warning"]


async def test_connection_state_is_one_dict_for_every_request_of_a_connection() -> None:
    server: MCPServer[Any] = MCPServer("probe")
    states: list[dict[str, Any]] = []

    @server.tool()
    def probe(ctx: Context) -> str:
        state = compat.connection_state(ctx.request_context.session)
        state["calls"] = state.get("calls", 0) + 1
        states.append(state)
        return str(state["calls"])

    async with Client(server, mode="legacy") as client:
        await client.call_tool("probe", {})
        second = await client.call_tool("probe", {})
    assert second.structured_content == {"result": "2"}
    assert states[0] is states[1]


def test_uvicorn_still_has_the_shutdown_hook_and_attributes_we_wrap() -> None:
    server = uvicorn.Server(uvicorn.Config(app=lambda *a: None))
    assert inspect.iscoroutinefunction(server.shutdown)
    assert "sockets" in inspect.signature(server.shutdown).parameters
    assert hasattr(server, "force_exit")
    # ``servers`` is set when uvicorn starts listening; before that the attribute may be absent,
    # which stop_listening tolerates.
    compat.stop_listening(server)


def test_sse_starlette_still_has_the_drain_switches() -> None:
    from sse_starlette.sse import AppStatus

    compat.hold_sse_drain()
    try:
        compat.drain_sse_now()
        assert AppStatus.should_exit is True
    finally:
        compat.release_sse_drain()
    assert AppStatus.should_exit is False


@pytest.mark.parametrize("name", ["mcp", "uvicorn", "sse-starlette"])
def test_every_fenced_library_is_a_declared_dependency(name: str) -> None:
    from importlib.metadata import requires

    declared = " ".join(requires("atlas-image-mcp") or [])
    assert name in declared


def test_uvicorn_h11_protocol_still_has_what_the_head_timeout_reads() -> None:
    """``head_timeout_protocol`` subclasses uvicorn's H11Protocol and reads ``conn`` (h11 state),
    ``loop`` and ``transport`` of it; the behaviour is tested in test_trust_http.py."""
    import asyncio

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    protocol_class = compat.head_timeout_protocol(1.0)
    assert issubclass(protocol_class, H11Protocol)
    config = uvicorn.Config(app=lambda *a: None)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        protocol = protocol_class(
            config=config, server_state=uvicorn.server.ServerState(), app_state={}, _loop=loop
        )
        assert protocol.conn.their_state is h11.IDLE and protocol.loop is loop
        for name in ("connection_made", "data_received", "connection_lost"):
            assert callable(getattr(H11Protocol, name))
    finally:
        loop.close()
