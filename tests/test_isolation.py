"""What each caller of a hosted server can see: its own pictures, history, saved copies and usage.

Real clients over real loopback HTTP (streamable HTTP, legacy SSE, 2026-07-28) against the server on
the emulator. What belongs to someone is keyed by what the server verified (the connection the
transport made, the caller's key), never by a value the client chose such as an ``Mcp-Session-Id``
header on a request that has no session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from atlas_image_mcp.history import HistoryEntry, HistoryScope, PictureHistory
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import EMULATOR_URL, FAST_POLLS, atlas_client, text_of
from .emulation import Emulator, Fault
from .http_helpers import RawSession, mcp_client, mcp_transport, rpc_body, serve_app

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-0123456789-server-token"
SERVER_KEY = "apikey-SERVER-own-key-5555555555"
KEY_A = "apikey-AAAA-user-one-0123456789"
KEY_B = "apikey-BBBB-user-two-9876543210"
QUICK = {"prompt": "a red fox", "width": 512, "height": 512, "return_image": "none"}
BEARER = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_keys=[SERVER_KEY, KEY_A, KEY_B], latency=0.02)


def hosted_app(emulator: Emulator, *, user_keys: bool = False, **changes: Any) -> Any:
    """The HTTP app in front of ``emulator``: the server's own key, or per-user keys."""
    key = None if user_keys else SERVER_KEY
    api = atlas_client(
        transport=httpx.ASGITransport(app=emulator.app),
        base_url=EMULATOR_URL,
        api_key=key,
        poll_schedule=FAST_POLLS,
    )
    settings = Settings(api_key=key, wait_seconds=20, user_keys=user_keys, **changes)
    return create_http_app(Runtime.create(settings, client=api, remote=True))


@asynccontextmanager
async def modern(base: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    """A 2026-07-28 client over streamable HTTP (no session: every request stands alone)."""
    async with Client(mcp_transport(base, "streamable-http", headers), mode="2026-07-28") as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    with anyio.fail_after(20):
        return await client.call_tool(tool, arguments)


async def gallery(client: Client) -> dict[str, Any]:
    result = await call(client, "show_gallery")
    assert result.is_error is False, text_of(result)
    return dict(result.structured_content)


# --- the picture history: per connection, per identity --------------------------------------------


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_clients_sharing_the_token_each_have_their_own_last_picture(
    emulator: Emulator, transport: str
) -> None:
    with serve_app(hosted_app(emulator, auth_token=TOKEN)) as base:
        async with (
            mcp_client(base, transport, BEARER, mode="legacy") as alice,
            mcp_client(base, transport, BEARER, mode="legacy") as bob,
        ):
            made = await call(alice, "generate_image", **QUICK)
            bobs = await gallery(bob)
            bobs_last = await call(bob, "edit_image", image="last", prompt="make it blue", dry_run=True)
            alices = await gallery(alice)
            alices_last = await call(alice, "edit_image", image="last", prompt="make it blue", dry_run=True)
    assert made.is_error is False, text_of(made)
    assert (
        alices["total"] == 1
        and alices["pictures"][0]["prediction_id"] == made.structured_content["prediction_id"]
    )
    assert bobs["total"] == 0 and bobs_last.is_error and "none yet" in text_of(bobs_last)
    assert alices_last.is_error is False, text_of(alices_last)


async def test_a_borrowed_session_id_header_shows_another_user_nothing(emulator: Emulator) -> None:
    with serve_app(hosted_app(emulator, user_keys=True)) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            alice = RawSession(http, f"{base}/mcp", {"x-atlas-api-key": KEY_A})
            with anyio.fail_after(30):
                await alice.open("2025-06-18")
                made = await alice.call("tools/call", name="generate_image", arguments=QUICK)
                borrowed = {"x-atlas-api-key": KEY_B, "mcp-session-id": alice.headers["mcp-session-id"]}
                async with mcp_client(base, "sse", borrowed) as bob_sse:
                    over_sse = await gallery(bob_sse)
                async with modern(base, borrowed) as bob_modern:
                    over_modern = await gallery(bob_modern)
                alices = (await alice.call("tools/call", name="show_gallery", arguments={}))["result"]
    assert made["result"]["isError"] is False, made
    assert alices["structuredContent"]["total"] == 1
    assert over_sse["total"] == 0 and over_modern["total"] == 0


async def test_with_per_user_keys_a_client_without_a_session_keeps_its_own_history(
    emulator: Emulator,
) -> None:
    with serve_app(hosted_app(emulator, user_keys=True)) as base:
        async with (
            modern(base, {"x-atlas-api-key": KEY_A}) as alice,
            modern(base, {"x-atlas-api-key": KEY_B}) as bob,
        ):
            made = await call(alice, "generate_image", **QUICK)
            alices, bobs = await gallery(alice), await gallery(bob)
        async with modern(base, {"x-atlas-api-key": KEY_A, "mcp-session-id": "made-up"}) as alice_again:
            again = await gallery(alice_again)
    assert made.is_error is False, text_of(made)
    assert alices["total"] == 1 and again["total"] == 1 and bobs["total"] == 0


async def test_without_a_session_all_callers_of_the_servers_own_key_are_one_identity(
    emulator: Emulator,
) -> None:
    """Said plainly, not hidden: a stateless or 2026-07-28 client of a single-key server is everyone."""
    with serve_app(hosted_app(emulator, auth_token=TOKEN)) as base:
        async with modern(base, BEARER) as alice, modern(base, BEARER) as bob:
            await call(alice, "generate_image", **QUICK)
            bobs = await call(bob, "show_gallery")
            usage = await call(bob, "get_usage")
    assert bobs.structured_content["total"] == 1  # one identity: the server's own key
    for result in (bobs, usage):
        assert "one identity" in text_of(result), text_of(result)


async def test_a_client_with_its_own_session_is_told_its_gallery_is_its_own(emulator: Emulator) -> None:
    with serve_app(hosted_app(emulator, user_keys=True)) as base:
        async with mcp_client(base, "streamable-http", {"x-atlas-api-key": KEY_A}) as alice:
            empty = await call(alice, "show_gallery")
            usage = await call(alice, "get_usage")
    assert "one identity" not in text_of(empty) and "one identity" not in text_of(usage)


async def test_usage_lists_only_the_callers_own_predictions(emulator: Emulator) -> None:
    with serve_app(hosted_app(emulator, user_keys=True)) as base:
        async with (
            modern(base, {"x-atlas-api-key": KEY_A}) as alice,
            modern(base, {"x-atlas-api-key": KEY_B}) as bob,
        ):
            made = await call(alice, "generate_image", **QUICK)
            alices, bobs = await call(alice, "get_usage"), await call(bob, "get_usage")
    pid = made.structured_content["prediction_id"]
    assert [c["prediction_id"] for c in alices.structured_content["largest_calls"]] == [pid]
    assert bobs.structured_content["largest_calls"] == [] and pid not in text_of(bobs)


async def test_raw_2026_requests_with_made_up_session_ids_make_no_history_of_their_own(
    emulator: Emulator,
) -> None:
    """A made-up Mcp-Session-Id on a request without a session names nothing: the caller's key does."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "x-atlas-api-key": KEY_A,
    }

    async def tool(http: httpx.AsyncClient, name: str, session: str, **arguments: Any) -> dict[str, Any]:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": envelope},
        }
        answer = await http.post(
            f"{base}/mcp",
            json=body,
            headers={**headers, "mcp-session-id": session, "mcp-method": "tools/call", "mcp-name": name},
        )
        message = rpc_body(answer)
        assert "result" in message, message
        return dict(message["result"])

    with serve_app(hosted_app(emulator, user_keys=True)) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            with anyio.fail_after(30):
                await tool(http, "generate_image", "session-one", **QUICK)
                seen = await tool(http, "show_gallery", "session-two")
    assert seen["structuredContent"]["total"] == 1


async def test_one_owner_making_many_sessions_pushes_out_only_its_own() -> None:
    """The history's bound, at a small size: the flooding owner loses its oldest, nobody else anything."""
    history = PictureHistory(max_entries=5, max_sessions=4)
    alice = HistoryScope(owner="alice", session="s1")
    await history.record(alice, HistoryEntry(prediction_id="a1", tool="generate_image"))
    for n in range(50):
        await history.record(
            HistoryScope(owner="mallory", session=f"m{n}"), HistoryEntry(f"m{n}", "generate_image")
        )
    assert [e.prediction_id for e in await history.entries(alice)] == ["a1"]
    assert await history.owns("alice", "a1") and not await history.owns("mallory", "a1")
    assert [e.prediction_id for e in await history.entries(HistoryScope("mallory", "m49"))] == ["m49"]
    assert await history.entries(HistoryScope("mallory", "m0")) == []
    await history.aclose()


# --- saved copies: only for the identity that made them --------------------------------------------


async def test_a_saved_copy_is_uploaded_again_only_for_the_user_who_made_it(
    emulator: Emulator, tmp_path: Any
) -> None:
    folder = tmp_path / "served"
    uploads = "/api/v1/model/uploadMedia"

    def expire(pid: str) -> None:
        """Atlas forgets the prediction and its pictures (as it does after a while)."""
        emulator.inject(Fault.status(404), method="GET", path=f"/api/v1/model/prediction/{pid}", times=20)
        emulator.inject(Fault.status(404), method="GET", path=f"/outputs/{pid}/*", times=20)

    def uploaded_with(key: str) -> int:
        return sum(
            1
            for r in emulator.requests
            if r.method == "POST" and r.path == uploads and r.headers.get("authorization") == f"Bearer {key}"
        )

    edit = {"prompt": "make it blue", "save": False, "return_image": "none"}
    with serve_app(hosted_app(emulator, user_keys=True, output_dir=folder)) as base:
        async with (
            modern(base, {"x-atlas-api-key": KEY_A}) as alice,
            modern(base, {"x-atlas-api-key": KEY_B}) as bob,
        ):
            made = await call(alice, "generate_image", **QUICK)
            pid = made.structured_content["prediction_id"]
            expire(pid)
            bobs = await call(bob, "edit_image", image=pid, **edit)
            alices = await call(alice, "edit_image", image=pid, **edit)
    with serve_app(hosted_app(emulator, user_keys=True, output_dir=folder)) as base:  # a restart
        async with (
            modern(base, {"x-atlas-api-key": KEY_A}) as alice,
            modern(base, {"x-atlas-api-key": KEY_B}) as bob,
        ):
            bobs_later = await call(bob, "edit_image", image=pid, **edit)
            alices_later = await call(alice, "edit_image", image=pid, **edit)
    assert made.structured_content["outputs"][0]["path"], "the picture was saved"
    for refused in (bobs, bobs_later):
        assert refused.is_error and "no longer available" in text_of(refused), text_of(refused)
    for allowed in (alices, alices_later):
        assert allowed.is_error is False, text_of(allowed)
    assert uploaded_with(KEY_B) == 0 and uploaded_with(KEY_A) == 2
