"""Answers over streamable HTTP: one JSON body when nothing will stream, an event stream otherwise.

Through the SDK's own client at a handshake-era revision (2025-11-25), against the hosted app on a
loopback port: each answer's Content-Type is read off the wire, and what the client sees of the
call (its result, progress, the question about the cost, log messages) is the same either way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import ElicitRequestParams, ElicitResult

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import make_api
from .emulation import Emulator
from .http_helpers import serve_app

CHEAP = {"prompt": "a fox", "width": 512, "height": 512, "return_image": "none", "save": False}
#: four dev pictures: $0.048, above the threshold below
COSTLY = {**CHEAP, "model": "black-forest-labs/flux-dev", "num_images": 4}
THRESHOLD = Decimal("0.01")


class Wire:
    """The Content-Type of each answer to a posted request, by the request's method (and tool)."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, str]] = []

    async def __call__(self, response: httpx2.Response) -> None:
        request = response.request
        if request.method != "POST":
            return
        sent = json.loads(request.content or b"{}")
        if "id" not in sent or "method" not in sent:  # a notification, or the answer to a question
            return
        name = (sent.get("params") or {}).get("name")
        what = f"{sent['method']} {name}" if name else sent["method"]
        self.answers.append((what, response.headers.get("content-type", "").split(";")[0]))

    def of(self, what: str) -> list[str]:
        return [kind for method, kind in self.answers if method == what]


@contextmanager
def hosted(emulator: Emulator, **changes: Any) -> Iterator[str]:
    settings = Settings(**{"wait_seconds": 20, "confirm_above_usd": "off", **changes})
    runtime = Runtime.create(settings, client=make_api(emulator), remote=True)
    with serve_app(create_http_app(runtime)) as base:
        yield f"{base}/mcp"


@asynccontextmanager
async def client_of(url: str, wire: Wire, **options: Any) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=60), event_hooks={"response": [wire]})
    async with (
        http,
        Client(streamable_http_client(url, http_client=http), mode="legacy", **options) as client,
    ):
        yield client


async def test_a_call_nothing_streams_for_is_answered_in_one_json_body(emulator: Emulator) -> None:
    wire = Wire()
    with hosted(emulator) as url:
        async with client_of(url, wire) as client:
            tools = await client.list_tools()
            with anyio.fail_after(20):
                result = await client.call_tool("generate_image", CHEAP)
    assert result.is_error is False and result.structured_content["status"] == "completed"
    assert len(tools.tools) > 5
    assert wire.of("tools/call generate_image") == ["application/json"]
    assert wire.of("tools/list") == ["application/json"]


async def test_a_call_with_a_progress_token_streams_its_progress(emulator: Emulator) -> None:
    wire = Wire()
    reported: list[str | None] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        reported.append(message)

    with hosted(emulator) as url:
        async with client_of(url, wire) as client:
            with anyio.fail_after(20):
                result = await client.call_tool("generate_image", CHEAP, progress_callback=progress)
    assert result.is_error is False
    assert wire.of("tools/call generate_image") == ["text/event-stream"]
    assert reported and all("prediction" in (m or "") for m in reported)


async def test_a_client_that_can_be_asked_still_is_asked_on_an_event_stream(emulator: Emulator) -> None:
    wire = Wire()
    asked: list[str] = []

    async def person(ctx: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    with hosted(emulator, confirm_above_usd=THRESHOLD) as url:
        async with client_of(url, wire, elicitation_callback=person) as client:
            with anyio.fail_after(20):
                result = await client.call_tool("generate_image", COSTLY)
                models = await client.call_tool("list_models", {})
    assert result.structured_content["status"] == "completed"
    assert len(asked) == 1 and "$0.048" in asked[0]
    assert wire.of("tools/call generate_image") == ["text/event-stream"]
    assert models.is_error is False and wire.of("tools/call list_models") == ["application/json"]


async def test_a_client_that_asked_for_log_messages_gets_them_on_an_event_stream(emulator: Emulator) -> None:
    wire = Wire()
    logged: list[str] = []

    async def on_log(params: Any) -> None:
        logged.append(str(params.data))

    with hosted(emulator) as url:
        async with client_of(url, wire, logging_callback=on_log) as client:
            with pytest.warns(MCPDeprecationWarning):
                await client.set_logging_level("info")
            with anyio.fail_after(20):
                result = await client.call_tool("generate_image", CHEAP)
    assert result.is_error is False
    assert wire.of("tools/call generate_image") == ["text/event-stream"]
    assert any("submitted prediction" in line for line in logged)


@pytest.mark.parametrize("threshold", ["off", THRESHOLD])
async def test_a_client_that_cannot_be_asked_gets_json_and_the_same_answer(
    emulator: Emulator, threshold: Any
) -> None:
    wire = Wire()
    with hosted(emulator, confirm_above_usd=threshold) as url:
        async with client_of(url, wire) as client:
            with anyio.fail_after(20):
                result = await client.call_tool("generate_image", COSTLY)
    expected = "completed" if threshold == "off" else "confirmation_required"
    assert result.structured_content["status"] == expected
    assert wire.of("tools/call generate_image") == ["application/json"]


async def test_a_session_the_server_forgot_still_streams_and_is_still_asked(emulator: Emulator) -> None:
    """What each client declared is kept for as many sessions as the server holds; past that, the
    least recently used session is forgotten, and its answers stream as if nothing were known."""
    wire = Wire()
    asked: list[str] = []

    async def person(ctx: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    with hosted(emulator, confirm_above_usd=THRESHOLD, max_sessions=2) as url:
        async with client_of(url, wire, elicitation_callback=person) as first:
            async with client_of(url, Wire()) as second:
                await second.list_tools()
            async with client_of(url, Wire()) as third:  # the first is the oldest: forgotten
                await third.list_tools()
            with anyio.fail_after(20):
                result = await first.call_tool("generate_image", COSTLY)
                models = await first.call_tool("list_models", {})
    assert result.structured_content["status"] == "completed" and len(asked) == 1
    assert wire.of("tools/call generate_image") == ["text/event-stream"]
    assert models.is_error is False and wire.of("tools/call list_models") == ["text/event-stream"]
