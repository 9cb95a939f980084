"""The private library details in ``atlas_image_mcp.compat`` are still there, in the tested versions.

These tests fail loudly when an upgrade of the MCP SDK, uvicorn or sse-starlette moves one of
them: re-check ``compat.py`` (each function says why it exists), then widen ``compat.TESTED`` and
the pins in ``pyproject.toml``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from mcp import Client
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import EmptyResult
from pydantic import BaseModel

from atlas_image_mcp import compat

from .http_helpers import RawSession, serve_app


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


async def test_a_middleware_reshapes_wire_results_and_may_answer_a_call_itself() -> None:
    """What the 2025-11-25 tasks form stands on (see compat.add_middleware)."""
    server: MCPServer[Any] = MCPServer("probe")

    @server.tool()
    def work() -> str:
        return "done"

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call" and (ctx.params or {}).get("task") is not None:
            return {"task": {"taskId": "probe", "status": "working"}}  # answered here, as it is
        result = await call_next(ctx)
        assert isinstance(result, dict)  # the wire form, after the SDK's per-version sieve
        if ctx.method == "initialize":
            return {**result, "capabilities": {**result["capabilities"], "tasks": {"list": {}}}}
        if ctx.method == "tools/list":
            return {
                **result,
                "tools": [{**tool, "execution": {"taskSupport": "optional"}} for tool in result["tools"]],
            }
        return result

    compat.add_middleware(server, middleware)
    with serve_app(server.streamable_http_app(host="127.0.0.1")) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            session = RawSession(http, f"{base}/mcp")
            initialized = await session.open("2025-11-25")
            tools = (await session.call("tools/list"))["result"]["tools"]
            as_task = (await session.call("tools/call", name="work", arguments={}, task={}))["result"]
            plain = (await session.call("tools/call", name="work", arguments={}))["result"]
    assert initialized["capabilities"]["tasks"] == {"list": {}}
    assert tools[0]["name"] == "work" and tools[0]["execution"] == {"taskSupport": "optional"}
    assert as_task == {"task": {"taskId": "probe", "status": "working"}}
    assert plain["content"][0]["text"] == "done"


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_a_quiet_session_keeps_a_tools_progress_and_logs_from_the_client() -> None:
    server: MCPServer[Any] = MCPServer("probe")
    kept: list[str | None] = []

    @server.tool()
    async def chatty(loud: bool, ctx: Context) -> str:
        await ctx.report_progress(1, 2, "half way")
        await ctx.info("a log line")
        return "ok"

    async def quiet(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        arguments = (ctx.params or {}).get("arguments") or {}
        if ctx.method == "tools/call" and not arguments.get("loud"):
            ctx = replace(ctx, session=compat.quiet_session(ctx.session, kept.append))
        return await call_next(ctx)

    compat.add_middleware(server, quiet)
    progress: list[Any] = []
    logs: list[Any] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    async def on_log(params: Any) -> None:
        logs.append(params.data)

    async with Client(server, mode="legacy", logging_callback=on_log) as client:
        await client.call_tool("chatty", {"loud": False}, progress_callback=on_progress)
        assert (progress, logs, kept) == ([], [], ["half way"])
        await client.call_tool("chatty", {"loud": True}, progress_callback=on_progress)  # the control
    assert progress == ["half way"] and logs == ["a log line"]


def test_the_session_manager_still_makes_and_ends_sessions_where_watch_sessions_hooks() -> None:
    """``watch_sessions`` wraps ``_admit_session`` (refusing makes the SDK answer 503) and
    ``_discard_session`` (a DELETE, and an opening request that failed, end up there)."""
    server: MCPServer[Any] = MCPServer("probe")
    app = server.streamable_http_app(host="127.0.0.1")
    opened: list[str] = []
    closed: list[str] = []
    allowed = [True]
    compat.watch_sessions(
        server.session_manager, may_open=lambda: allowed[0], opened=opened.append, closed=closed.append
    )
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "probe", "version": "1"}}}  # fmt: skip
    with serve_app(app) as base, httpx.Client(timeout=10) as http:
        session = http.post(f"{base}/mcp", headers=headers, json=hello).headers["mcp-session-id"]
        assert opened == [session] and closed == []
        in_session = {**headers, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
        assert http.delete(f"{base}/mcp", headers=in_session).status_code in (200, 204)
        assert _soon(lambda: session in closed)  # discarded right after its answer went out
        failed = http.post(f"{base}/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert failed.status_code == 400 and len(opened) == 2 and _soon(lambda: opened[1] in closed)
        allowed[0] = False
        refused = http.post(f"{base}/mcp", headers=headers, json=hello)
        assert refused.status_code == 503 and len(opened) == 2


def _soon(condition: Callable[[], bool], bound: float = 10.0) -> bool:
    """Poll ``condition`` until it holds, for ``bound`` seconds at most."""
    deadline = time.monotonic() + bound
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


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
    ``loop`` and ``transport`` of it; the behaviour is tested in test_trust_http.py (head timeout)
    and test_isolation_http.py (silent connections, connections per address, head size)."""
    import asyncio

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    protocol_class = compat.head_timeout_protocol(
        1.0, compat.ConnectionGuard(per_address=1, max_head_bytes=1)
    )
    assert issubclass(protocol_class, H11Protocol)
    assert isinstance(h11.IDLE, type) and isinstance(h11.DONE, type)  # where a request head is read
    config = uvicorn.Config(app=lambda *a: None)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        protocol = protocol_class(
            config=config, server_state=uvicorn.server.ServerState(), app_state={}, _loop=loop
        )
        assert protocol.conn.their_state is h11.IDLE and protocol.loop is loop
        assert isinstance(protocol.connections, set)  # what limit_concurrency counts
        for name in ("connection_made", "data_received", "connection_lost"):
            assert callable(getattr(H11Protocol, name))
    finally:
        loop.close()


async def test_a_lasting_connection_has_one_server_made_name_and_a_2026_request_none() -> None:
    server: MCPServer[Any] = MCPServer("probe")
    names: list[str | None] = []

    @server.tool()
    def probe(ctx: Context) -> str:
        names.append(compat.lasting_connection_id(ctx.request_context.session))
        return "ok"

    async with Client(server, mode="legacy") as first, Client(server, mode="legacy") as second:
        await first.call_tool("probe", {})
        await first.call_tool("probe", {})
        await second.call_tool("probe", {})
    async with Client(server, mode="2026-07-28") as modern:
        await modern.call_tool("probe", {})
        await modern.call_tool("probe", {})
    one, again, other, modern_one, modern_two = names
    assert isinstance(one, str) and one == again and other not in (None, one)
    assert modern_one is None and modern_two is None


def test_the_streamable_http_transport_reads_its_answer_form_per_request() -> None:
    """What per-request JSON answers stand on (see compat.per_request_json_answers): the session
    manager builds its transports by the class name in its module, and the transport keeps its
    choice in ``is_json_response_enabled``."""
    from mcp.server import streamable_http_manager

    compat.per_request_json_answers()
    transport_class = vars(streamable_http_manager)["StreamableHTTPServerTransport"]
    transport = transport_class(mcp_session_id=None, is_json_response_enabled=False)
    assert transport.is_json_response_enabled is False

    async def inside() -> bool:
        with compat.answer_in_json():
            return bool(transport.is_json_response_enabled)

    assert anyio.run(inside) is True
    assert transport.is_json_response_enabled is False


def test_uvicorns_supervisor_sends_its_sockets_to_each_worker_by_pickling() -> None:
    """What one socket per worker stands on (compat.run_workers): the supervisor hands each worker
    the sockets it was given, pickled into a spawned process, so a ReusePortListener arrives there
    as a listening socket that worker made."""
    import pickle
    import subprocess
    import sys

    from uvicorn import _subprocess
    from uvicorn.supervisors import Multiprocess

    assert "sockets" in inspect.signature(Multiprocess).parameters
    assert _subprocess.spawn.get_start_method() == "spawn"
    # unpickled in a child of this process, as in a worker (it ends itself when its parent is gone)
    worker = (
        "import pickle, socket, sys\n"
        "made = pickle.loads(sys.stdin.buffer.read())\n"
        "print(isinstance(made, socket.socket), made.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", worker],
        input=pickle.dumps(compat.ReusePortListener("127.0.0.1", 0, 16)),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [b"True", b"1"]
