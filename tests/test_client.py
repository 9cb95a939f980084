"""AtlasClient against a faked network (``httpx.MockTransport``), with injected sleep, clock and rng.

No test sleeps on the wall clock: every delay the client asks for is recorded by a fake ``sleep``
that returns at once (or advances a fake clock).
"""

from __future__ import annotations

import json
import logging

import anyio
import httpx
import pytest

from atlas_image_mcp.client import AtlasClient
from atlas_image_mcp.errors import (
    APIConnectionError,
    APITimeoutError,
    AtlasError,
    AuthenticationError,
    DownloadError,
    InsufficientBalanceError,
    InvalidParameterError,
    InvalidRequestError,
    InvalidResponseError,
    LocalFileError,
    MissingAPIKeyError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from atlas_image_mcp.models import Prediction
from atlas_image_mcp.params import GenerationRequest
from atlas_image_mcp.wire import prepare_request

from .conftest import atlas_client

KEY = "apikey-SECRET123456"
BASE = "https://api.test"
PID = "8ba2926c6bd642049f4d17dd68ea6785"
SCHNELL = "black-forest-labs/flux-schnell"
DEV = "black-forest-labs/flux-dev"
OUTPUT_URL = f"https://cdn.test/outputs/{PID}/0.jpeg"
#: an output on the API's own host: fetched through the client's (mock) transport
DOWNLOAD_URL = f"{BASE}/outputs/{PID}/0.jpeg"
UPLOAD_URL = "https://files.test/media/abc123.png"
PNG = b"\x89PNG\r\n\x1a\nfake-png-payload"


# --- small helpers (no network, no time) ------------------------------------------------------


def recording_sleep() -> tuple[object, list[float]]:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    return sleep, delays


def fake_time() -> tuple[object, object, list[float]]:
    """A clock that only moves when the fake sleep is awaited; returns (sleep, clock, delays)."""
    now = [1000.0]
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        now[0] += seconds

    return sleep, (lambda: now[0]), delays


def make_client(
    handler, *, api_key: str | None = KEY, sleep=None, clock=None, rng=lambda: 0.5, **kw
) -> AtlasClient:
    if sleep is None:
        sleep, _ = recording_sleep()
    extra = {"clock": clock} if clock is not None else {}
    return atlas_client(
        api_key=api_key,
        base_url=BASE,
        transport=httpx.MockTransport(handler),
        sleep=sleep,
        rng=rng,
        **extra,
        **kw,
    )


def ok(data) -> httpx.Response:
    return httpx.Response(200, json={"code": 200, "message": "", "data": data})


def prediction(status: str, **fields) -> dict:
    data = {"id": PID, "model": SCHNELL, "status": status, "outputs": None, "error": ""}
    if status == "completed":
        data.update(outputs=[OUTPUT_URL], has_nsfw_contents=[False], price="0.003")
    data.update(fields)
    return data


def raising(exc_type):
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated network failure", request=request)

    return fail


def status(code: int, body=None, headers=None):
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(code, text=body, headers=headers)
        return httpx.Response(
            code, json=body if body is not None else {"code": code, "msg": "nope"}, headers=headers
        )

    return answer


CLOUDFLARE_502 = (
    "<!DOCTYPE html>\n<html lang=en><head><title>api.atlascloud.ai | 502: Bad gateway</title>"
    "<style>body{font-family:sans-serif}</style></head><body><div id=cf-wrapper>"
    "<h1>Bad gateway</h1><span>Cloudflare Ray ID: 8f1e2d3c4b5a6978</span></div></body></html>"
)


async def submit(client: AtlasClient, **fields):
    return await client.submit_image(prepare_request(GenerationRequest(prompt="a red fox in snow", **fields)))


async def upload(client: AtlasClient):
    return await client.upload_media(PNG, "photo.png")


def submit_ok(request: httpx.Request) -> httpx.Response:
    return ok({"id": PID, "model": SCHNELL, "status": "created", "outputs": None})


def upload_ok(request: httpx.Request) -> httpx.Response:
    return ok({"type": "image", "download_url": UPLOAD_URL, "filename": "photo.png", "size": len(PNG)})


# --- submit_image ---------------------------------------------------------------------------


async def test_submit_posts_a_flat_json_body_with_bearer_auth_and_returns_the_data_id():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok({"id": PID, "model": SCHNELL, "status": "created", "outputs": None})

    async with make_client(handler) as client:
        result = await submit(client, width=1024, height=768)

    assert len(seen) == 1
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/api/v1/model/generateImage"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "model": SCHNELL,
        "prompt": "a red fox in snow",
        "size": "1024*768",
        "num_images": 1,
    }
    assert result.id == PID
    assert result.status == "created"
    assert result.kind == "running"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"code": 200, "message": "", "data": {"id": PID, "status": "created"}}, id="data.id"),
        pytest.param({"code": 200, "id": PID, "data": {"status": "created"}}, id="top-level-id-in-envelope"),
        pytest.param({"id": PID, "status": "created"}, id="bare-object"),
    ],
)
async def test_submit_reads_the_prediction_id_from_data_id_or_a_top_level_id(body):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    async with make_client(handler) as client:
        result = await submit(client)

    assert result.id == PID
    assert result.status == "created"


async def test_submit_answer_without_an_id_raises_invalid_response_and_warns_against_resubmitting():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok({"status": "created", "model": SCHNELL})

    async with make_client(handler) as client:
        with pytest.raises(InvalidResponseError) as info:
            await submit(client)

    assert len(seen) == 1
    assert "no prediction id" in info.value.message
    assert "Do not resubmit" in info.value.message


async def test_submit_leaves_steps_and_guidance_scale_out_of_the_body_for_schnell():
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return submit_ok(request)

    async with make_client(handler) as client:
        await submit(client, model=SCHNELL, steps=30, guidance_scale=7.5)

    assert len(bodies) == 1
    assert bodies[0]["model"] == SCHNELL
    for absent in ("num_inference_steps", "steps", "guidance_scale"):
        assert absent not in bodies[0]


async def test_submit_sends_steps_as_num_inference_steps_for_flux_dev():
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return submit_ok(request)

    async with make_client(handler) as client:
        await submit(client, model=DEV, steps=20, guidance_scale=4.0, seed=7)

    assert bodies[0]["num_inference_steps"] == 20
    assert bodies[0]["guidance_scale"] == 4.0
    assert bodies[0]["seed"] == 7
    assert "steps" not in bodies[0]


async def test_submit_passes_extra_parameters_of_an_unknown_model_through():
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return submit_ok(request)

    async with make_client(handler) as client:
        await submit(client, model="acme/painter-2", extra={"style": "ink", "negative_prompt": "blurry"})

    assert bodies[0]["model"] == "acme/painter-2"
    assert bodies[0]["style"] == "ink"
    assert bodies[0]["negative_prompt"] == "blurry"
    assert bodies[0]["prompt"] == "a red fox in snow"


# --- billable POSTs are never retried once they may have reached the server ---------------------


POST_OPERATIONS = [
    pytest.param(submit, submit_ok, "/api/v1/model/generateImage", id="submit"),
    pytest.param(upload, upload_ok, "/api/v1/model/uploadMedia", id="upload"),
]

MAY_HAVE_BEEN_SENT = [
    pytest.param(raising(httpx.ReadTimeout), APITimeoutError, id="ReadTimeout"),
    pytest.param(raising(httpx.WriteTimeout), APITimeoutError, id="WriteTimeout"),
    pytest.param(raising(httpx.RemoteProtocolError), APIConnectionError, id="RemoteProtocolError"),
    pytest.param(raising(httpx.ReadError), APIConnectionError, id="ReadError"),
    pytest.param(raising(httpx.WriteError), APIConnectionError, id="WriteError"),
    pytest.param(status(500), ServerError, id="500"),
    pytest.param(status(502, CLOUDFLARE_502), ServerError, id="502-html"),
    pytest.param(status(503), ServerError, id="503"),
    pytest.param(status(429, headers={"Retry-After": "1"}), RateLimitError, id="429"),
    pytest.param(status(200, {"code": 500, "msg": "internal"}), ServerError, id="envelope-500"),
]


@pytest.mark.parametrize(("operation", "success", "path"), POST_OPERATIONS)
@pytest.mark.parametrize(("failure", "error_type"), MAY_HAVE_BEEN_SENT)
async def test_billable_post_is_sent_exactly_once_when_it_may_have_reached_the_server(
    operation, success, path, failure, error_type
):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return failure(request)

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep, max_retries=5) as client:
        with pytest.raises(error_type) as info:
            await operation(client)

    assert type(info.value) is error_type
    assert len(seen) == 1
    assert seen[0].url.path == path
    assert delays == []


@pytest.mark.parametrize("failure", [raising(httpx.ReadTimeout), raising(httpx.WriteTimeout)])
async def test_a_timed_out_submit_warns_that_it_may_still_have_reached_atlas(failure):
    async with make_client(failure) as client:
        with pytest.raises(APITimeoutError) as info:
            await submit(client)

    assert info.value.sent is True
    assert "may still have reached Atlas" in info.value.message
    assert "  " not in info.value.message  # its sentences are joined by one space


@pytest.mark.parametrize(("operation", "success", "path"), POST_OPERATIONS)
@pytest.mark.parametrize(
    "not_sent",
    [raising(httpx.ConnectError), raising(httpx.ConnectTimeout), raising(httpx.PoolTimeout)],
    ids=["ConnectError", "ConnectTimeout", "PoolTimeout"],
)
async def test_billable_post_is_retried_when_the_connection_failed_before_anything_was_sent(
    operation, success, path, not_sent
):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return not_sent(request) if len(seen) == 1 else success(request)

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        result = await operation(client)

    assert len(seen) == 2
    assert [r.url.path for r in seen] == [path, path]
    if path.endswith("uploadMedia"):  # the file stream was rewound: the retry carries the whole file
        assert seen[0].content.count(PNG) == seen[1].content.count(PNG) == 1
    else:
        assert seen[1].content == seen[0].content
    assert len(delays) == 1
    assert 0 < delays[0] <= 8.0
    assert getattr(result, "id", None) == PID or getattr(result, "download_url", None) == UPLOAD_URL


async def test_a_post_whose_connection_never_opens_gives_up_after_max_retries():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep, max_retries=2) as client:
        with pytest.raises(APIConnectionError) as info:
            await submit(client)

    assert len(seen) == 3
    assert len(delays) == 2
    assert info.value.sent is False
    assert "HTTPS_PROXY" in info.value.message


# --- GET retries ----------------------------------------------------------------------------


RETRIED_GET_FAILURES = [
    pytest.param(raising(httpx.ConnectError), APIConnectionError, id="ConnectError"),
    pytest.param(raising(httpx.ReadTimeout), APITimeoutError, id="ReadTimeout"),
    pytest.param(raising(httpx.RemoteProtocolError), APIConnectionError, id="RemoteProtocolError"),
    pytest.param(status(429), RateLimitError, id="429"),
    pytest.param(status(500), ServerError, id="500"),
    pytest.param(status(502, CLOUDFLARE_502), ServerError, id="502-cloudflare-html"),
    pytest.param(status(503, {"code": 503, "msg": "busy"}), ServerError, id="503"),
    pytest.param(status(200, "<html>not json</html>"), InvalidResponseError, id="invalid-json"),
    pytest.param(status(200, {"code": 500, "msg": "internal"}), ServerError, id="envelope-500-on-200"),
]


@pytest.mark.parametrize(("failure", "error_type"), RETRIED_GET_FAILURES)
async def test_get_prediction_is_retried_once_after_a_transient_failure_and_then_succeeds(
    failure, error_type
):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return failure(request) if len(seen) == 1 else ok(prediction("processing"))

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        result = await client.get_prediction(PID)

    assert len(seen) == 2
    assert all(r.method == "GET" and str(r.url) == f"{BASE}/api/v1/model/prediction/{PID}" for r in seen)
    assert delays == [0.4375]  # 0.5 s first backoff x (0.75 + 0.25 * rng 0.5)
    assert result.status == "processing"


@pytest.mark.parametrize(("failure", "error_type"), RETRIED_GET_FAILURES)
async def test_get_prediction_gives_up_after_max_retries_with_the_last_error(failure, error_type):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return failure(request)

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep, max_retries=3) as client:
        with pytest.raises(error_type) as info:
            await client.get_prediction(PID)

    assert type(info.value) is error_type
    assert len(seen) == 4
    assert delays == [0.4375, 0.875, 1.75]


async def test_get_backoff_doubles_and_is_capped_at_eight_seconds():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, json={"code": 503, "msg": "busy"})

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep, max_retries=7, rng=lambda: 1.0) as client:
        with pytest.raises(ServerError):
            await client.get_prediction(PID)

    assert len(seen) == 8
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(later >= earlier for earlier, later in zip(delays, delays[1:], strict=False))
    assert max(delays) <= 8.0


async def test_get_honours_retry_after_seconds_on_429():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"code": 429, "msg": "slow down"})
        return ok(prediction("processing"))

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        result = await client.get_prediction(PID)

    assert len(seen) == 2
    assert delays == [2.0]
    assert result.status == "processing"


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("120", 30.0), ("0", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
    ids=["capped-at-30s", "zero", "http-date-in-the-past"],
)
async def test_get_retry_after_is_capped_and_understands_http_dates(retry_after, expected):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": retry_after}, json={"code": 429})
        return ok(prediction("processing"))

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        await client.get_prediction(PID)

    assert delays == [expected]


async def test_an_unparseable_retry_after_falls_back_to_backoff():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": "soon"}, json={"code": 429})
        return ok(prediction("processing"))

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        await client.get_prediction(PID)

    assert delays == [0.4375]


async def test_a_cloudflare_html_page_is_summarised_not_dumped_into_the_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text=CLOUDFLARE_502, headers={"content-type": "text/html"})

    async with make_client(handler, max_retries=0) as client:
        with pytest.raises(ServerError) as info:
            await client.get_prediction(PID)

    message = info.value.message
    assert "HTML error page" in message
    assert "502: Bad gateway" in message
    assert "<html" not in message.lower()
    assert "<style" not in message
    assert "Ray ID" not in message
    assert info.value.status_code == 502


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (402, InsufficientBalanceError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (422, InvalidRequestError),
    ],
)
async def test_get_prediction_does_not_retry_client_errors(code, error_type):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(code, json={"code": code, "msg": "refused"})

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        with pytest.raises(error_type) as info:
            await client.get_prediction(PID)

    assert type(info.value) is error_type
    assert info.value.status_code == code
    assert len(seen) == 1
    assert delays == []


@pytest.mark.parametrize("bad_id", ["", "   ", "../models", "a/b", "x" * 200, "id with space"])
async def test_get_prediction_refuses_a_malformed_id_without_a_request(bad_id):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(prediction("processing"))

    async with make_client(handler) as client:
        with pytest.raises(InvalidParameterError) as info:
            await client.get_prediction(bad_id)

    assert seen == []
    assert info.value.parameter == "prediction_id"


# --- failed predictions are final answers -----------------------------------------------------


FAILED_ANSWERS = [
    pytest.param(
        500,
        {
            "code": 500,
            "message": "Generation failed: boom",
            "data": {"id": PID, "status": "failed", "error": ""},
        },
        "Generation failed: boom",
        id="http-500-message-copied",
    ),
    pytest.param(
        200,
        {
            "code": 500,
            "message": "Generation failed: boom",
            "data": {"id": PID, "status": "failed", "error": ""},
        },
        "Generation failed: boom",
        id="http-200-envelope-500",
    ),
    pytest.param(
        200,
        {
            "code": 200,
            "message": "Generation failed: boom",
            "data": {"id": PID, "status": "failed", "error": ""},
        },
        "Generation failed: boom",
        id="http-200-envelope-200",
    ),
    pytest.param(
        500,
        {
            "code": 500,
            "message": "Generation failed: boom",
            "data": {"id": PID, "status": "failed", "error": {"message": "x"}},
        },
        "x",
        id="error-object",
    ),
    pytest.param(
        500,
        {
            "code": 500,
            "msg": "Generation failed: boom",
            "data": {"id": PID, "status": "FAILED", "outputs": None},
        },
        "Generation failed: boom",
        id="msg-and-upper-case-status",
    ),
    pytest.param(
        500,
        {
            "code": 500,
            "message": "Generation failed: boom",
            "data": {"status": "failed", "outputs": None, "executionTime": 0, "timings": {"inference": 0}},
        },
        "Generation failed: boom",
        id="http-500-data-without-id",
    ),
    pytest.param(
        200,
        {"code": 500, "message": "Generation failed: boom", "data": {"status": "failed"}},
        "Generation failed: boom",
        id="http-200-envelope-500-data-without-id",
    ),
]


@pytest.mark.parametrize(("http_status", "body", "reason"), FAILED_ANSWERS)
async def test_a_failed_prediction_is_a_final_answer_returned_after_one_request(http_status, body, reason):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(http_status, json=body)

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        result = await client.get_prediction(PID)

    assert len(seen) == 1
    assert delays == []
    assert result.id == PID
    assert result.kind == "failed"
    assert result.is_terminal
    assert result.error == reason


async def test_a_failed_prediction_answered_as_500_ends_wait_without_retries():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return ok(prediction("processing"))
        return httpx.Response(
            500, json={"code": 500, "message": "Generation failed: boom", "data": prediction("failed")}
        )

    sleep, clock, delays = fake_time()
    async with make_client(handler, sleep=sleep, clock=clock) as client:
        result = await client.wait(PID, max_wait=60)

    assert len(seen) == 2
    assert len(delays) == 2  # one poll interval before each request, no retry backoff
    assert result.kind == "failed"
    assert "boom" in result.error


# --- envelope codes and upstream messages ---------------------------------------------------


@pytest.mark.parametrize("code", [200, "200", 0, " 200 "])
async def test_envelope_code_200_as_number_or_string_is_success(code):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": code, "message": "success", "data": prediction("completed")})

    async with make_client(handler) as client:
        result = await client.get_prediction(PID)

    assert result.status == "completed"
    assert result.outputs == [OUTPUT_URL]


@pytest.mark.parametrize(
    ("body", "error_type", "text"),
    [
        ({"code": 500, "msg": "internal"}, ServerError, "internal"),
        ({"code": "500", "message": "database down"}, ServerError, "database down"),
        ({"code": 401, "error": "token expired"}, AuthenticationError, "token expired"),
        ({"code": 400, "msg": "bad request", "data": None}, InvalidRequestError, "bad request"),
    ],
)
async def test_a_non_200_envelope_code_on_http_200_is_an_error_for_a_submit(body, error_type, text):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body)

    async with make_client(handler) as client:
        with pytest.raises(error_type) as info:
            await submit(client)

    assert type(info.value) is error_type
    assert len(seen) == 1
    assert text in info.value.message


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"code": 400, "msg": "bad request"}, "bad request"),
        ({"message": "Invalid size format: 720x1280, expected format: width*height"}, "Invalid size format"),
        ({"error": "model not found"}, "model not found"),
        ({"error": {"message": "nested reason"}}, "nested reason"),
        ("plain text problem", "plain text problem"),
    ],
    ids=["msg", "message", "error", "error-object", "plain-text"],
)
async def test_the_upstream_message_appears_in_the_error(body, text):
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(400, text=body)
        return httpx.Response(400, json=body)

    async with make_client(handler) as client:
        with pytest.raises(InvalidRequestError) as info:
            await submit(client)

    assert f"Atlas said: {text}" in info.value.message
    assert "Fix the parameters" in info.value.message


@pytest.mark.parametrize(
    ("code", "error_type", "next_step"),
    [
        (400, InvalidRequestError, "Fix the parameters"),
        (422, InvalidRequestError, "Fix the parameters"),
        (401, AuthenticationError, "Check ATLASCLOUD_API_KEY"),
        (403, AuthenticationError, "Check ATLASCLOUD_API_KEY"),
        (402, InsufficientBalanceError, "top up"),
        (429, RateLimitError, "try again"),
        (500, ServerError, "history of the Atlas console"),
        (503, ServerError, "history of the Atlas console"),
    ],
)
async def test_a_submit_error_status_maps_to_its_error_type_with_a_next_step(code, error_type, next_step):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, json={"code": code, "msg": "refused"})

    async with make_client(handler) as client:
        with pytest.raises(error_type) as info:
            await submit(client)

    assert type(info.value) is error_type
    assert info.value.status_code == code
    assert info.value.method == "POST"
    assert next_step in info.value.message


# --- the API key: missing, never leaked ------------------------------------------------------


async def _wait(client: AtlasClient):
    return await client.wait(PID, max_wait=5)


async def _get(client: AtlasClient):
    return await client.get_prediction(PID)


@pytest.mark.parametrize("api_key", [None, ""])
@pytest.mark.parametrize("operation", [submit, upload, _get, _wait], ids=["submit", "upload", "get", "wait"])
async def test_a_missing_key_raises_before_any_request_and_says_how_to_set_it(api_key, operation):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(prediction("processing"))

    async with make_client(handler, api_key=api_key) as client:
        assert client.has_api_key is False
        with pytest.raises(MissingAPIKeyError) as info:
            await operation(client)

    assert seen == []
    assert "ATLASCLOUD_API_KEY" in info.value.message


ECHO = f"rejected header Authorization: Bearer {KEY} for key {KEY}"


async def _download(client: AtlasClient):
    return await download(client, DOWNLOAD_URL, max_bytes=1024)


async def download(client: AtlasClient, url: str, max_bytes: int) -> tuple[bytes, str]:
    """Download ``url`` into a scratch folder; the file's bytes and the content type."""
    import tempfile
    from pathlib import Path

    from atlas_image_mcp.fetch import remove_download

    with tempfile.TemporaryDirectory() as folder:
        result = await client.download(url, folder=Path(folder), max_bytes=max_bytes)
        content = result.path.read_bytes()
        await remove_download(result.path)
        return content, result.content_type


async def _list(client: AtlasClient):
    return await client.list_models()


LEAKY_PATHS = [
    pytest.param(_get, status(400, {"code": 400, "msg": ECHO}), True, id="get-400"),
    pytest.param(_get, status(401, {"message": ECHO}), True, id="get-401"),
    pytest.param(_get, status(402, ECHO), True, id="get-402-text"),
    pytest.param(_get, status(403, {"error": {"message": ECHO}}), True, id="get-403"),
    pytest.param(_get, status(404, {"code": 404, "msg": ECHO}), True, id="get-404"),
    pytest.param(_get, status(422, {"detail": ECHO}), True, id="get-422"),
    pytest.param(_get, status(429, {"msg": ECHO}), True, id="get-429"),
    pytest.param(_get, status(500, ECHO), True, id="get-500-text"),
    pytest.param(_get, status(502, f"<html><title>{ECHO}</title></html>"), True, id="get-502-html"),
    pytest.param(_get, status(200, {"code": 500, "msg": ECHO}), True, id="get-envelope-500"),
    pytest.param(_get, status(200, f"not json {ECHO}"), False, id="get-invalid-json"),
    pytest.param(
        _get, raising(lambda m, request: httpx.ConnectError(ECHO, request=request)), True, id="get-connect"
    ),
    pytest.param(
        _get, raising(lambda m, request: httpx.ReadTimeout(ECHO, request=request)), False, id="get-timeout"
    ),
    pytest.param(submit, status(500, {"code": 500, "message": ECHO}), True, id="submit-500"),
    pytest.param(submit, status(200, {"code": 200, "data": {"note": ECHO}}), True, id="submit-no-id"),
    pytest.param(
        submit, raising(lambda m, request: httpx.ReadError(ECHO, request=request)), True, id="submit-read"
    ),
    pytest.param(upload, status(400, {"code": 400, "msg": ECHO}), True, id="upload-400"),
    pytest.param(upload, status(200, {"code": 200, "data": {"note": ECHO}}), False, id="upload-no-url"),
    pytest.param(_download, status(404, ECHO), False, id="download-404"),
    pytest.param(
        _download,
        raising(lambda m, request: httpx.ConnectError(ECHO, request=request)),
        False,
        id="download-connect",
    ),
    pytest.param(_list, status(500, {"msg": ECHO}), True, id="models-500"),
]


@pytest.mark.parametrize(("operation", "failure", "echoed"), LEAKY_PATHS)
async def test_no_error_ever_contains_the_api_key_even_when_the_server_echoes_it(operation, failure, echoed):
    def handler(request: httpx.Request) -> httpx.Response:
        return failure(request)

    async with make_client(handler, max_retries=1) as client:
        with pytest.raises(AtlasError) as info:
            await operation(client)
        client_repr = repr(client)

    err = info.value
    for text in (str(err), repr(err), err.message, client_repr, str(err.args)):
        assert KEY not in text
        assert "SECRET123456" not in text
    if echoed:  # the echo did reach the message, with the key cut out
        assert "[redacted]" in err.message
    assert "api_key=set" in client_repr


async def test_a_different_bearer_token_echoed_by_the_server_is_redacted_too():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"msg": "got Bearer sk-otherkey-9876 and apikey-OTHERKEY999 instead"})

    async with make_client(handler) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_prediction(PID)

    assert "sk-otherkey-9876" not in str(info.value)
    assert "OTHERKEY999" not in str(info.value)
    assert "Bearer [redacted]" in str(info.value)


async def test_an_echoed_key_cut_by_the_no_id_message_preview_does_not_leak_partially():
    key = "sk_live_ABCDEFGHIJKLMNOPQRSTUV"
    prefix = "{'code': 200, 'data': {'note': '"
    filler = "x" * (300 - len(prefix) - 18)  # the 300-char cut lands 18 characters into the key

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 200, "data": {"note": filler + key}})

    async with make_client(handler, api_key=key) as client:
        with pytest.raises(InvalidResponseError) as info:
            await submit(client)

    assert "sk_live_ABCDEFGHIJ" not in str(info.value)


async def test_retry_logs_never_contain_the_api_key(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="atlas_image_mcp")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise httpx.ConnectError(ECHO, request=request)
        if len(seen) == 2:
            return httpx.Response(500, json={"code": 500, "msg": ECHO})
        return httpx.Response(429, text=ECHO)

    async with make_client(handler, max_retries=2) as client:
        with pytest.raises(RateLimitError):
            await client.get_prediction(PID)

    assert len(seen) == 3
    retry_records = [
        r for r in caplog.records if r.name.startswith("atlas_image_mcp") and "retrying" in r.getMessage()
    ]
    assert len(retry_records) == 2
    assert "[redacted]" in caplog.text
    assert KEY not in caplog.text
    assert "SECRET123456" not in caplog.text


def test_client_repr_shows_whether_a_key_is_set_but_never_the_key():
    with_key = atlas_client(api_key=KEY, base_url=BASE + "/api/v1/", transport=httpx.MockTransport(submit_ok))
    without = atlas_client(api_key=None, base_url=BASE, transport=httpx.MockTransport(submit_ok))

    assert repr(with_key) == f"AtlasClient(base_url='{BASE}', api_key=set)"
    assert repr(without) == f"AtlasClient(base_url='{BASE}', api_key=missing)"
    assert KEY not in repr(with_key.with_api_key("apikey-OTHERVIEW42"))
    assert "OTHERVIEW42" not in repr(with_key.with_api_key("apikey-OTHERVIEW42"))


# --- list_models ----------------------------------------------------------------------------


CATALOGUE = {
    "code": "200",
    "data": [
        {
            "model": SCHNELL,
            "type": "Image",
            "displayName": "Flux Schnell",
            "profile": "fast",
            "categories": ["TEXT-TO-IMAGE"],
            "organization": "Black Forest Labs",
            "price": {"actual": {"base_price": "0.003", "unit": "image"}},
            "display_console": True,
        },
        {"model": "internal/hidden-image", "type": "Image", "display_console": False},
        {"model": "kling/video-1", "type": "Video", "display_console": True},
        {"model": "deepseek/chat", "type": "Text"},
        {"model": DEV, "type": "image"},
        {"type": "Image", "displayName": "no model id"},
    ],
}


@pytest.mark.parametrize("api_key", [None, KEY], ids=["no-key", "with-key"])
async def test_list_models_keeps_visible_image_models_and_sends_no_authorization(api_key):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=CATALOGUE)

    async with make_client(handler, api_key=api_key) as client:
        models = await client.list_models()

    assert len(seen) == 1
    assert str(seen[0].url) == f"{BASE}/api/v1/models"
    assert "authorization" not in seen[0].headers
    assert [m.id for m in models] == [SCHNELL, DEV]
    assert models[0].name == "Flux Schnell"
    assert models[0].price == "0.003"
    assert models[0].price_unit == "image"
    assert models[0].categories == ["TEXT-TO-IMAGE"]


async def test_list_models_is_cached_for_five_minutes_then_fetched_again():
    seen: list[httpx.Request] = []
    now = [50.0]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=CATALOGUE)

    async with make_client(handler, clock=lambda: now[0]) as client:
        first = await client.list_models()
        now[0] += 299.0
        second = await client.list_models()
        assert len(seen) == 1
        now[0] += 2.0  # 301 s after the fetch
        third = await client.list_models()
        assert len(seen) == 2
        await client.list_models(refresh=True)
        assert len(seen) == 3

    assert first == second == third


async def test_list_models_rejects_a_catalogue_that_is_not_a_list():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 200, "data": {"models": []}})

    async with make_client(handler) as client:
        with pytest.raises(InvalidResponseError):
            await client.list_models()


# --- wait() ---------------------------------------------------------------------------------


async def test_wait_polls_until_completed_and_reports_every_state_in_order():
    script = ["created", "processing", "processing", "completed"]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(prediction(script[len(seen) - 1]))

    updates: list[str] = []
    sleep, clock, delays = fake_time()
    async with make_client(handler, sleep=sleep, clock=clock) as client:
        result = await client.wait(PID, max_wait=60, on_update=lambda p: updates.append(p.status))

    assert result.status == "completed"
    assert result.outputs == [OUTPUT_URL]
    assert updates == script
    assert len(seen) == 4
    assert delays == pytest.approx([0.3, 0.3, 0.3, 0.3])


async def test_wait_polls_every_300_ms_for_10_s_then_every_tenth_of_the_time_waited():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(prediction("completed" if len(seen) == 75 else "processing"))

    sleep, clock, delays = fake_time()
    async with make_client(handler, sleep=sleep, clock=clock) as client:
        result = await client.wait(PID, max_wait=600)

    assert result.status == "completed"
    assert len(seen) == 75 == len(delays)
    assert delays[:34] == pytest.approx([0.3] * 34)  # up to 10.2 s: anything shorter is seen within 0.3 s
    waited = 10.2
    for delay in delays[34:]:  # then 10% of the time waited, up to 30 s apart
        assert delay == pytest.approx(min(30.0, 0.1 * waited))
        waited += delay
    assert max(delays) == pytest.approx(30.0)


async def test_wait_returns_the_last_running_state_when_the_timeout_passes():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(prediction("processing"))

    updates: list[str] = []
    sleep, clock, delays = fake_time()
    start = clock()
    async with make_client(handler, sleep=sleep, clock=clock) as client:
        result = await client.wait(PID, max_wait=3.1, on_update=lambda p: updates.append(p.status))

    assert result.status == "processing"
    assert result.id == PID
    assert clock() - start == pytest.approx(3.1)  # the last sleep was cut to the time left
    assert sum(delays) == pytest.approx(3.1)
    assert delays[-1] < delays[-2]
    assert len(seen) == len(delays) == len(updates)


async def test_wait_with_a_known_running_state_and_no_time_left_returns_it_without_polling():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(prediction("completed"))

    updates: list[str] = []
    known = Prediction(id=PID, status="created")
    sleep, clock, delays = fake_time()
    async with make_client(handler, sleep=sleep, clock=clock) as client:
        result = await client.wait(PID, max_wait=0, on_update=lambda p: updates.append(p.status), first=known)

    assert result is known
    assert seen == []
    assert delays == []
    assert updates == ["created"]


async def test_wait_reports_the_known_first_state_then_polls_with_an_async_callback():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(prediction("completed"))

    updates: list[str] = []

    async def on_update(p: Prediction) -> None:
        updates.append(p.status)

    sleep, clock, delays = fake_time()
    async with make_client(handler, sleep=sleep, clock=clock) as client:
        result = await client.wait(
            PID, max_wait=60, on_update=on_update, first=Prediction(id=PID, status="created")
        )

    assert updates == ["created", "completed"]
    assert len(seen) == 1
    assert result.status == "completed"


async def test_wait_with_a_terminal_first_state_returns_it_without_a_request():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(prediction("processing"))

    done = Prediction(id=PID, status="completed", outputs=[OUTPUT_URL])
    async with make_client(handler) as client:
        result = await client.wait(PID, max_wait=60, first=done)

    assert result is done
    assert seen == []


async def test_wait_tolerates_not_found_right_after_submit_then_succeeds():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= 2:
            return httpx.Response(404, json={"code": 404, "msg": "prediction not found"})
        return ok(prediction("processing" if len(seen) == 3 else "completed"))

    updates: list[str] = []
    sleep, clock, delays = fake_time()
    async with make_client(handler, sleep=sleep, clock=clock) as client:
        result = await client.wait(PID, max_wait=60, on_update=lambda p: updates.append(p.status))

    assert result.status == "completed"
    assert len(seen) == 4
    assert updates == ["processing", "completed"]


async def test_wait_raises_not_found_once_the_grace_period_is_over():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"code": 404, "msg": "prediction not found"})

    sleep, clock, delays = fake_time()
    start = clock()
    async with make_client(handler, sleep=sleep, clock=clock) as client:
        with pytest.raises(NotFoundError) as info:
            await client.wait(PID, max_wait=60, not_found_grace=1.0)

    assert info.value.status_code == 404
    assert clock() - start > 1.0
    assert clock() - start < 2.0  # gave up soon after the grace, not at the timeout
    assert len(seen) == 4  # polls at 0.3, 0.6, 0.9 (within grace) and 1.2


async def test_cancelling_the_waiting_task_stops_polling():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(prediction("processing"))

    parked = anyio.Event()
    naps: list[float] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) >= 2:
            parked.set()
            await anyio.Event().wait()  # never set: only cancellation ends this nap

    finished: list[Prediction] = []
    with anyio.fail_after(5):
        async with make_client(handler, sleep=sleep) as client:

            async def run() -> None:
                finished.append(await client.wait(PID, max_wait=600))

            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await parked.wait()
                tg.cancel_scope.cancel()

    assert finished == []
    assert len(seen) == 1
    assert len(naps) == 2


# --- download() -----------------------------------------------------------------------------


async def test_download_sends_no_api_key_to_the_output_url():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, content=b"JPEGDATA", headers={"content-type": "image/jpeg; charset=binary"}
        )

    async with make_client(handler) as client:
        content, content_type = await download(client, DOWNLOAD_URL, max_bytes=1024)

    assert len(seen) == 1
    assert str(seen[0].url) == DOWNLOAD_URL
    assert "authorization" not in seen[0].headers
    assert KEY not in str(seen[0].headers)
    assert content == b"JPEGDATA"
    assert content_type == "image/jpeg"


async def test_download_refuses_a_declared_content_length_over_the_limit_before_reading_the_body():
    produced: list[int] = []

    async def body():
        for _ in range(8):
            produced.append(1)
            yield b"x" * 256

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=body(), headers={"content-type": "image/png", "content-length": "2048"}
        )

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        with pytest.raises(DownloadError) as info:
            await download(client, DOWNLOAD_URL, max_bytes=1024)

    assert produced == []  # refused on the header alone
    assert "download limit" in info.value.message
    assert "ATLAS_MCP_MAX_DOWNLOAD_MB" in info.value.message
    assert delays == []


async def test_download_stops_reading_a_stream_without_content_length_once_over_the_limit():
    produced: list[int] = []
    headers_sent: list[httpx.Headers] = []

    async def body():
        for _ in range(1000):
            produced.append(1)
            yield b"y" * 1024

    def handler(request: httpx.Request) -> httpx.Response:
        response = httpx.Response(200, content=body(), headers={"content-type": "image/png"})
        headers_sent.append(response.headers)
        return response

    async with make_client(handler) as client:
        with pytest.raises(DownloadError) as info:
            await download(client, DOWNLOAD_URL, max_bytes=10 * 1024)

    assert "content-length" not in headers_sent[0]
    assert "download limit" in info.value.message
    assert len(produced) <= 12  # stopped right after passing 10 KiB, not after 1000 KiB


async def test_download_of_an_expired_url_says_so_and_is_not_retried():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, text="NoSuchKey")

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        with pytest.raises(DownloadError) as info:
            await download(client, DOWNLOAD_URL, max_bytes=1024)

    assert len(seen) == 1
    assert delays == []
    assert "HTTP 404" in info.value.message
    assert "expired" in info.value.message
    assert info.value.url == DOWNLOAD_URL


async def test_download_retries_a_server_error_then_succeeds():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, content=b"OK", headers={"content-type": "image/png"})

    sleep, delays = recording_sleep()
    async with make_client(handler, sleep=sleep) as client:
        content, content_type = await download(client, DOWNLOAD_URL, max_bytes=1024)

    assert len(seen) == 2
    assert delays == [0.4375]
    assert content == b"OK"


async def test_download_decodes_a_data_uri_without_any_request():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500)

    async with make_client(handler) as client:
        content, content_type = await download(client, "data:image/png;base64,aGVsbG8gcGljdHVyZQ==", 1024)
        with pytest.raises(DownloadError):
            await download(client, "data:image/png;base64," + "A" * 4000, max_bytes=1024)

    assert seen == []
    assert content == b"hello picture"
    assert content_type == "image/png"


async def test_download_refuses_a_non_http_url_without_a_request():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with make_client(handler) as client:
        with pytest.raises(DownloadError):
            await download(client, "file:///etc/passwd", max_bytes=1024)

    assert seen == []


# --- upload_media() -------------------------------------------------------------------------


async def test_upload_sends_a_multipart_file_part_with_the_original_filename():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok({"type": "image", "download_url": UPLOAD_URL, "filename": "photo.png", "size": len(PNG)})

    async with make_client(handler) as client:
        result = await client.upload_media(PNG, "photo.png")

    assert len(seen) == 1
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/api/v1/model/uploadMedia"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    body = request.content
    assert b'name="file"' in body
    assert b'filename="photo.png"' in body
    assert b"Content-Type: image/png" in body
    assert PNG in body
    assert result.download_url == UPLOAD_URL
    assert result.filename == "photo.png"
    assert result.size == len(PNG)
    assert result.content_type == "image/png"
    assert result.type == "image"


async def test_upload_of_a_path_streams_the_file_and_keeps_its_name_and_extension(tmp_path):
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(b"\xff\xd8\xffJPEGBYTES")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok({"download_url": "https://files.test/media/holiday.jpg"})

    async with make_client(handler) as client:
        result = await client.upload_media(photo)

    assert len(seen) == 1
    assert b'filename="holiday.jpg"' in seen[0].content
    assert b"Content-Type: image/jpeg" in seen[0].content
    assert b"\xff\xd8\xffJPEGBYTES" in seen[0].content
    assert result.download_url == "https://files.test/media/holiday.jpg"
    assert result.filename == "holiday.jpg"
    assert result.size == len(b"\xff\xd8\xffJPEGBYTES")


async def test_upload_keeps_only_the_last_path_component_of_a_given_filename():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return upload_ok(request)

    async with make_client(handler) as client:
        await client.upload_media(PNG, "../../etc/photo.png")

    assert b'filename="photo.png"' in seen[0].content
    assert b"../" not in seen[0].content


async def test_upload_accepts_a_top_level_url_answer():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 200, "url": UPLOAD_URL, "data": {}})

    async with make_client(handler) as client:
        result = await client.upload_media(PNG, "photo.png")

    assert result.download_url == UPLOAD_URL


async def test_upload_answer_without_a_download_url_is_an_invalid_response():
    def handler(request: httpx.Request) -> httpx.Response:
        return ok({"filename": "photo.png"})

    async with make_client(handler) as client:
        with pytest.raises(InvalidResponseError) as info:
            await client.upload_media(PNG, "photo.png")

    assert "download_url" in info.value.message


def _missing(tmp_path):
    return tmp_path / "nope.png", None, "No file at"


def _directory(tmp_path):
    return tmp_path, None, "is a directory"


def _empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    return path, None, "empty"


def _too_large_file(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(b"z" * 2048)
    return path, 1024, "upload limit"


def _empty_bytes(tmp_path):
    return b"", None, "empty"


def _too_large_bytes(tmp_path):
    return b"z" * 2048, 1024, "upload limit"


@pytest.mark.parametrize(
    "case", [_missing, _directory, _empty_file, _too_large_file, _empty_bytes, _too_large_bytes]
)
async def test_upload_refuses_an_unusable_source_before_sending_anything(tmp_path, case):
    source, max_bytes, text = case(tmp_path)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return upload_ok(request)

    async with make_client(handler) as client:
        with pytest.raises(LocalFileError) as info:
            await client.upload_media(
                source, "photo.png" if isinstance(source, bytes) else None, max_bytes=max_bytes
            )

    assert seen == []
    assert text in info.value.message
