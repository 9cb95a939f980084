"""The HTTP transports on the network: authentication, per-user keys, DNS rebinding, local files,
malformed requests, stateless replicas and the refusal to serve a public address unprotected.

Every server here is a real uvicorn on 127.0.0.1 (port 0, in a thread) serving ``create_http_app``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from atlas_image_mcp.http import create_http_app, serve_http, transport_security
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.settings import Settings

from .conftest import EMULATOR_URL, FAST_POLLS, atlas_client, text_of
from .emulation import Emulator
from .http_helpers import INITIALIZE, MCP_HEADERS, mcp_client, serve_app
from .pictures import png_b64

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-0123456789-server-token"
KEY_A = "apikey-AAAA-user-one-0123456789"
KEY_B = "apikey-BBBB-user-two-9876543210"
SERVER_KEY = "apikey-SERVER-own-key-5555555555"
GENERATE = "/api/v1/model/generateImage"
UPLOAD = "/api/v1/model/uploadMedia"
PNG_B64 = png_b64()


def offline_app(stateless: bool = False, **changes: Any) -> Any:
    """The HTTP app with the emulator behind it (as ``serve --transport http --offline`` builds it)."""
    runtime = Runtime.create(
        Settings(wait_seconds=20, **changes), offline=True, remote=True, emulator_latency=0.05
    )
    return create_http_app(runtime, stateless=stateless)


def emulator_app(emulator: Emulator, client_key: str | None = None, **changes: Any) -> Any:
    """The HTTP app in front of ``emulator`` (in process); the shared client has ``client_key``."""
    api = atlas_client(
        transport=httpx.ASGITransport(app=emulator.app),
        base_url=EMULATOR_URL,
        api_key=client_key,
        poll_schedule=FAST_POLLS,
    )
    runtime = Runtime.create(Settings(wait_seconds=20, **changes), client=api, remote=True)
    return create_http_app(runtime)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def rpc_error(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC error object of an HTTP error answer (fails if the body is not one)."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert body["jsonrpc"] == "2.0" and "id" in body, body
    assert isinstance(body["error"]["code"], int) and body["error"]["message"], body
    return body["error"]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


# --- 2. the server token -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_base() -> Iterator[str]:
    with serve_app(offline_app(auth_token=TOKEN)) as base:
        yield base


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", TOKEN],
    ids=repr,
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/mcp"),
        ("GET", "/mcp"),
        ("GET", "/sse"),
        ("POST", "/messages/?session_id=" + "0" * 32),
        ("GET", "/other"),
    ],
)
def test_mcp_paths_without_the_right_token_get_400_with_a_json_body_that_says_what_to_send(
    token_base: str, http: httpx.Client, method: str, path: str, authorization: str | None
) -> None:
    """Refused before any state, with a message every client shows: a 400 with no challenge (a 401
    makes Claude Code, the Inspector and mcp-remote start an OAuth sign-in that cannot finish)."""
    headers = dict(MCP_HEADERS, **({"authorization": authorization} if authorization is not None else {}))
    response = http.request(
        method, token_base + path, headers=headers, json=INITIALIZE if method == "POST" else None
    )
    assert response.status_code == 400
    assert "www-authenticate" not in response.headers
    message = rpc_error(response)["message"]
    assert "Authorization: Bearer <ATLAS_MCP_AUTH_TOKEN>" in message and "Unauthorized" not in message
    assert TOKEN not in response.text


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_the_right_token_opens_both_transports(token_base: str, transport: str) -> None:
    async with mcp_client(token_base, transport, {"Authorization": f"Bearer {TOKEN}"}) as client:
        tools = await client.list_tools()
        result = await client.call_tool("generate_image", {"prompt": "fox", "dry_run": True})
    assert "generate_image" in {t.name for t in tools.tools}
    assert result.is_error is False and result.structured_content["status"] == "dry_run"


def test_healthz_needs_no_token_and_tells_nothing_secret(http: httpx.Client) -> None:
    runtime = Runtime.create(
        Settings(api_key=SERVER_KEY, auth_token=TOKEN), remote=True
    )  # online, no emulator
    with serve_app(create_http_app(runtime)) as base:
        response = http.get(f"{base}/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"
    assert TOKEN not in response.text and SERVER_KEY not in response.text and "apikey" not in response.text


async def test_readyz_needs_no_token_and_shows_where_the_store_is_only_to_this_machine_or_the_token(
    tmp_path: Path,
) -> None:
    store = tmp_path / "where-the-store-is.sqlite3"
    runtime = Runtime.create(
        Settings(api_key=SERVER_KEY, auth_token=TOKEN, database_url=f"sqlite:///{store}"), remote=True
    )
    app = create_http_app(runtime)

    async def ready(client: tuple[str, int], **headers: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.get("/readyz", headers=headers)

    try:
        starting = await ready(("127.0.0.1", 5000))
        await runtime.start()  # what the app's lifespan does before the first request
        here = await ready(("127.0.0.1", 5000))
        away = await ready(("203.0.113.7", 5000))
        token = await ready(("203.0.113.7", 5000), authorization=f"Bearer {TOKEN}")
        wrong = await ready(("203.0.113.7", 5000), authorization="Bearer not-the-token")
    finally:
        await runtime.aclose()
    assert starting.status_code == 503 and starting.json()["status"] == "starting"
    assert here.status_code == away.status_code == token.status_code == 200
    assert here.json()["store"]["where"] == str(store) and here.json()["store"]["up"] is True
    assert token.json()["store"]["where"] == str(store)
    for hidden in (away, wrong):
        assert hidden.json()["status"] == "ready" and hidden.json()["store"]["up"] is True
        assert "where" not in hidden.json()["store"] and str(store) not in hidden.text
    assert TOKEN not in here.text and SERVER_KEY not in here.text


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records every uvicorn server (or subclass) that ``serve_http`` would run; nothing is ever bound."""
    started: list[tuple[str, int]] = []

    def run(self: uvicorn.Server, sockets: Any = None) -> None:
        started.append((self.config.host, self.config.port))

    async def startup(self: uvicorn.Server, sockets: Any = None) -> None:  # a safety net for overridden run()
        raise AssertionError(f"a test server tried to bind {self.config.host}:{self.config.port}")

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(uvicorn.Server, "startup", startup)
    return started


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_a_public_host_without_authentication_is_refused_before_anything_is_bound(
    no_server: list[tuple[str, int]], caplog: pytest.LogCaptureFixture, host: str
) -> None:
    caplog.set_level(logging.INFO)
    assert serve_http(Settings(), host=host, port=8000) == 2
    assert no_server == []
    assert f"refusing to serve on {host}" in caplog.text
    assert "ATLAS_MCP_AUTH_TOKEN" in caplog.text and "--allow-unauthenticated" in caplog.text


@pytest.mark.parametrize(
    ("settings", "allow"),
    [(Settings(), True), (Settings(auth_token=TOKEN), False), (Settings(user_keys=True), False)],
    ids=["allow-unauthenticated", "token", "user-keys"],
)
def test_a_public_host_is_served_with_a_token_user_keys_or_explicit_permission(
    no_server: list[tuple[str, int]], settings: Settings, allow: bool
) -> None:
    assert serve_http(settings, host="0.0.0.0", port=8123, offline=True, allow_unauthenticated=allow) == 0
    assert no_server == [("0.0.0.0", 8123)]


def test_loopback_needs_no_authentication(no_server: list[tuple[str, int]]) -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        assert serve_http(Settings(), host=host, port=8124, offline=True) == 0
    assert len(no_server) == 3


# --- 3. per-user Atlas keys --------------------------------------------------------------------


def _owner_of(request: Any, predictions: dict[str, str]) -> str | None:
    """Which user an upstream request was made for: by prompt, prediction id or uploaded file name."""
    if request.path == GENERATE:
        return str(request.json["prompt"]).split()[0]
    if request.path.startswith("/api/v1/model/prediction/"):
        return predictions.get(request.path.rsplit("/", 1)[-1])
    if request.path == UPLOAD:
        match = re.search(rb'filename="(\w+)-', request.body)
        return match.group(1).decode() if match else None
    return None


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_two_users_at_once_each_call_upstream_with_their_own_key_only(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = Emulator(api_keys=[KEY_A, KEY_B], latency=0.3)
    users = {"alice": KEY_A, "bob": KEY_B}
    predictions: dict[str, str] = {}
    answers: list[str] = []

    async def session(base: str, user: str) -> None:
        async with mcp_client(base, transport, {"X-Atlas-Api-Key": users[user]}) as client:
            generated = await client.call_tool(
                "generate_image", {"prompt": f"{user} draws a fox", "return_image": "none"}
            )
            assert generated.is_error is False, text_of(generated)
            pid = generated.structured_content["prediction_id"]
            predictions[pid] = user
            fetched = await client.call_tool("get_prediction", {"prediction_id": pid, "return_image": "none"})
            assert fetched.is_error is False and fetched.structured_content["status"] == "completed"
            uploaded = await client.call_tool("upload_media", {"data": PNG_B64, "filename": f"{user}-in.png"})
            assert uploaded.is_error is False, text_of(uploaded)
            answers.extend(json.dumps(r.model_dump(mode="json")) for r in (generated, fetched, uploaded))

    # the server's key is in its settings and even in the shared client: it must never be used
    with serve_app(emulator_app(emulator, client_key=SERVER_KEY, api_key=SERVER_KEY, user_keys=True)) as base:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session, base, "alice")
            tg.start_soon(session, base, "bob")

    assert len(predictions) == 2
    authenticated = [r for r in emulator.requests if r.path.startswith("/api/v1/model/")]
    assert len(authenticated) >= 6
    order: dict[str, list[int]] = {"alice": [], "bob": []}
    for index, request in enumerate(authenticated):
        owner = _owner_of(request, predictions)
        assert owner in users, request
        assert request.headers.get("authorization") == f"Bearer {users[owner]}", (owner, request.path)
        order[owner].append(index)
    for request in emulator.requests:  # outputs are downloaded without any key; the server's key never leaves
        assert SERVER_KEY not in json.dumps(request.headers)
        if not request.path.startswith("/api/v1/model/"):
            assert "authorization" not in request.headers
    # the two users' calls really were in flight at the same time
    assert order["alice"][0] < order["bob"][-1] and order["bob"][0] < order["alice"][-1]
    for secret in (KEY_A, KEY_B, SERVER_KEY):
        assert secret not in caplog.text
        assert all(secret not in answer for answer in answers)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_a_request_with_the_server_token_but_no_user_key_gets_a_tool_error_and_reaches_nobody(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = Emulator(api_keys=[KEY_A], latency=0.05)
    app = emulator_app(emulator, client_key=SERVER_KEY, api_key=SERVER_KEY, user_keys=True, auth_token=TOKEN)
    with serve_app(app) as base:
        async with mcp_client(base, transport, {"Authorization": f"Bearer {TOKEN}"}) as client:
            generated = await client.call_tool("generate_image", {"prompt": "a fox"})
            fetched = await client.call_tool("get_prediction", {"prediction_id": "0" * 32})
            uploaded = await client.call_tool("upload_media", {"data": PNG_B64, "filename": "x.png"})
    for result in (generated, fetched, uploaded):
        assert result.is_error is True
        assert "X-Atlas-Api-Key" in text_of(result) and SERVER_KEY not in text_of(result)
    assert [r for r in emulator.requests if r.path.startswith("/api/v1/model/")] == []
    assert SERVER_KEY not in caplog.text


def test_a_session_opened_with_one_key_cannot_be_used_with_another(http: httpx.Client) -> None:
    with serve_app(emulator_app(Emulator(api_keys=[KEY_A, KEY_B]), user_keys=True)) as base:
        opened = http.post(
            f"{base}/mcp", headers=dict(MCP_HEADERS, **{"x-atlas-api-key": KEY_A}), json=INITIALIZE
        )
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        for key, status in [(KEY_B, 404), (None, 400), (KEY_A, 200)]:
            headers = dict(MCP_HEADERS, **{"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"})
            if key:
                headers["x-atlas-api-key"] = key
            assert http.post(f"{base}/mcp", headers=headers, json=ping).status_code == status, key
        # the same over SSE: the stream belongs to the key that opened it
        with http.stream("GET", f"{base}/sse", headers={"x-atlas-api-key": KEY_A}) as stream:
            lines = stream.iter_lines()
            endpoint = next(line[5:].strip() for line in lines if line.startswith("data:"))
            for key, status in [(KEY_B, 404), (None, 400), (KEY_A, 202)]:
                headers = dict(MCP_HEADERS, **({"x-atlas-api-key": key} if key else {}))
                assert http.post(base + endpoint, headers=headers, json=ping).status_code == status, key


def test_per_user_key_mode_gives_the_shared_client_no_key_at_all() -> None:
    runtime = Runtime.create(Settings(api_key=SERVER_KEY, user_keys=True), remote=True)
    assert runtime.client.has_api_key is False
    assert runtime.current_key({"x-atlas-api-key": f"  {KEY_A} "}) == KEY_A
    assert runtime.current_key({}) is None and runtime.current_key(None) is None
    stdio = Runtime.create(Settings(api_key=SERVER_KEY, user_keys=True))  # the setting is for HTTP only
    assert stdio.client.has_api_key is True and stdio.current_key({"x-atlas-api-key": KEY_A}) == SERVER_KEY


# --- 4. DNS rebinding --------------------------------------------------------------------------


def test_a_foreign_host_or_origin_is_refused_and_allowed_hosts_are_accepted(http: httpx.Client) -> None:
    with serve_app(offline_app(allowed_hosts=("mcp.example.com",))) as base:
        port = base.rsplit(":", 1)[1]

        def post(**headers: str) -> httpx.Response:
            return http.post(f"{base}/mcp", headers=dict(MCP_HEADERS, **headers), json=INITIALIZE)

        evil = post(host="evil.example.com")
        assert 400 <= evil.status_code < 500 and "Host" in rpc_error(evil)["message"]
        assert 400 <= post(host=f"evil.example.com:{port}").status_code < 500
        bad_origin = post(origin="http://evil.example.com")
        assert 400 <= bad_origin.status_code < 500 and "Origin" in rpc_error(bad_origin)["message"]
        with http.stream("GET", f"{base}/sse", headers={"host": "evil.example.com"}) as sse:
            assert 400 <= sse.status_code < 500
        for host in ("mcp.example.com", "mcp.example.com:8443", f"127.0.0.1:{port}", f"localhost:{port}"):
            assert post(host=host).status_code == 200, host
        assert post(origin=f"http://localhost:{port}").status_code == 200
    with serve_app(offline_app()) as base:  # without the setting the public name is refused too
        assert (
            400
            <= http.post(
                f"{base}/mcp", headers=dict(MCP_HEADERS, host="mcp.example.com"), json=INITIALIZE
            ).status_code
            < 500
        )


def test_host_checks_are_on_for_loopback_and_for_named_public_hosts_only() -> None:
    assert transport_security(Settings(), "127.0.0.1").enable_dns_rebinding_protection is True
    named = transport_security(
        Settings(allowed_hosts=("mcp.example.com",), allowed_origins=("https://app.example",)), "0.0.0.0"
    )
    assert named.enable_dns_rebinding_protection is True
    assert {"mcp.example.com", "mcp.example.com:*"} <= set(named.allowed_hosts)
    assert "https://app.example" in named.allowed_origins
    # a public bind address with no name to check against: the bearer token is the protection
    assert transport_security(Settings(), "0.0.0.0").enable_dns_rebinding_protection is False


# --- 5. local files over HTTP ------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "uploads"
    root.mkdir()
    inside = root / "inside.png"
    inside.write_bytes(base64.b64decode(PNG_B64))
    outside = tmp_path / "secret.png"
    outside.write_bytes(base64.b64decode(PNG_B64))
    (root / "link.png").symlink_to(outside)
    (root / "sub").mkdir()
    return {"root": root, "inside": inside, "outside": outside}


async def _upload(base: str, **arguments: str) -> Any:
    async with mcp_client(base, "streamable-http") as client:
        return await client.call_tool("upload_media", arguments)


async def test_server_side_files_are_refused_over_http_without_an_upload_root(files: dict[str, Path]) -> None:
    with serve_app(offline_app()) as base:
        refused = await _upload(base, file_path=str(files["inside"]))
        sent = await _upload(base, data=PNG_B64, filename="pic.png")
    assert refused.is_error is True and "data" in text_of(refused)
    assert sent.is_error is False and sent.structured_content["filename"] == "pic.png"


async def test_an_upload_root_admits_files_inside_it_only(files: dict[str, Path]) -> None:
    root = files["root"]
    with serve_app(offline_app(upload_root=root.resolve())) as base:
        inside = await _upload(base, file_path=str(files["inside"]))
        nested = await _upload(base, file_path=f"{root}/sub/../inside.png")
        escape = await _upload(base, file_path=f"{root}/sub/../../secret.png")
        direct = await _upload(base, file_path=str(files["outside"]))
        link = await _upload(base, file_path=str(root / "link.png"))
        sent = await _upload(base, data=PNG_B64, filename="pic.png")
    assert inside.is_error is False and inside.structured_content["filename"] == "inside.png"
    assert nested.is_error is False
    for refused in (escape, direct, link):
        assert refused.is_error is True and "ATLAS_MCP_UPLOAD_ROOT" in text_of(refused), text_of(refused)
    assert sent.is_error is False


async def test_saving_over_http_is_off_unless_an_output_dir_is_set(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    with serve_app(offline_app()) as base:
        async with mcp_client(base, "streamable-http") as client:
            plain = await client.call_tool("generate_image", {"prompt": "fox", "return_image": "none"})
            asked = await client.call_tool("generate_image", {"prompt": "fox", "save": True})
    assert plain.is_error is False and plain.structured_content["outputs"][0]["path"] is None
    assert asked.is_error is True and "ATLAS_MCP_OUTPUT_DIR" in text_of(asked)
    assert files_under(home) == []

    out = tmp_path / "served"
    with serve_app(offline_app(output_dir=out)) as base:
        async with mcp_client(base, "streamable-http") as client:
            saved = await client.call_tool("generate_image", {"prompt": "fox", "return_image": "none"})
    path = Path(saved.structured_content["outputs"][0]["path"])
    assert path.parent == out and files_under(out) == [path]


# --- 6. malformed requests ---------------------------------------------------------------------


def test_bad_json_missing_or_unknown_sessions_and_big_bodies_get_json_rpc_errors(http: httpx.Client) -> None:
    with serve_app(
        offline_app(max_upload_mb=1024 / (1024 * 1024))
    ) as base:  # body limit: 4/3 of that + 256 KiB
        mcp = f"{base}/mcp"
        bad_json = http.post(mcp, headers=MCP_HEADERS, content=b'{"jsonrpc": "2.0", "id": 1, "method": ')
        assert bad_json.status_code == 400 and rpc_error(bad_json)["code"] == -32700
        not_rpc = http.post(mcp, headers=MCP_HEADERS, json={"hello": "world"})
        assert 400 <= not_rpc.status_code < 500 and rpc_error(not_rpc)
        tools_list = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        no_session = http.post(mcp, headers=MCP_HEADERS, json=tools_list)
        assert no_session.status_code == 400 and "session" in rpc_error(no_session)["message"].lower()
        unknown = http.post(mcp, headers=dict(MCP_HEADERS, **{"mcp-session-id": "f" * 32}), json=tools_list)
        assert unknown.status_code == 404 and rpc_error(unknown)
        big = http.post(mcp, headers=MCP_HEADERS, content=b"[" + b" " * (400 * 1024) + b"]")
        assert big.status_code == 413 and rpc_error(big)

        messages = f"{base}/messages/"
        assert http.post(messages, headers=MCP_HEADERS, json=tools_list).status_code == 400
        assert "session" in rpc_error(http.post(messages, headers=MCP_HEADERS, json=tools_list))["message"]
        assert rpc_error(http.post(f"{messages}?session_id=nope", headers=MCP_HEADERS, json=tools_list))
        gone = http.post(f"{messages}?session_id={'a' * 32}", headers=MCP_HEADERS, json=tools_list)
        assert gone.status_code == 404 and rpc_error(gone)
        with http.stream("GET", f"{base}/sse") as stream:  # a live SSE session, then bad JSON into it
            lines = stream.iter_lines()
            endpoint = next(line[5:].strip() for line in lines if line.startswith("data:"))
            garbled = http.post(base + endpoint, headers=MCP_HEADERS, content=b"{nope")
            assert garbled.status_code == 400 and rpc_error(garbled)["code"] == -32700
            too_big = http.post(base + endpoint, headers=MCP_HEADERS, content=b" " * (400 * 1024))
            assert too_big.status_code == 413 and rpc_error(too_big)
            ping = http.post(
                base + endpoint, headers=MCP_HEADERS, json={"jsonrpc": "2.0", "id": 9, "method": "ping"}
            )
            assert ping.status_code == 202  # the session survived both
            assert (
                next(line for line in lines if line.startswith("data:"))
                == 'data: {"jsonrpc":"2.0","id":9,"result":{}}'
            )
        for _ in range(3):  # a session whose stream just closed: an answer, never a torn-down connection
            with http.stream("GET", f"{base}/sse") as stream:
                endpoint = next(line[5:].strip() for line in stream.iter_lines() if line.startswith("data:"))
            late = http.post(base + endpoint, headers=MCP_HEADERS, content=b"{nope")
            assert late.status_code in (400, 404) and rpc_error(late)

        assert http.get(f"{base}/healthz").status_code == 200
        opened = http.post(mcp, headers=MCP_HEADERS, json=INITIALIZE)  # still serving
        assert opened.status_code == 200 and opened.headers.get("mcp-session-id")


# --- 7. stateless -----------------------------------------------------------------------------


def _sse_json(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a POST (plain JSON or the last ``data:`` of an SSE body)."""
    if response.headers["content-type"].startswith("application/json"):
        return response.json()
    data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])


async def test_stateless_replicas_share_nothing_but_atlas_and_any_of_them_answers_get_prediction() -> None:
    emulator = Emulator(latency=0.3)

    def replica() -> Any:
        api = atlas_client(
            transport=httpx.ASGITransport(app=emulator.app), base_url=EMULATOR_URL, api_key="k",
            poll_schedule=FAST_POLLS,
        )  # fmt: skip
        return create_http_app(
            Runtime.create(Settings(wait_seconds=20), client=api, remote=True), stateless=True
        )

    with serve_app(replica()) as one, serve_app(replica()) as two:
        async with mcp_client(one, "streamable-http") as first:
            started = await first.call_tool("generate_image", {"prompt": "fox", "wait": False})
        pid = started.structured_content["prediction_id"]
        assert started.structured_content["status"] in ("created", "processing")
        progress: list[str | None] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(message)

        async with mcp_client(two, "streamable-http") as second:
            collected = await second.call_tool("get_prediction", {"prediction_id": pid, "wait_seconds": 10,
                                                                   "return_image": "none"})  # fmt: skip
            waited = await second.call_tool("generate_image", {"prompt": "fox", "return_image": "none"},
                                            progress_callback=on_progress)  # fmt: skip
        assert collected.is_error is False and collected.structured_content["status"] == "completed"
        assert (
            waited.structured_content["status"] == "completed" and progress
        )  # progress rides the call's stream

        # no session at all: a bare tools/call POST to either replica is answered, no session id handed out
        arguments = {"prediction_id": pid, "return_image": "none"}
        call = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": "get_prediction", "arguments": arguments},
        }
        headers = dict(MCP_HEADERS, **{"mcp-protocol-version": "2025-06-18"})
        async with httpx.AsyncClient(timeout=10) as http:
            for base in (one, two):
                response = await http.post(f"{base}/mcp", headers=headers, json=call)
                assert response.status_code == 200 and "mcp-session-id" not in response.headers
                result = _sse_json(response)["result"]
                assert result["isError"] is False and result["structuredContent"]["prediction_id"] == pid


def test_the_collector_leaves_the_start_up_heap_alone_and_runs_less_often() -> None:
    """What a hosted server does once it has started (ATLAS_MCP_GC_THRESHOLD); 0 changes nothing."""
    import gc

    from atlas_image_mcp.http import tune_collector

    def is_frozen(obj: object) -> bool:
        # the collector's generations (what gc.get_objects lists) never include the frozen ones; a
        # count of frozen objects would not do: other threads' frozen objects die by reference count
        return not any(tracked is obj for tracked in gc.get_objects())

    before = gc.get_threshold()
    kept: list[object] = []  # made after any earlier freeze (servers started in this process): not frozen
    try:
        tune_collector(0)
        assert gc.get_threshold() == before and not is_frozen(kept)
        tune_collector(12_345)
        assert gc.get_threshold() == (12_345, *before[1:]) and is_frozen(kept)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
