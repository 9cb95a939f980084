"""Trust nothing from outside, hosted: anonymous clients, session floods, keys, bodies, heads.

Each server is the real HTTP app under uvicorn on 127.0.0.1 (in a thread), in front of the hostile
Atlas of :mod:`tests.hostile`. Requests are made with the SDK's MCP client where a client would be
used, and with raw HTTP where the point is what an attacker sends.
"""

from __future__ import annotations

import base64
import logging
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from atlas_image_mcp import compat
from atlas_image_mcp.client import AtlasClient, ClientHooks, ClientOptions
from atlas_image_mcp.http import create_http_app, uvicorn_limits
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import FAST_POLLS, text_of
from .hostile import PID, Hostile, json_answer
from .http_helpers import INITIALIZE, MCP_HEADERS, child_env, free_port, mcp_client, serve_app, serve_process
from .loadgen import serve_in_thread
from .pictures import noise_png

pytestmark = pytest.mark.timeout(90)

KEY_A = "sk_live_alice_0123456789abcdef"
KEY_B = "sk_live_bob_fedcba9876543210ab"
KEY_C = "sk_live_carol_555555555555555"
TOKEN = "server-token-0123456789abcdef"


@pytest.fixture
def hostile() -> Hostile:
    service = Hostile()
    service.route("/out/1.png", json_answer({}))  # replaced per test when a picture is wanted
    money = {"value": "10.000000", "currency": "usd"}  # Atlas knows every key (when it is asked)
    service.route("/public/v1/balance", json_answer({"object": "balance", "available": money, "cash": money}))
    return service


@pytest.fixture
def atlas(hostile: Hostile) -> Iterator[str]:
    with serve_in_thread(hostile.app, graceful=0.5) as base:
        yield base


def hosted(atlas: str, **changes: Any) -> Any:
    """The HTTP app (per-user keys unless told otherwise) in front of the hostile Atlas."""
    settings = Settings(**{"base_url": atlas, "wait_seconds": 5, "user_keys": True, **changes})
    api = AtlasClient(ClientOptions.from_settings(settings), hooks=ClientHooks(poll_schedule=FAST_POLLS))
    return create_http_app(Runtime.create(settings, client=api, remote=True))


def initialize(http: httpx.Client, base: str, key: str | None = None, **headers: str) -> httpx.Response:
    sent = dict(MCP_HEADERS, **headers)
    if key is not None:
        sent["x-atlas-api-key"] = key
    return http.post(f"{base}/mcp", headers=sent, json=INITIALIZE)


def eventually_admitted(http: httpx.Client, base: str, key: str, bound: float = 10.0) -> httpx.Response:
    """Ask for a session until one is given (a closed stream is noticed a moment later); bounded."""
    deadline = time.monotonic() + bound
    while (answer := initialize(http, base, key)).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.05)
    return answer


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


# --- 2. anonymous clients and session floods ---------------------------------------------------


def test_a_request_with_neither_token_nor_key_gets_400_and_leaves_no_session(
    atlas: str, http: httpx.Client
) -> None:
    with serve_app(hosted(atlas, max_sessions=2)) as base:
        for _ in range(30):
            assert initialize(http, base).status_code == 400
            assert http.get(f"{base}/sse").status_code == 400
            assert initialize(http, base, "prediction").status_code == 400  # too short to be a key
        refused = initialize(http, base)
        assert "X-Atlas-Api-Key" in refused.json()["error"]["message"]
        # the anonymous flood took no place: two real users still get in
        assert initialize(http, base, KEY_A).status_code == 200
        assert initialize(http, base, KEY_B).status_code == 200
        assert initialize(http, base, KEY_C).status_code == 503  # the global cap, reached by real users


def test_sessions_and_sse_streams_are_capped_per_key_and_freed_when_closed(
    atlas: str, http: httpx.Client
) -> None:
    with serve_app(hosted(atlas, max_sessions_per_key=2)) as base:
        first = initialize(http, base, KEY_A)
        with http.stream("GET", f"{base}/sse", headers={"x-atlas-api-key": KEY_A}) as stream:
            assert stream.status_code == 200
            over = initialize(http, base, KEY_A)
            assert (
                over.status_code == 429
                and "ATLAS_MCP_MAX_SESSIONS_PER_KEY" in over.json()["error"]["message"]
            )
            with http.stream("GET", f"{base}/sse", headers={"x-atlas-api-key": KEY_A}) as third:
                assert third.status_code == 429
            assert initialize(http, base, KEY_B).status_code == 200  # another key is not affected
        # the SSE stream ended: its place is free again (as soon as the server has seen it close)
        second = eventually_admitted(http, base, KEY_A)
        assert second.status_code == 200
        assert initialize(http, base, KEY_A).status_code == 429
        session = {"mcp-session-id": first.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        closed = http.delete(f"{base}/mcp", headers={**MCP_HEADERS, "x-atlas-api-key": KEY_A, **session})
        assert closed.status_code in (200, 204)
        assert initialize(http, base, KEY_A).status_code == 200


@pytest.mark.slow  # the server's real idle clock
async def test_an_idle_session_expires_and_frees_its_place(atlas: str) -> None:
    with serve_app(hosted(atlas, max_sessions_per_key=1, session_idle_seconds=0.3)) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            headers = {**MCP_HEADERS, "x-atlas-api-key": KEY_A}
            opened = await http.post(f"{base}/mcp", headers=headers, json=INITIALIZE)
            assert opened.status_code == 200
            assert (await http.post(f"{base}/mcp", headers=headers, json=INITIALIZE)).status_code == 429
            with anyio.fail_after(10):  # the place frees itself once the session was idle long enough
                # waiting on the server's idle clock (bounded): nothing to await but time
                while (await http.post(f"{base}/mcp", headers=headers, json=INITIALIZE)).status_code == 429:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
            ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
            old = {
                **headers,
                "mcp-session-id": opened.headers["mcp-session-id"],
                "mcp-protocol-version": "2025-06-18",
            }
            assert (await http.post(f"{base}/mcp", headers=old, json=ping)).status_code == 404


# --- 5. keys: what gets registered, duplicates, sizes --------------------------------------------


def test_a_repeated_key_or_authorization_header_is_a_400(atlas: str, http: httpx.Client) -> None:
    with serve_app(hosted(atlas, auth_token=TOKEN)) as base:
        twice = [("accept", MCP_HEADERS["accept"]), ("authorization", f"Bearer {TOKEN}")]
        for headers in (
            [*twice, ("x-atlas-api-key", KEY_A), ("x-atlas-api-key", KEY_B)],
            [*twice, ("authorization", f"Bearer {TOKEN}"), ("x-atlas-api-key", KEY_A)],
        ):
            response = http.post(f"{base}/mcp", headers=headers, json=INITIALIZE)
            assert response.status_code == 400 and "only once" in response.json()["error"]["message"]
        long_key = initialize(http, base, "k" * 1000, authorization=f"Bearer {TOKEN}")
        assert long_key.status_code == 400


async def test_a_key_that_is_only_presented_censors_nothing_for_other_users(
    hostile: Hostile, atlas: str
) -> None:
    """A "key" equal to another user's prediction id: presented, used and refused by Atlas, it must
    not become a secret that censors that id in the other user's answers."""
    hostile.prediction(status="processing")
    with serve_app(hosted(atlas)) as base:
        async with mcp_client(base, "streamable-http", {"X-Atlas-Api-Key": PID}) as mallory:
            await mallory.list_tools()
            await mallory.call_tool("list_models", {})  # the catalogue needs no key: nothing registered
            hostile.submit = json_answer({"code": 401, "msg": "no such key"}, 401)
            refused = await mallory.call_tool("generate_image", {"prompt": "x", "return_image": "none"})
            assert refused.is_error and "HTTP 401" in text_of(refused)
        hostile.submit = None
        hostile.prediction(status="failed", error="GPU fell over")
        async with mcp_client(base, "streamable-http", {"X-Atlas-Api-Key": KEY_A}) as alice:
            result = await alice.call_tool("get_prediction", {"prediction_id": PID})
    assert result.is_error and "GPU fell over" in text_of(result)
    assert PID in text_of(result) and "[redacted]" not in text_of(result)


# --- 8. one body cap for every message ------------------------------------------------------------


async def test_ordinary_messages_get_a_small_cap_and_only_uploads_a_large_one(
    hostile: Hostile, atlas: str
) -> None:
    picture = noise_png(400, 400)
    assert len(picture) > 100 * 1024
    hostile.route(
        "/api/v1/model/uploadMedia", json_answer({"code": 200, "data": {"download_url": f"{atlas}/m/1"}})
    )
    with serve_app(hosted(atlas, max_message_kb=64)) as base:
        async with mcp_client(base, "streamable-http", {"X-Atlas-Api-Key": KEY_A}) as client:
            uploaded = await client.call_tool(
                "upload_media", {"data": base64.b64encode(picture).decode(), "filename": "noise.png"}
            )
        async with httpx.AsyncClient(timeout=10) as http:
            opened = await http.post(
                f"{base}/mcp", headers={**MCP_HEADERS, "x-atlas-api-key": KEY_A}, json=INITIALIZE
            )
            session = {
                "x-atlas-api-key": KEY_A,
                "mcp-session-id": opened.headers["mcp-session-id"],
                "mcp-protocol-version": "2025-06-18",
            }
            arguments = {"query": "x" * 200_000}
            query = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                     "params": {"name": "list_models", "arguments": arguments}}  # fmt: skip
            big = await http.post(f"{base}/mcp", headers={**MCP_HEADERS, **session}, json=query)
    assert uploaded.is_error is False, text_of(uploaded)
    assert big.status_code == 413 and "ATLAS_MCP_MAX_MESSAGE_KB" in big.json()["error"]["message"]


# --- low: CORS for allowed origins, HEAD /sse ------------------------------------------------------


def test_cors_preflights_are_answered_for_allowed_origins_and_expose_the_session_id(
    atlas: str, http: httpx.Client
) -> None:
    origin = "https://app.example"
    with serve_app(hosted(atlas, allowed_origins=(origin,))) as base:
        preflight = {
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, mcp-session-id, x-atlas-api-key",
        }
        allowed = http.options(f"{base}/mcp", headers=preflight)
        foreign = http.options(f"{base}/mcp", headers={**preflight, "origin": "https://evil.example"})
        opened = initialize(http, base, KEY_A, origin=origin)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == origin
    assert "x-atlas-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in foreign.headers
    assert opened.status_code == 200 and opened.headers["access-control-allow-origin"] == origin
    assert "mcp-session-id" in opened.headers["access-control-expose-headers"].lower()


def test_head_on_the_mcp_endpoints_is_a_clean_405(
    atlas: str, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with serve_app(hosted(atlas)) as base:
        answers = [
            http.head(f"{base}{path}", headers={"x-atlas-api-key": KEY_A}) for path in ("/sse", "/mcp")
        ]
        assert http.get(f"{base}/healthz").status_code == 200
    assert [a.status_code for a in answers] == [405, 405]
    assert "Exception in ASGI application" not in caplog.text and "Traceback" not in caplog.text


# --- 2. slow request heads (slowloris) -------------------------------------------------------------


@pytest.mark.slow  # the server's real 0.5 s head timeout
def test_a_request_head_that_trickles_in_is_cut_off(atlas: str) -> None:
    options = {**uvicorn_limits(Settings()), "http": compat.head_timeout_protocol(0.5)}
    with serve_in_thread(hosted(atlas), graceful=0.5, **options) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            assert slow.recv(1024) == b""  # closed by the server, long before our 10 s
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # others are served


# --- 5. the server's token and query strings never reach a log (a real process) --------------------


@pytest.mark.subprocess
def test_the_token_and_query_strings_never_reach_the_log_and_head_is_clean(tmp_path: Path) -> None:
    port = free_port()
    env = child_env(tmp_path, ATLAS_MCP_AUTH_TOKEN=TOKEN, ATLAS_MCP_LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1")
    argv = [
        sys.executable,
        "-m",
        "atlas_image_mcp",
        "serve",
        "--transport",
        "http",
        "--offline",
        "--port",
        str(port),
    ]
    base = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {TOKEN}"}
    with serve_process(argv, env, port) as proc, httpx.Client(timeout=10) as http:
        for _attempt in range(5):  # the SDK now and then answers a brand-new SSE session 404: try again
            with http.stream("GET", f"{base}/sse", headers=auth) as stream:
                endpoint = next(line[5:].strip() for line in stream.iter_lines() if line.startswith("data:"))
                session_id = endpoint.split("session_id=", 1)[1]
                posted = http.post(base + endpoint, headers={**MCP_HEADERS, **auth}, json=INITIALIZE)
            if posted.status_code == 202:
                break
        assert posted.status_code == 202
        assert http.head(f"{base}/sse", headers=auth).status_code == 405
        assert (
            http.get(f"{base}/mcp?token={TOKEN}", headers={"authorization": f"Bearer {TOKEN}x"}).status_code
            == 400
        )
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert "GET /sse" in stderr and "POST /messages/?..." in stderr  # the access log (DEBUG), queries cut
    for secret in (TOKEN, session_id, str(uuid.UUID(session_id))):
        assert secret not in stderr, [line for line in stderr.splitlines() if secret in line][:3]
    assert "Exception in ASGI application" not in stderr and "Traceback" not in stderr


@pytest.mark.subprocess
def test_at_the_default_level_a_paid_call_leaves_one_line_in_the_log(tmp_path: Path) -> None:
    """INFO, the default: a line per paid request, naming its prediction; none per HTTP request."""
    port = free_port()
    env = child_env(tmp_path, ATLAS_MCP_SAVE="0", PYTHONUNBUFFERED="1")
    argv = [
        sys.executable,
        "-m",
        "atlas_image_mcp",
        "serve",
        "--transport",
        "http",
        "--offline",
        "--port",
        str(port),
    ]

    async def make_a_picture() -> Any:
        with anyio.fail_after(60):
            async with mcp_client(f"http://127.0.0.1:{port}", "streamable-http") as client:
                return await client.call_tool(
                    "generate_image", {"prompt": "a lighthouse", "return_image": "none"}
                )

    with serve_process(argv, env, port) as proc:
        result = anyio.run(make_a_picture)
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert result.is_error is False, text_of(result)
    prediction = result.structured_content["prediction_id"]
    ours = [
        line for line in stderr.splitlines() if "atlas_image_mcp.emulator" not in line
    ]  # --offline's Atlas
    lines = [line for line in ours if prediction in line]
    assert len(lines) == 1 and " INFO " in lines[0] and "submitted prediction" in lines[0], lines
    assert "uvicorn.access" not in stderr and "POST /mcp" not in stderr
