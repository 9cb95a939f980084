"""Upstream faults, one test each, through a real MCP client.

Every case must end in a completed result or a clear tool error within the wait bound, the
emulator's request log must show exactly one generation POST per generate_image call (a fault on
the POST itself is a tool error, never a second POST: that would be billed twice), and the same
session must answer the next call normally.

Retries sleep through the client's injected ``sleep``: it records the delay asked for and sleeps
at most a few milliseconds, so the file runs in seconds while the policy (backoff, Retry-After)
stays observable.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from atlas_image_mcp.client import AtlasClient
from atlas_image_mcp.emulator import PredictionScript
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .conftest import EMULATOR_URL, FAST_POLLS, TEST_KEY, Sleeps, atlas_client, text_of
from .emulation import Emulator, Fault
from .loadgen import serve_in_thread

GENERATE = "/api/v1/model/generateImage"
POLL = "/api/v1/model/prediction/*"
OUTPUTS = "/outputs/*"
WAIT_SECONDS = 5.0
BOUND = WAIT_SECONDS + 5.0  # every tool call must come back within this
QUICK = {"prompt": "a fox in the snow", "width": 512, "height": 512, "return_image": "none"}


def in_process_api(emulator: Emulator, sleeps: Sleeps, **kw: Any) -> AtlasClient:
    return atlas_client(
        api_key=TEST_KEY,
        base_url=EMULATOR_URL,
        transport=httpx.ASGITransport(app=emulator.app),
        poll_schedule=FAST_POLLS,
        sleep=sleeps,
        **kw,
    )


@asynccontextmanager
async def session(settings: Settings, api: AtlasClient, **changes: Any) -> AsyncIterator[Client]:
    runtime = Runtime.create(settings.replace(wait_seconds=WAIT_SECONDS, **changes), client=api)
    try:
        async with Client(make_server(runtime)) as client:
            yield client
    finally:
        await runtime.aclose()


async def call(client: Client, name: str = "generate_image", arguments: dict[str, Any] | None = None) -> Any:
    """One tool call that must come back within BOUND seconds."""
    with anyio.fail_after(BOUND):
        return await client.call_tool(name, QUICK if arguments is None else arguments)


def assert_clear_error(result: Any, *expected: str) -> str:
    text = text_of(result)
    assert result.is_error is True, text
    for piece in expected:
        assert piece in text, f"{piece!r} not in {text!r}"
    assert "Traceback" not in text and "<html" not in text.lower() and "<!doctype" not in text.lower()
    assert text.strip() != "Error executing tool generate_image", "an unexpected crash, not a clear error"
    return text


def assert_completed(result: Any) -> dict[str, Any]:
    assert result.is_error is False, text_of(result)
    data = result.structured_content
    assert data["status"] == "completed" and data["outputs"], data
    return data


async def assert_next_call_is_normal(client: Client, emulator: Emulator, posts_before: int) -> None:
    """The same session serves a normal call afterwards, with exactly one more POST."""
    assert_completed(await call(client))
    assert emulator.count("POST", GENERATE) == posts_before + 1


# --- faults on the generation POST: a clear tool error, never a second POST -------------------

POST_FAULTS = [
    pytest.param(Fault.rate_limited(7), ("HTTP 429", "rate limiting", "about 7 s"), id="429-retry-after"),
    pytest.param(
        Fault.rate_limited(), ("HTTP 429", "rate limiting", "in a little while"), id="429-no-retry-after"
    ),
    pytest.param(Fault.status(500), ("HTTP 500", "server error"), id="500"),
    pytest.param(Fault.status(502), ("HTTP 502", "server error"), id="502"),
    pytest.param(Fault.status(503), ("HTTP 503", "server error"), id="503"),
    pytest.param(
        Fault.html(502),
        ("HTTP 502", "HTML error page", "502 Bad Gateway", "Cloudflare"),
        id="502-cloudflare-html",
    ),
    pytest.param(Fault.html(503), ("HTTP 503", "HTML error page", "Cloudflare"), id="503-cloudflare-html"),
    pytest.param(Fault.reset(), ("generation request", "connection"), id="connection-reset"),
    pytest.param(Fault.invalid_json(), ("not valid JSON",), id="invalid-json"),
    pytest.param(
        Fault.envelope_error(500, "internal error"),
        ("HTTP 500", "internal error"),
        id="envelope-500-on-http-200",
    ),
]


@pytest.mark.parametrize(("fault", "expected"), POST_FAULTS)
async def test_a_fault_on_the_generation_post_is_a_clear_error_and_is_never_resent(
    emulator: Emulator, settings: Settings, fault: Fault, expected: tuple[str, ...]
) -> None:
    emulator.inject(fault, method="POST", path=GENERATE)
    sleeps = Sleeps()
    async with session(settings, in_process_api(emulator, sleeps)) as client:
        result = await call(client)
        assert_clear_error(result, *expected)
        assert emulator.count("POST", GENERATE) == 1
        assert emulator.count("GET", POLL) == 0
        assert sleeps.asked == []  # no retry was even scheduled
        await assert_next_call_is_normal(client, emulator, posts_before=1)


async def test_an_ambiguous_post_failure_warns_against_generating_again(
    emulator: Emulator, settings: Settings
) -> None:
    """A POST that reached Atlas but got no usable answer may have started a billed job."""
    for fault in (Fault.status(502), Fault.reset(), Fault.invalid_json()):
        emulator.inject(fault, method="POST", path=GENERATE)
    async with session(settings, in_process_api(emulator, Sleeps())) as client:
        for _ in range(3):
            text = assert_clear_error(await call(client))
            assert "may" in text and "reached Atlas" in text, text
            assert "history" in text, text
    assert emulator.count("POST", GENERATE) == 3


async def test_a_refused_post_does_not_warn_about_a_running_job(
    emulator: Emulator, settings: Settings
) -> None:
    """429 (and other 4xx) mean Atlas refused the job: nothing runs, nothing to check."""
    emulator.inject(Fault.rate_limited(3), method="POST", path=GENERATE)
    async with session(settings, in_process_api(emulator, Sleeps())) as client:
        text = assert_clear_error(await call(client), "HTTP 429")
    assert "reached Atlas" not in text


# --- faults on the polls: retried, honouring Retry-After, then completed ----------------------

POLL_FAULTS = [
    pytest.param(Fault.status(500), id="500"),
    pytest.param(Fault.status(502), id="502"),
    pytest.param(Fault.status(503), id="503"),
    pytest.param(Fault.html(502), id="502-cloudflare-html"),
    pytest.param(Fault.reset(), id="connection-reset"),
    pytest.param(Fault.invalid_json(), id="invalid-json"),
    pytest.param(Fault.envelope_error(500, "internal error"), id="envelope-500-on-http-200"),
]


@pytest.mark.parametrize("fault", POLL_FAULTS)
async def test_a_transient_fault_on_a_poll_is_retried_with_backoff_and_the_call_completes(
    emulator: Emulator, settings: Settings, fault: Fault
) -> None:
    emulator.inject(fault, method="GET", path=POLL, times=2)
    sleeps = Sleeps()
    async with session(settings, in_process_api(emulator, sleeps)) as client:
        with anyio.fail_after(BOUND):
            data = assert_completed(await call(client))
        assert emulator.count("POST", GENERATE) == 1
        # two retries: exponential backoff with jitter, 0.5 s then 1 s (x 0.75-1.0)
        backoffs = [s for s in sleeps.asked if s >= 0.3]
        assert len(backoffs) == 2 and 0.375 <= backoffs[0] <= 0.5 and 0.75 <= backoffs[1] <= 1.0, sleeps.asked
        assert data["prediction_id"] in emulator.predictions
        await assert_next_call_is_normal(client, emulator, posts_before=1)


async def test_a_429_on_a_poll_honours_retry_after(emulator: Emulator, settings: Settings) -> None:
    emulator.inject(Fault.rate_limited(2), method="GET", path=POLL)
    sleeps = Sleeps()
    async with session(settings, in_process_api(emulator, sleeps)) as client:
        assert_completed(await call(client))
        assert 2.0 in sleeps.asked, sleeps.asked
        assert emulator.count("POST", GENERATE) == 1
        await assert_next_call_is_normal(client, emulator, posts_before=1)


async def test_a_429_on_a_poll_without_retry_after_backs_off(emulator: Emulator, settings: Settings) -> None:
    emulator.inject(Fault.rate_limited(), method="GET", path=POLL)
    sleeps = Sleeps()
    async with session(settings, in_process_api(emulator, sleeps)) as client:
        assert_completed(await call(client))
        backoffs = [s for s in sleeps.asked if s >= 0.3]
        assert len(backoffs) == 1 and 0.375 <= backoffs[0] <= 0.5, sleeps.asked
        assert emulator.count("POST", GENERATE) == 1
        await assert_next_call_is_normal(client, emulator, posts_before=1)


async def test_a_retry_after_beyond_the_wait_bound_is_not_waited_for(
    emulator: Emulator, settings: Settings
) -> None:
    """Retry-After: 600 on a poll: the call does not sleep past its bound; it hands back the id."""
    emulator.inject(Fault.rate_limited(600), method="GET", path=POLL, times=50)
    sleeps = Sleeps()
    async with session(settings, in_process_api(emulator, sleeps)) as client:
        result = await call(client)
        text = text_of(result)
        pid = next(iter(emulator.predictions))
        assert pid in text and "get_prediction" in text, text
        assert all(s <= WAIT_SECONDS for s in sleeps.asked), sleeps.asked
        assert emulator.count("POST", GENERATE) == 1


async def test_a_persistent_poll_failure_hands_back_the_prediction_id_not_a_reason_to_resubmit(
    emulator: Emulator, settings: Settings
) -> None:
    """Polls fail until retries run out: the job was submitted and is billed, so the error must
    carry its id and point to get_prediction, and get_prediction collects it later."""
    emulator.inject(Fault.status(503), method="GET", path=POLL, times=4)  # 1 try + 3 retries
    sleeps = Sleeps()
    async with session(settings, in_process_api(emulator, sleeps)) as client:
        result = await call(client)
        [pid] = list(emulator.predictions)
        text = assert_clear_error(result, pid, "get_prediction", "do not call generate_image again")
        assert "HTTP 503" in text
        assert emulator.count("POST", GENERATE) == 1
        assert emulator.count("GET", POLL) == 4 and emulator.pending_faults() == []
        emulator.reset_log()
        # the upstream has recovered
        collected = await call(
            client, "get_prediction", {"prediction_id": pid, "wait_seconds": 3, "return_image": "none"}
        )
        assert assert_completed(collected)["prediction_id"] == pid
        assert emulator.count("POST", GENERATE) == 0


# --- read timeout and reset on a real socket ---------------------------------------------------


@pytest.fixture
def served_emulator(emulator: Emulator):
    with serve_in_thread(emulator.app, graceful=0.3, lifespan="off") as url:
        yield url


def socket_api(url: str, sleeps: Sleeps) -> AtlasClient:
    return atlas_client(
        api_key=TEST_KEY,
        base_url=url,
        timeout=0.5,
        connect_timeout=2.0,
        poll_schedule=FAST_POLLS,
        sleep=sleeps,
    )


@pytest.mark.slow  # a real 0.5 s read timeout
async def test_a_read_timeout_on_the_post_is_a_clear_error_and_is_never_resent(
    emulator: Emulator, settings: Settings, served_emulator: str
) -> None:
    released = threading.Event()  # the emulator holds its answer to the POST until the test says so

    async def held(seconds: float) -> None:
        await anyio.to_thread.run_sync(released.wait, 10.0)

    emulator.sleep = held
    emulator.inject(Fault.delay(2), method="POST", path=GENERATE)
    sleeps = Sleeps()
    async with session(settings, socket_api(served_emulator, sleeps)) as client:
        try:
            with anyio.fail_after(BOUND):
                result = await call(client)
            # the answer was still held back: the client gave up on its own 0.5 s timeout
            assert not released.is_set()
        finally:
            released.set()
        assert_clear_error(result, "timed out", "may still have reached Atlas")
        assert emulator.count("POST", GENERATE) == 1
        assert sleeps.asked == []
        await assert_next_call_is_normal(client, emulator, posts_before=1)


@pytest.mark.slow  # a real 0.5 s read timeout
async def test_a_read_timeout_on_a_poll_is_retried_and_the_call_completes(
    emulator: Emulator, settings: Settings, served_emulator: str
) -> None:
    emulator.inject(Fault.delay(2), method="GET", path=POLL)
    sleeps = Sleeps()
    async with session(settings, socket_api(served_emulator, sleeps)) as client:
        assert_completed(await call(client))
        assert emulator.count("POST", GENERATE) == 1
        await assert_next_call_is_normal(client, emulator, posts_before=1)


async def test_a_real_connection_reset_on_the_post_is_a_clear_error_and_is_never_resent(
    emulator: Emulator, settings: Settings, served_emulator: str
) -> None:
    emulator.inject(Fault.reset(), method="POST", path=GENERATE)
    async with session(settings, socket_api(served_emulator, Sleeps())) as client:
        assert_clear_error(await call(client), "generation request")
        assert emulator.count("POST", GENERATE) == 1
        await assert_next_call_is_normal(client, emulator, posts_before=1)


async def test_a_real_connection_reset_on_a_poll_is_retried(
    emulator: Emulator, settings: Settings, served_emulator: str
) -> None:
    emulator.inject(Fault.reset(), method="GET", path=POLL)
    async with session(settings, socket_api(served_emulator, Sleeps())) as client:
        assert_completed(await call(client))
        assert emulator.count("POST", GENERATE) == 1


# --- what the prediction itself reports ---------------------------------------------------------


@pytest.mark.slow  # a real second
async def test_a_prediction_that_is_not_found_for_a_second_after_submit_completes(
    emulator: Emulator, settings: Settings
) -> None:
    emulator.script_next(PredictionScript(not_found_for=1.0))
    async with session(settings, in_process_api(emulator, Sleeps())) as client:
        with anyio.fail_after(BOUND):
            assert_completed(await call(client))
        # it was polled through the second in which Atlas did not know it yet (emulator clock)
        (submitted,) = [r for r in emulator.requests if r.matches("POST", GENERATE)]
        last_poll = [r for r in emulator.requests if r.matches("GET", POLL)][-1]
        assert last_poll.at - submitted.at >= 1.0
        assert emulator.count("POST", GENERATE) == 1
        await assert_next_call_is_normal(client, emulator, posts_before=1)


@pytest.mark.parametrize("http_status", [500, 200])
async def test_a_failed_prediction_is_a_clear_error_read_once_not_retried(
    emulator: Emulator, settings: Settings, http_status: int
) -> None:
    emulator.script_next(
        PredictionScript(outcome="fail", reason="GPU fell over", fail_http_status=http_status, latency=0)
    )
    sleeps = Sleeps()
    async with session(settings, in_process_api(emulator, sleeps)) as client:
        text = assert_clear_error(await call(client), "GPU fell over", "failed", "not billed")
        [pid] = list(emulator.predictions)
        assert pid in text
        assert emulator.count("GET", POLL) == 1  # the failure (even as HTTP 500) is a final answer
        assert [s for s in sleeps.asked if s >= 0.3] == []
        assert emulator.count("POST", GENERATE) == 1
        await assert_next_call_is_normal(client, emulator, posts_before=1)


async def test_an_error_given_as_an_object_is_shown_as_its_message(
    emulator: Emulator, settings: Settings
) -> None:
    emulator.script_next(PredictionScript(outcome="fail", reason="CUDA out of memory", error_as_object=True))
    async with session(settings, in_process_api(emulator, Sleeps())) as client:
        text = assert_clear_error(await call(client), "CUDA out of memory")
        assert "{" not in text and "generation_failed" not in text
        assert emulator.count("POST", GENERATE) == 1
        await assert_next_call_is_normal(client, emulator, posts_before=1)


async def test_a_timed_out_prediction_is_a_clear_error(emulator: Emulator, settings: Settings) -> None:
    emulator.script_next(PredictionScript(outcome="timeout"))
    async with session(settings, in_process_api(emulator, Sleeps())) as client:
        assert_clear_error(await call(client), "timeout", "task timed out")
        assert emulator.count("POST", GENERATE) == 1
        await assert_next_call_is_normal(client, emulator, posts_before=1)


async def test_empty_outputs_with_has_nsfw_contents_is_a_safety_block(
    emulator: Emulator, settings: Settings
) -> None:
    emulator.script_next(PredictionScript(outcome="nsfw"))
    async with session(settings, in_process_api(emulator, Sleeps())) as client:
        result = await call(client)
        assert_clear_error(result, "safety checker", "Rephrase")
        assert emulator.count("POST", GENERATE) == 1
        await assert_next_call_is_normal(client, emulator, posts_before=1)


# --- the output picture's URL fails -------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.status(404), Fault.status(403)], ids=["404", "403"])
async def test_a_download_url_that_fails_still_completes_with_the_url_and_a_note(
    emulator: Emulator, settings: Settings, output_dir: Path, fault: Fault
) -> None:
    emulator.inject(fault, method="GET", path=OUTPUTS, times=10)
    async with session(settings, in_process_api(emulator, Sleeps())) as client:
        result = await call(client, arguments={**QUICK, "return_image": "thumbnail"})
        data = assert_completed(result)
        [out] = data["outputs"]
        assert out["url"].startswith("http") and out["path"] is None
        assert data["error"] and "could not be downloaded" in text_of(result)
        assert out["url"] in text_of(result)
        assert not [b for b in result.content if getattr(b, "type", None) == "image"]
        assert not output_dir.exists() or not [p for p in output_dir.iterdir() if p.is_file()]  # noqa: ASYNC240
        assert emulator.count("POST", GENERATE) == 1
        assert emulator.count("GET", OUTPUTS) == 1  # a 4xx is not retried
        await assert_next_call_is_normal(client, emulator, posts_before=1)


@pytest.mark.parametrize("fault", [Fault.status(502), Fault.reset()], ids=["502", "reset"])
async def test_a_transient_download_failure_is_retried_and_the_picture_arrives(
    emulator: Emulator, settings: Settings, output_dir: Path, fault: Fault
) -> None:
    emulator.inject(fault, method="GET", path=OUTPUTS)
    async with session(settings, in_process_api(emulator, Sleeps())) as client:
        result = await call(client, arguments={**QUICK, "return_image": "thumbnail"})
        data = assert_completed(result)
        assert data["error"] is None
        assert Path(data["outputs"][0]["path"]).is_file()  # noqa: ASYNC240
        assert [b for b in result.content if getattr(b, "type", None) == "image"]
        assert emulator.count("GET", OUTPUTS) == 2
        assert emulator.count("POST", GENERATE) == 1
