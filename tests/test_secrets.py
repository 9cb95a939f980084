"""No key ever leaks: every scenario runs with a recognisable key and every output is scanned.

Sinks scanned: tool results (every content block and structuredContent, serialised whole), MCP
log notifications (legacy ``logging/setLevel`` debug), every log record of every logger at DEBUG
(message and traceback text), stdout/stderr, and - over HTTP - the raw bytes of every response
the server sent. The upstream is made to echo the key back (as itself and as ``Bearer <key>``,
in JSON, text and HTML bodies) so that redaction, not luck, keeps it out.

The emulator's own log records are not scanned: it stands in for Atlas, which knows the key.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from atlas_image_mcp.emulator import PredictionScript
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.redact import redact
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .conftest import EMULATOR_URL, FAST_POLLS, atlas_client, text_of
from .emulation import Emulator, Fault
from .loadgen import serve_in_thread
from .pictures import png_b64
from .test_faults import POLL_FAULTS, POST_FAULTS

MARK = "LEAKCANARY"  # the distinctive middle of every key below: even a partial leak shows
KEY = f"apikey-{MARK}-0123456789abcdef0123"
USER_KEYS = [f"sk_live_{MARK}_alice_7d1f9e2c4b", f"{MARK}-bob-user-key-41c0aa"]  # not apikey-shaped
WRONG_USER_KEY = f"user-{MARK}-wrong-9f9f9f9f"
GENERATE = "/api/v1/model/generateImage"
POLL = "/api/v1/model/prediction/*"
UPLOAD = "/api/v1/model/uploadMedia"
QUICK = {"prompt": "a fox", "width": 512, "height": 512, "return_image": "thumbnail"}


def echoes(key: str) -> list[Fault]:
    """Upstream answers that quote the key back, in every shape a body can take."""
    return [
        Fault.status(
            401, {"code": 401, "msg": f"invalid key {key}", "detail": f"Authorization: Bearer {key}"}
        ),
        Fault.status(500, f"internal error for Bearer {key} (key={key})"),
        Fault.status(502, f"<html><head><title>502 {key}</title></head><body>Bearer {key}</body></html>"),
        Fault.status(
            429, {"code": 429, "message": {"error": f"slow down {key}"}}, headers={"Retry-After": "0"}
        ),
        Fault.status(200, {"code": 500, "msg": f"bad token Bearer {key}", "data": None}),
        Fault.status(200, {"code": 200, "data": {"echo": f"{'x' * 250}{key}", "auth": f"Bearer {key}"}}),
        Fault.status(400, {"code": 400, "error": {"message": f"x-atlas-api-key: {key} rejected"}}),
    ]


class Sinks:
    """Everything the server said, in one place to scan."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.notifications: list[str] = []

    def add_result(self, outcome: Any) -> None:
        if isinstance(outcome, MCPError):
            self.texts.append(repr(outcome.error))
        else:
            self.texts.append(outcome.model_dump_json())

    async def on_log(self, params: Any) -> None:
        self.notifications.append(json.dumps(params.model_dump(mode="json")))

    def assert_clean(
        self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], *extra: str
    ) -> None:
        out, err = capsys.readouterr()
        records = [r for r in caplog.records if not r.name.startswith("atlas_image_mcp.emulator")]
        logged = [f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records]
        formatted = [logging.Formatter().format(r) for r in records]  # includes tracebacks
        for where, items in {
            "tool result": self.texts,
            "log notification": self.notifications,
            "log record": logged + formatted,
            "stdout": [out],
            "stderr": [err],
            "HTTP response": list(extra),
        }.items():
            for item in items:
                assert MARK not in item, f"the key leaked into a {where}: {item[:3000]}"
        assert self.texts, "nothing was checked"


@pytest.fixture
def sinks(caplog: pytest.LogCaptureFixture) -> Sinks:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    return Sinks()


async def fast_sleep(seconds: float) -> None:
    await anyio.sleep(min(seconds, 0.005))


@asynccontextmanager
async def stdio_like(emulator: Emulator, settings: Settings, sinks: Sinks) -> AsyncIterator[Client]:
    """An in-process session (what stdio serves), with debug log notifications on."""
    api = atlas_client(
        api_key=KEY, base_url=EMULATOR_URL, transport=httpx.ASGITransport(app=emulator.app),
        poll_schedule=FAST_POLLS, sleep=fast_sleep,
    )  # fmt: skip
    runtime = Runtime.create(settings.replace(api_key=KEY, wait_seconds=3), client=api)
    try:
        async with Client(make_server(runtime), mode="legacy", logging_callback=sinks.on_log) as client:
            with pytest.warns(MCPDeprecationWarning):
                await client.set_logging_level("debug")
            yield client
    finally:
        await runtime.aclose()


async def call(client: Client, sinks: Sinks, name: str, args: dict[str, Any]) -> Any:
    with anyio.fail_after(15):
        try:
            outcome = await client.call_tool(name, args)
        except MCPError as exc:
            outcome = exc
    sinks.add_result(outcome)
    return outcome


def used_key(emulator: Emulator, key: str) -> bool:
    return any(r.headers.get("authorization") == f"Bearer {key}" for r in emulator.requests)


# --- stdio-like sessions: every scenario -------------------------------------------------------


async def test_success_upload_and_lookups_never_show_the_key(
    sinks: Sinks, settings: Settings, tmp_path: Path, caplog, capsys
) -> None:
    emulator = Emulator(api_keys=[KEY], latency=0.05)
    photo = tmp_path / "photo.png"
    photo.write_bytes(
        base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
        )
    )
    async with stdio_like(emulator, settings, sinks) as client:
        done = await call(client, sinks, "generate_image", {**QUICK, "num_images": 2})
        assert done.is_error is False
        pid = done.structured_content["prediction_id"]
        await call(client, sinks, "get_prediction", {"prediction_id": pid, "return_image": "full"})
        await call(client, sinks, "upload_media", {"file_path": str(photo)})
        await call(
            client,
            sinks,
            "upload_media",
            {"data": base64.b64encode(photo.read_bytes()).decode(), "filename": "p.png"},
        )
        await call(client, sinks, "list_models", {})
        await call(client, sinks, "generate_image", {"prompt": "fox", "dry_run": True})
        state = await client.read_resource(f"atlas-image://predictions/{pid}")
        sinks.texts.append(state.model_dump_json())
    assert used_key(emulator, KEY)
    assert any("submitted prediction" in n for n in sinks.notifications)  # debug notifications did flow
    sinks.assert_clean(caplog, capsys)


@pytest.mark.parametrize("fault", [p.values[0] for p in POST_FAULTS], ids=[p.id for p in POST_FAULTS])
async def test_faults_on_the_post_never_show_the_key(
    sinks: Sinks, settings: Settings, fault: Fault, caplog, capsys
) -> None:
    emulator = Emulator(api_keys=[KEY], latency=0.05)
    emulator.inject(fault, method="POST", path=GENERATE)
    async with stdio_like(emulator, settings, sinks) as client:
        assert (await call(client, sinks, "generate_image", QUICK)).is_error
        assert (await call(client, sinks, "generate_image", QUICK)).is_error is False
    sinks.assert_clean(caplog, capsys)


@pytest.mark.parametrize("fault", [p.values[0] for p in POLL_FAULTS], ids=[p.id for p in POLL_FAULTS])
async def test_faults_on_the_polls_never_show_the_key(
    sinks: Sinks, settings: Settings, fault: Fault, caplog, capsys
) -> None:
    emulator = Emulator(api_keys=[KEY], latency=0.05)
    emulator.inject(fault, method="GET", path=POLL, times=6)  # past the retries: a tool error with the id
    async with stdio_like(emulator, settings, sinks) as client:
        await call(client, sinks, "generate_image", QUICK)
        await call(client, sinks, "generate_image", QUICK)
    sinks.assert_clean(caplog, capsys)


@pytest.mark.parametrize(
    "script",
    [
        PredictionScript(outcome="fail", reason=f"worker crashed with Bearer {KEY}"),
        PredictionScript(
            outcome="fail", reason=f"token {KEY} refused", error_as_object=True, fail_http_status=200
        ),
        PredictionScript(outcome="nsfw"),
        PredictionScript(outcome="timeout"),
        PredictionScript(not_found_for=0.3),
    ],
    ids=["failed-500-echo", "failed-200-object-echo", "nsfw", "timeout", "not-found-first"],
)
async def test_prediction_outcomes_never_show_the_key(
    sinks: Sinks, settings: Settings, script: PredictionScript, caplog, capsys
) -> None:
    emulator = Emulator(api_keys=[KEY], latency=0.05)
    emulator.script_next(script)
    async with stdio_like(emulator, settings, sinks) as client:
        await call(client, sinks, "generate_image", QUICK)
    sinks.assert_clean(caplog, capsys)


@pytest.mark.parametrize("where", ["post", "poll", "upload", "download"])
async def test_an_upstream_that_echoes_the_key_back_is_redacted(
    sinks: Sinks, settings: Settings, where: str, caplog, capsys
) -> None:
    emulator = Emulator(api_keys=[KEY], latency=0.05)
    async with stdio_like(emulator, settings, sinks) as client:
        method = "GET" if where in ("poll", "download") else "POST"
        path = {"post": GENERATE, "poll": POLL, "upload": UPLOAD, "download": "/outputs/*"}[where]
        for fault in echoes(KEY):
            emulator.inject(fault, method=method, path=path, times=5)
            if where == "upload":
                await call(client, sinks, "upload_media", {"data": png_b64(), "filename": "a.png"})
            else:
                await call(client, sinks, "generate_image", QUICK)
            assert used_key(emulator, KEY)
            emulator.reset()  # drop what is left of this fault (and the request log)
    sinks.assert_clean(caplog, capsys)


async def test_a_wrong_key_quoted_back_by_atlas_is_not_shown(
    sinks: Sinks, settings: Settings, caplog, capsys
) -> None:
    emulator = Emulator(api_keys=["apikey-the-right-one-0000"], latency=0.05)
    async with stdio_like(emulator, settings, sinks) as client:
        emulator.inject(Fault.status(401, {"code": 401, "msg": f"key {KEY} is not valid"}), path=GENERATE)
        result = await call(client, sinks, "generate_image", QUICK)
        assert result.is_error and "401" in result.content[0].text
    sinks.assert_clean(caplog, capsys)


# --- hosted mode: per-user keys over streamable HTTP -------------------------------------------


class Recorder:
    """ASGI wrapper keeping the raw bytes of every response the server sends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.bodies.append(b"\n".join(k + b": " + v for k, v in message.get("headers", [])))
            elif message["type"] == "http.response.body":
                self.bodies.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, recording_send)

    def text(self) -> str:
        return b"".join(self.bodies).decode("utf-8", "replace")


@pytest.fixture
def hosted(settings: Settings) -> Any:
    """A hosted server (ATLAS_MCP_USER_KEYS=1) in front of an emulator that knows both users' keys."""
    emulator = Emulator(api_keys=USER_KEYS, latency=0.05)
    api = atlas_client(
        api_key=None, base_url=EMULATOR_URL, transport=httpx.ASGITransport(app=emulator.app),
        poll_schedule=FAST_POLLS, sleep=fast_sleep,
    )  # fmt: skip
    runtime = Runtime.create(
        settings.replace(api_key=None, user_keys=True, wait_seconds=3, save=False), client=api, remote=True
    )
    recorder = Recorder(create_http_app(runtime))
    with serve_in_thread(recorder, graceful=1.0) as base:
        yield emulator, recorder, f"{base}/mcp"


@asynccontextmanager
async def http_session(url: str, key: str | None, sinks: Sinks) -> AsyncIterator[Client]:
    headers = {"X-Atlas-Api-Key": key} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10.0, read=30.0)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode="legacy", logging_callback=sinks.on_log) as client:
            with pytest.warns(MCPDeprecationWarning):
                await client.set_logging_level("debug")
            yield client


async def test_per_user_keys_over_http_never_show_any_key(
    hosted: Any, sinks: Sinks, tmp_path: Path, caplog, capsys
) -> None:
    emulator, recorder, url = hosted
    for key in USER_KEYS:
        async with http_session(url, key, sinks) as client:
            done = await call(client, sinks, "generate_image", QUICK)
            assert done.is_error is False, done
            await call(
                client, sinks, "get_prediction", {"prediction_id": done.structured_content["prediction_id"]}
            )
            await call(client, sinks, "upload_media", {"data": png_b64(), "filename": "hello.png"})
            for fault, path in [(f, GENERATE) for f in echoes(key)] + [(f, POLL) for f in echoes(key)[:3]]:
                emulator.inject(fault, path=path, times=5)
                await call(client, sinks, "generate_image", QUICK)
                assert used_key(emulator, key)
                emulator.reset()
            emulator.script_next(PredictionScript(outcome="fail", reason=f"bad Bearer {key}"))
            await call(client, sinks, "generate_image", QUICK)
        assert used_key(emulator, key)
    async with http_session(url, WRONG_USER_KEY, sinks) as client:  # Atlas refuses it and quotes it back
        emulator.inject(
            Fault.status(401, {"code": 401, "msg": f"no such key {WRONG_USER_KEY}"}), path=GENERATE
        )
        refused = await call(client, sinks, "generate_image", QUICK)
        assert refused.is_error
    async with httpx.AsyncClient() as raw:  # no key: refused at the door, and told how to send one
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        refused = await raw.post(
            url, json=initialize, headers={"accept": "application/json, text/event-stream"}
        )
    assert refused.status_code == 400 and "X-Atlas-Api-Key" in refused.text
    sinks.texts.append(refused.text)
    assert any("submitted prediction" in n for n in sinks.notifications)
    assert len(recorder.bodies) > 20
    sinks.assert_clean(caplog, capsys, recorder.text())


async def test_a_hosted_user_key_is_never_used_for_another_user(hosted: Any, sinks: Sinks) -> None:
    emulator, _recorder, url = hosted
    async with http_session(url, USER_KEYS[0], sinks) as alice, http_session(url, USER_KEYS[1], sinks) as bob:
        async with anyio.create_task_group() as tg:
            for client in (alice, bob, alice, bob):
                tg.start_soon(call, client, sinks, "generate_image", {**QUICK, "return_image": "none"})
    posts = [r for r in emulator.requests if r.method == "POST"]
    assert sorted(r.headers["authorization"] for r in posts) == sorted(f"Bearer {k}" for k in USER_KEYS * 2)


@pytest.mark.parametrize(
    ("made_up", "said"),
    [
        ("black-forest-labs/flux-schnell", "model"),  # a model id
        ("atlas-image://predictions/", "resource"),  # a resource URI prefix
        (f"{EMULATOR_URL}/outputs/", "output URL"),  # the prefix of every output URL
    ],
)
@pytest.mark.parametrize("atlas_accepts_it", [False, True])
async def test_a_made_up_key_cannot_censor_what_other_users_are_told(
    hosted: Any, sinks: Sinks, made_up: str, said: str, atlas_accepts_it: bool
) -> None:
    emulator, _recorder, url = hosted
    if atlas_accepts_it:  # even a key Atlas knows is never a secret for others when it is ordinary text
        emulator.api_keys = emulator.api_keys | {made_up}
    else:
        # Atlas answers the made-up key with an error that is not "unknown key" (here a 503), so
        # nothing ever tells the server that this "key" is nobody's secret
        emulator.inject(Fault.status(503, {"code": 503, "msg": "busy"}), path="/public/v1/balance", times=20)
    async with http_session(url, made_up, sinks) as mallory:
        answered = await call(mallory, sinks, "get_balance", {})
    emulator.reset()
    async with http_session(url, USER_KEYS[0], sinks) as alice:
        done = await call(
            alice, sinks, "generate_image", {**QUICK, "model": "black-forest-labs/flux-schnell"}
        )
    assert answered.is_error is not atlas_accepts_it
    answer = done.model_dump_json()
    shown = f"{text_of(done)} {done.structured_content}"
    assert done.is_error is False and "[redacted]" not in answer, shown
    assert made_up in answer, f"the {said} should be shown: {shown}"


def test_the_canary_keys_are_really_caught_by_the_scan() -> None:
    """Guard against a vacuous test: the scanner sees a key that is there."""
    sinks = Sinks()
    sinks.texts.append(f"oops {USER_KEYS[1][:20]}")

    class _Cap:
        records: list[logging.LogRecord] = []

    class _Sys:
        def readouterr(self) -> tuple[str, str]:
            return "", ""

    with pytest.raises(AssertionError, match="leaked"):
        sinks.assert_clean(_Cap(), _Sys())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "Set ATLAS_MCP_AUTH_TOKEN (clients then send Authorization: Bearer <token>), or ...",
        "Unauthorized: send Authorization: Bearer <ATLAS_MCP_AUTH_TOKEN>",
        'WWW-Authenticate: Bearer realm="atlas-image-mcp"',
    ],
)
def test_redaction_leaves_text_that_is_no_secret_alone(text: str) -> None:
    assert redact(text) == text


def test_redaction_still_removes_a_real_bearer_token_next_to_a_placeholder() -> None:
    text = redact("send Bearer <token>; we got Authorization: Bearer s3cr3t-token-value")
    assert "s3cr3t-token-value" not in text and "Bearer <token>" in text
