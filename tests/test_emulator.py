"""Contract tests of the Atlas Cloud emulator (``atlas_image_mcp.emulator``).

The app is driven in-process through ``httpx.ASGITransport`` with a fake clock that the tests
advance, so no test waits for a prediction. One test runs the app under a real uvicorn server to
check that ``Fault.reset()`` really drops the connection.
"""

from __future__ import annotations

import ast
import base64
import io
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

import atlas_image_mcp.emulator as package_emulator
from atlas_image_mcp.emulator import PredictionScript
from atlas_image_mcp.emulator.__main__ import build_parser
from atlas_image_mcp.emulator.drawing import render_picture

from .conftest import FakeClock
from .emulation import EmulatedConnectionReset, Emulator, Fault

BASE = "http://atlas.emulator"
KEY = "apikey-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
SCHNELL = "black-forest-labs/flux-schnell"
DEV = "black-forest-labs/flux-dev"
SUBMIT = "/api/v1/model/generateImage"
ID_RE = re.compile(r"^[0-9a-f]{32}$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(api_keys=[KEY], latency=2.0, queue_delay=0.5, clock=clock)


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=emu.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
        yield http


def body(**overrides: Any) -> dict[str, Any]:
    return {"model": SCHNELL, "prompt": "a red fox in snow", "size": "256*256", **overrides}


async def submit(client: httpx.AsyncClient, **overrides: Any) -> str:
    response = await client.post(SUBMIT, json=body(**overrides))
    assert response.status_code == 200, response.text
    return response.json()["data"]["id"]


async def poll(client: httpx.AsyncClient, prediction_id: str) -> httpx.Response:
    return await client.get(f"/api/v1/model/prediction/{prediction_id}")


async def image_at(client: httpx.AsyncClient, url: str) -> Image.Image:
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    return Image.open(io.BytesIO(response.content))


# -- submit and envelope --------------------------------------------------------------------------


async def test_submit_returns_created_prediction_in_envelope(client: httpx.AsyncClient) -> None:
    response = await client.post(SUBMIT, json=body(seed=1234))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["code"] == 200 and payload["message"] == ""
    data = payload["data"]
    assert ID_RE.match(data["id"])
    assert data["model"] == SCHNELL
    assert data["status"] == "created"
    assert data["outputs"] is None
    assert data["urls"] == {"get": f"{BASE}/api/v1/model/prediction/{data['id']}"}
    assert ISO_RE.match(data["created_at"])
    assert data["seed"] == 1234


async def test_random_seed_is_chosen_and_reported(client: httpx.AsyncClient, emu: Emulator) -> None:
    first = await submit(client, seed=-1)
    second = await submit(client)
    for prediction_id in (first, second):
        seed = (await poll(client, prediction_id)).json()["data"]["seed"]
        assert isinstance(seed, int) and 0 <= seed <= 2**31 - 1
        assert emu.predictions[prediction_id].seed == seed


async def test_utm_params_and_atlas_headers_are_ignored(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{SUBMIT}?utm_source=github&utm_medium=readme",
        json=body(),
        headers={"X-Atlas-Client": "comfyui", "X-Atlas-Source": "github-readme"},
    )
    assert response.status_code == 200
    prediction_id = response.json()["data"]["id"]
    assert (await client.get(f"/api/v1/model/prediction/{prediction_id}?utm_source=x")).status_code == 200


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SUBMIT),
        ("GET", "/api/v1/model/prediction/" + "0" * 32),
        ("POST", "/api/v1/model/uploadMedia"),
        ("GET", "/api/v1/model/history"),
        ("GET", "/public/v1/balance"),
    ],
)
async def test_auth_required(emu: Emulator, headers: dict[str, str], method: str, path: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url=BASE) as anonymous:
        response = await anonymous.request(
            method, path, headers=headers, json=body() if method == "POST" else None
        )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": 401, "msg": "Invalid or expired API key", "data": None}


async def test_any_non_empty_key_accepted_without_key_list(clock: FakeClock) -> None:
    emu = Emulator(clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url=BASE) as http:
        assert (
            await http.post(SUBMIT, json=body(), headers={"Authorization": "Bearer anything"})
        ).status_code == 200
        assert (await http.post(SUBMIT, json=body())).status_code == 401


# -- lifecycle ------------------------------------------------------------------------------------


async def test_progression_created_processing_completed(client: httpx.AsyncClient, clock: FakeClock) -> None:
    prediction_id = await submit(client, num_images=2, size="384*256")
    statuses = []
    for step in (0.0, 0.4, 0.2, 1.3, 0.1):
        clock.advance(step)
        response = await poll(client, prediction_id)
        assert response.status_code == 200
        statuses.append(response.json()["data"]["status"])
    assert statuses == ["created", "created", "processing", "processing", "completed"]
    data = response.json()["data"]
    assert data["outputs"] == [
        f"{BASE}/outputs/{prediction_id}/0.jpeg",
        f"{BASE}/outputs/{prediction_id}/1.jpeg",
    ]
    assert data["has_nsfw_contents"] == [False, False]
    assert data["error"] == ""
    assert data["executionTime"] == 1500 and data["timings"] == {"inference": 1500}
    assert data["latency_ms"] == 2000
    assert data["price"] == "0.006"
    assert ISO_RE.match(data["completed_at"])
    for url in data["outputs"]:
        assert (await image_at(client, url)).size == (384, 256)


async def test_result_path_and_trailing_slash_serve_same_payload(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    prediction_id = await submit(client)
    clock.advance(5)
    answers = [
        (await client.get(path)).json()
        for path in (
            f"/api/v1/model/prediction/{prediction_id}",
            f"/api/v1/model/prediction/{prediction_id}/",
            f"/api/v1/model/result/{prediction_id}",
        )
    ]
    assert answers[0] == answers[1] == answers[2]


async def test_unknown_prediction_is_404(client: httpx.AsyncClient) -> None:
    response = await poll(client, "f" * 32)
    assert response.status_code == 404
    assert response.json() == {"code": 404, "msg": "prediction not found", "data": None}
    assert (await client.get("/outputs/" + "f" * 32 + "/0.jpeg")).status_code == 404


async def test_not_found_for_answers_404_after_submit(
    client: httpx.AsyncClient, emu: Emulator, clock: FakeClock
) -> None:
    emu.script_next(PredictionScript(not_found_for=1.0))
    prediction_id = await submit(client)
    assert (await poll(client, prediction_id)).status_code == 404
    clock.advance(0.99)
    assert (await poll(client, prediction_id)).status_code == 404
    clock.advance(0.01)
    assert (await poll(client, prediction_id)).json()["data"]["status"] == "processing"


async def test_outputs_are_deterministic_per_prompt_and_seed(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    ids = [await submit(client, seed=seed) for seed in (7, 7, 8)]
    clock.advance(3)
    images = [(await client.get(f"/outputs/{i}/0.jpeg")).content for i in ids]
    assert images[0] == images[1]
    assert images[0] != images[2]
    render_picture.cache_clear()
    assert render_picture("a red fox in snow", 7, 256, 256, SCHNELL, 0) == images[0]


async def test_output_file_404_before_completion_and_out_of_range(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    prediction_id = await submit(client)
    assert (await client.get(f"/outputs/{prediction_id}/0.jpeg")).status_code == 404
    clock.advance(2)
    assert (await client.get(f"/outputs/{prediction_id}/0.jpeg")).status_code == 200
    assert (await client.get(f"/outputs/{prediction_id}/1.jpeg")).status_code == 404


async def test_base64_output_gives_data_uris(client: httpx.AsyncClient, clock: FakeClock) -> None:
    prediction_id = await submit(client, enable_base64_output=True, size="320*256")
    clock.advance(2)
    (output,) = (await poll(client, prediction_id)).json()["data"]["outputs"]
    prefix = "data:image/jpeg;base64,"
    assert output.startswith(prefix)
    assert Image.open(io.BytesIO(base64.b64decode(output[len(prefix) :]))).size == (320, 256)


async def test_output_format_png_gives_png_files(client: httpx.AsyncClient, clock: FakeClock) -> None:
    flux2 = "black-forest-labs/flux-2-dev/text-to-image"
    png, default = await submit(client, model=flux2, output_format="png"), await submit(client, model=flux2)
    imagen = (await client.post(SUBMIT, json={"model": "google/imagen4", "prompt": "fox"})).json()["data"][
        "id"
    ]
    clock.advance(2)
    (url,) = (await poll(client, png)).json()["data"]["outputs"]
    assert url == f"{BASE}/outputs/{png}/0.png"
    served = await client.get(url)
    assert served.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).format == "PNG"
    assert (await client.get(f"/outputs/{png}/0.jpeg")).status_code == 404  # one format per job
    assert (await poll(client, default)).json()["data"]["outputs"] == [f"{BASE}/outputs/{default}/0.jpeg"]
    # a model whose schema declares png as the default answers in png when not asked
    assert (await poll(client, imagen)).json()["data"]["outputs"] == [f"{BASE}/outputs/{imagen}/0.png"]
    kontext = {"model": "black-forest-labs/flux-kontext-dev", "image": url, "prompt": "at night"}
    edit = (await client.post(SUBMIT, json=kontext)).json()["data"]["id"]
    clock.advance(2)
    (edited,) = (await poll(client, edit)).json()["data"]["outputs"]
    assert (await image_at(client, edited)).size == (256, 256)  # drawn from the PNG source: its size


async def test_sync_mode_returns_completed_prediction(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.script_next(PredictionScript(latency=0.0))
    response = await client.post(SUBMIT, json=body(enable_sync_mode=True))
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "completed"
    assert len(data["outputs"]) == 1
    assert (await poll(client, data["id"])).json()["data"]["status"] == "completed"


# -- failures -------------------------------------------------------------------------------------


async def test_failed_prediction_is_http_500(
    client: httpx.AsyncClient, emu: Emulator, clock: FakeClock
) -> None:
    emu.script_next(PredictionScript(outcome="fail"))
    prediction_id = await submit(client)
    assert (await poll(client, prediction_id)).status_code == 200  # still running
    clock.advance(2)
    response = await poll(client, prediction_id)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["code"] == 500
    assert payload["message"] == "Generation failed: task processing failed (code: generation_failed)"
    data = payload["data"]
    assert data["status"] == "failed"
    assert data["error"] == "task processing failed (code: generation_failed)"
    assert data["outputs"] is None
    assert data["executionTime"] == 0 and data["timings"] == {"inference": 0}
    assert "price" not in data


async def test_failed_prediction_as_http_200(clock: FakeClock) -> None:
    emu = Emulator(latency=1.0, fail_http_status=200, clock=clock)
    emu.script_next(PredictionScript(outcome="fail", reason="boom", error_as_object=True))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app), base_url=BASE, headers=AUTH
    ) as http:
        prediction_id = await submit(http)
        clock.advance(1)
        response = await poll(http, prediction_id)
    assert response.status_code == 200
    payload = response.json()
    assert payload["code"] == 200
    assert payload["message"] == "Generation failed: boom"
    assert payload["data"]["status"] == "failed"
    assert payload["data"]["error"] == {"message": "boom", "code": "generation_failed"}


async def test_script_overrides_fail_status(
    client: httpx.AsyncClient, emu: Emulator, clock: FakeClock
) -> None:
    emu.script_next(PredictionScript(outcome="fail", fail_http_status=200, latency=0.0))
    prediction_id = await submit(client)
    assert (await poll(client, prediction_id)).status_code == 200


async def test_timeout_outcome(client: httpx.AsyncClient, emu: Emulator, clock: FakeClock) -> None:
    emu.script_next(PredictionScript(outcome="timeout"))
    prediction_id = await submit(client)
    clock.advance(2)
    response = await poll(client, prediction_id)
    assert response.status_code == 500
    assert response.json()["data"]["status"] == "timeout"
    assert response.json()["data"]["error"] == "task timed out"


async def test_nsfw_outcome(client: httpx.AsyncClient, emu: Emulator, clock: FakeClock) -> None:
    emu.script_next(PredictionScript(outcome="nsfw"))
    prediction_id = await submit(client, num_images=2)
    clock.advance(2)
    response = await poll(client, prediction_id)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "completed"
    assert data["outputs"] == []
    assert data["has_nsfw_contents"] == [True, True]
    assert (await client.get(f"/outputs/{prediction_id}/0.jpeg")).status_code == 404


async def test_price_script(client: httpx.AsyncClient, emu: Emulator, clock: FakeClock) -> None:
    emu.script_next(PredictionScript(price=None))
    emu.script_next(PredictionScript(price="0.5"))
    no_price, custom = await submit(client), await submit(client)
    dev = await submit(client, model=DEV, size="512*512", num_images=3)
    clock.advance(2)
    assert "price" not in (await poll(client, no_price)).json()["data"]
    assert (await poll(client, custom)).json()["data"]["price"] == "0.5"
    assert (await poll(client, dev)).json()["data"]["price"] == "0.036"


async def test_scripts_apply_fifo_then_default(
    client: httpx.AsyncClient, emu: Emulator, clock: FakeClock
) -> None:
    emu.script_next(PredictionScript(outcome="fail"))
    emu.script_next(PredictionScript(outcome="nsfw"))
    ids = [await submit(client) for _ in range(3)]
    clock.advance(2)
    statuses = [(await poll(client, i)).json()["data"] for i in ids]
    assert [d["status"] for d in statuses] == ["failed", "completed", "completed"]
    assert statuses[1]["outputs"] == [] and len(statuses[2]["outputs"]) == 1


async def test_rejected_submit_does_not_consume_script(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.script_next(PredictionScript(outcome="fail"))
    assert (await client.post(SUBMIT, json=body(steps=4))).status_code == 400
    prediction_id = await submit(client)
    assert emu.predictions[prediction_id].outcome == "fail"


# -- prompt directives ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "status", "http_status"),
    [
        ("[emulator:fail]", "failed", 500),
        ("[emulator:timeout]", "timeout", 500),
        ("[emulator:nsfw]", "completed", 200),
    ],
)
async def test_prompt_directives_set_outcome(
    client: httpx.AsyncClient, clock: FakeClock, directive: str, status: str, http_status: int
) -> None:
    prediction_id = await submit(client, prompt=f"a cat {directive}")
    clock.advance(2)
    response = await poll(client, prediction_id)
    assert response.status_code == http_status
    assert response.json()["data"]["status"] == status


async def test_latency_directive(client: httpx.AsyncClient, clock: FakeClock) -> None:
    prediction_id = await submit(client, prompt="[emulator:latency=2.5] a slow cat")
    clock.advance(2.4)
    assert (await poll(client, prediction_id)).json()["data"]["status"] == "processing"
    clock.advance(0.1)
    assert (await poll(client, prediction_id)).json()["data"]["status"] == "completed"


async def test_directives_are_not_drawn(client: httpx.AsyncClient, clock: FakeClock) -> None:
    plain = await submit(client, prompt="a cat", seed=5)
    steered = await submit(client, prompt="[emulator:latency=0.1] a cat", seed=5)
    clock.advance(2)
    assert (await client.get(f"/outputs/{plain}/0.jpeg")).content == (
        await client.get(f"/outputs/{steered}/0.jpeg")
    ).content


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["num_inference_steps", "guidance_scale", "width", "height", "steps", "output_format", "negative_prompt"],
)
async def test_schnell_rejects_unknown_parameters(
    client: httpx.AsyncClient, emu: Emulator, name: str
) -> None:
    response = await client.post(SUBMIT, json=body(**{name: 4}))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": 400, "msg": f"unknown parameter: {name}", "data": None}
    assert emu.predictions == {}


async def test_dev_accepts_its_schema_and_rejects_sync_mode(client: httpx.AsyncClient) -> None:
    accepted = await client.post(
        SUBMIT,
        json=body(
            model=DEV,
            size="512*768",
            num_inference_steps=28,
            guidance_scale=3.5,
            strength=0.8,
            seed=3,
            num_images=1,
            enable_base64_output=False,
            enable_safety_checker=True,
        ),
    )
    assert accepted.status_code == 200, accepted.text
    rejected = await client.post(SUBMIT, json=body(model=DEV, size="512*512", enable_sync_mode=False))
    assert rejected.json()["msg"] == "unknown parameter: enable_sync_mode"


async def test_size_format_error(client: httpx.AsyncClient) -> None:
    response = await client.post(SUBMIT, json=body(size="720x1280"))
    assert response.status_code == 400
    assert response.json()["msg"] == "Invalid size format: 720x1280, expected format: width*height"


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        (SCHNELL, "255*512", "256 and 1536"),
        (SCHNELL, "1024*1537", "256 and 1536"),
        (DEV, "256*256", "512 and 1536"),
    ],
)
async def test_size_out_of_range(client: httpx.AsyncClient, model: str, size: str, expected: str) -> None:
    response = await client.post(SUBMIT, json=body(model=model, size=size))
    assert response.status_code == 400
    assert expected in response.json()["msg"] and size in response.json()["msg"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_images": 5},
        {"num_images": 0},
        {"num_images": "2"},
        {"strength": 1.5},
        {"seed": -2},
        {"seed": 2**31},
        {"enable_sync_mode": "yes"},
        {"size": 1024},
        {"prompt": 42},
        {"prompt": "  "},
        {"model": DEV, "size": "512*512", "guidance_scale": 25},
        {"model": DEV, "size": "512*512", "num_inference_steps": 0},
        {"num_images": True},
    ],
)
async def test_type_and_range_errors(client: httpx.AsyncClient, overrides: dict[str, Any]) -> None:
    response = await client.post(SUBMIT, json=body(**overrides))
    assert response.status_code == 400
    assert response.json()["code"] == 400


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"model": SCHNELL, "input": {"prompt": "a fox"}}, "prompt is required"),
        ({"model": "nobody/nothing", "prompt": "a fox"}, "model not found"),
        ({"prompt": "a fox"}, "model is required"),
        ([1, 2], "request body must be a JSON object"),
    ],
)
async def test_bad_bodies(client: httpx.AsyncClient, payload: Any, message: str) -> None:
    response = await client.post(SUBMIT, json=payload)
    assert response.status_code == 400
    assert response.json()["msg"] == message


async def test_invalid_json_body(client: httpx.AsyncClient) -> None:
    response = await client.post(SUBMIT, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["msg"] == "invalid JSON body"


async def test_pass_through_model_accepts_extra_params(client: httpx.AsyncClient, clock: FakeClock) -> None:
    prediction_id = await submit(
        client, model="bytedance/seedream-v4", size="640*480", watermark=False, style="x"
    )
    clock.advance(2)
    data = (await poll(client, prediction_id)).json()["data"]
    assert data["price"] == "0.03"
    assert (await image_at(client, data["outputs"][0])).size == (640, 480)


async def test_model_type_mismatch(client: httpx.AsyncClient) -> None:
    video = await client.post(SUBMIT, json=body(model="alibaba/wan-2.6/text-to-video"))
    assert video.status_code == 400 and "model type mismatch" in video.json()["msg"]
    image_on_video = await client.post("/api/v1/model/generateVideo", json=body())
    assert image_on_video.status_code == 400 and "model type mismatch" in image_on_video.json()["msg"]


# -- upload ---------------------------------------------------------------------------------------


async def test_upload_round_trip_keeps_name_and_extension(client: httpx.AsyncClient) -> None:
    content = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    response = await client.post(
        "/api/v1/model/uploadMedia", files={"file": ("my photo.final.png", content, "image/png")}
    )
    assert response.status_code == 200
    payload = response.json()
    assert payload["code"] == 200 and payload["message"] == "success"
    data = payload["data"]
    assert data["type"] == "image"
    assert data["filename"] == "my photo.final.png"
    assert data["size"] == len(content)
    assert data["download_url"].startswith(f"{BASE}/media/") and data["download_url"].endswith(".png")
    downloaded = await client.get(data["download_url"], headers={"Authorization": ""})
    assert downloaded.status_code == 200
    assert downloaded.content == content
    assert downloaded.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("name", "kind"), [("song.mp3", "audio"), ("clip.MP4", "video"), ("doc.pdf", "file")]
)
async def test_upload_type_by_extension(client: httpx.AsyncClient, name: str, kind: str) -> None:
    response = await client.post("/api/v1/model/uploadMedia", files={"file": (name, b"data")})
    assert response.json()["data"]["type"] == kind


async def test_upload_errors(client: httpx.AsyncClient) -> None:
    missing = await client.post("/api/v1/model/uploadMedia", files={"other": ("a.png", b"x")})
    assert missing.status_code == 400 and missing.json()["msg"] == "file is required"
    empty = await client.post("/api/v1/model/uploadMedia", files={"file": ("a.png", b"")})
    assert empty.status_code == 400 and empty.json()["msg"] == "file is empty"


# -- catalogue, schema, history, balance ----------------------------------------------------------


async def test_catalogue_needs_no_auth(emu: Emulator) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url=BASE) as anonymous:
        response = await anonymous.get("/api/v1/models")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        entries = {entry["model"]: entry for entry in response.json()["data"]}
        schnell = entries[SCHNELL]
        assert schnell["type"] == "Image" and schnell["categories"] == ["TEXT-TO-IMAGE"]
        assert schnell["price"]["actual"] == {"base_price": "0.003", "unit": "image"}
        assert schnell["display_console"] is True and schnell["priority"] == 10
        assert entries[DEV]["price"]["actual"]["base_price"] == "0.012"
        assert entries["black-forest-labs/flux-kontext-dev"]["categories"] == ["IMAGE-TO-IMAGE"]
        assert entries["internal/test-image-model"]["display_console"] is False
        assert {e["type"] for e in entries.values()} >= {"Image", "Video", "Text"}
        assert all(e["uuid"] and e["displayName"] and e["readme"] for e in entries.values())
        schema = (await anonymous.get(schnell["schema"])).json()
        assert (await anonymous.get(schnell["readme"])).status_code == 200
    input_schema = schema["components"]["schemas"]["Input"]
    assert set(input_schema["properties"]) == {
        "model",
        "prompt",
        "image",
        "mask_image",
        "strength",
        "size",
        "seed",
        "num_images",
        "enable_sync_mode",
        "enable_base64_output",
        "enable_safety_checker",
    }
    assert input_schema["required"] == ["model", "prompt"]


async def test_history_lists_newest_first(client: httpx.AsyncClient, clock: FakeClock) -> None:
    first = await submit(client, prompt="one")
    second = await submit(client, prompt="two")
    clock.advance(2)
    data = (await client.get("/api/v1/model/history", params={"size": 10})).json()["data"]
    assert data["total"] == 2 and data["pageNo"] == 1
    assert [item["ID"] for item in data["items"]] == [second, first]
    assert data["items"][0]["status"] == "completed"
    only = (await client.get("/api/v1/model/history", params={"sessionID": first})).json()["data"]
    assert [item["ID"] for item in only["items"]] == [first]


async def test_balance_is_not_enveloped(client: httpx.AsyncClient) -> None:
    payload = (await client.get("/public/v1/balance")).json()
    assert payload["object"] == "balance"
    assert payload["available"] == {"value": "10.000000", "currency": "usd"}


async def test_the_balance_goes_down_by_what_completed_jobs_cost(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    async def available() -> str:
        return str((await client.get("/public/v1/balance")).json()["available"]["value"])

    await submit(client, model=DEV, num_images=2, size="512*512")  # $0.024
    await submit(client, prompt="no price reported [emulator:no_price]")  # $0.003, charged all the same
    await submit(client, prompt="[emulator:fail]")  # failed jobs are not billed
    assert await available() == "10.000000"  # nothing has finished yet
    clock.advance(2.0)
    assert await available() == "9.973000"


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"


# -- faults ---------------------------------------------------------------------------------------


async def test_status_fault_default_and_custom_bodies(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.inject(Fault.status(503))
    emu.inject(Fault.status(402, {"code": 402, "msg": "insufficient balance", "data": None}))
    emu.inject(Fault.status(403, "<html>denied</html>", headers={"X-Test": "1"}))
    emu.inject(Fault.status(500, "error code: 1010"))
    first = await client.get("/api/v1/models")
    assert first.status_code == 503 and first.json() == {"code": 503, "msg": "Service Unavailable"}
    assert first.headers["content-type"] == "application/json"
    second = await client.get("/api/v1/models")
    assert second.status_code == 402 and second.json()["msg"] == "insufficient balance"
    third = await client.get("/api/v1/models")
    assert third.headers["content-type"].startswith("text/html") and third.headers["x-test"] == "1"
    fourth = await client.get("/api/v1/models")
    assert fourth.headers["content-type"].startswith("text/plain") and fourth.text == "error code: 1010"
    assert (await client.get("/api/v1/models")).status_code == 200


async def test_html_fault(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.inject(Fault.html())
    response = await client.get("/api/v1/models")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")
    assert "<title>502 Bad Gateway | api.atlascloud.ai | Cloudflare</title>" in response.text


async def test_rate_limited_fault(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.inject(Fault.rate_limited(retry_after=2))
    emu.inject(Fault.rate_limited())
    first, second = await client.get("/api/v1/models"), await client.get("/api/v1/models")
    assert first.status_code == second.status_code == 429
    assert first.json()["code"] == 429
    assert first.headers["retry-after"] == "2"
    assert "retry-after" not in second.headers


async def test_delay_fault_then_normal_answer(client: httpx.AsyncClient, emu: Emulator) -> None:
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    emu.sleep = sleep
    emu.inject(Fault.delay(0.05))
    response = await client.get("/api/v1/models")
    assert waited == [0.05]
    assert response.status_code == 200 and response.json()["code"] == 200


async def test_invalid_json_fault(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.inject(Fault.invalid_json(), method="GET", path="/api/v1/model/prediction/*")
    prediction_id = await submit(client)
    response = await poll(client, prediction_id)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.text == '{"code":200,"data":{'


async def test_envelope_error_fault(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.inject(Fault.envelope_error(code=500, msg="internal error"), method="POST", path=SUBMIT)
    response = await client.post(SUBMIT, json=body())
    assert response.status_code == 200
    assert response.json() == {"code": 500, "msg": "internal error", "data": None}
    assert emu.predictions == {}  # a fault answers instead of the app


async def test_reset_fault_raises_in_process(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.inject(Fault.reset(), path="/api/v1/models")
    with pytest.raises(httpx.RemoteProtocolError) as caught:
        await client.get("/api/v1/models")
    assert isinstance(caught.value, EmulatedConnectionReset)
    assert (await client.get("/api/v1/models")).status_code == 200


async def test_fault_matching_times_and_fifo(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.inject(Fault.status(502), method="GET", path="/api/v1/model/prediction/*", times=2)
    emu.inject(Fault.status(503), method="GET", path="*")
    prediction_id = await submit(client)  # POST: no fault matches
    codes = [(await poll(client, prediction_id)).status_code for _ in range(4)]
    assert codes == [502, 502, 503, 200]


async def test_faulted_requests_are_recorded(client: httpx.AsyncClient, emu: Emulator) -> None:
    emu.inject(Fault.status(500), path=SUBMIT)
    await client.post(SUBMIT, json=body())
    assert emu.count("POST", SUBMIT) == 1
    assert emu.requests[-1].json == body()


# -- request log ----------------------------------------------------------------------------------


async def test_request_log_and_count(client: httpx.AsyncClient, emu: Emulator) -> None:
    prediction_id = await submit(client)
    await poll(client, prediction_id)
    await client.get(f"/api/v1/model/prediction/{prediction_id}", params={"utm_source": "github"})
    await client.get("/api/v1/models")
    assert emu.count() == 4
    assert emu.count("POST") == 1
    assert emu.count("get", "/api/v1/model/prediction/*") == 2
    assert emu.count(path="/api/v1/models") == 1
    recorded = emu.requests[0]
    assert (recorded.method, recorded.path) == ("POST", SUBMIT)
    assert recorded.json == body()
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert emu.requests[2].query == {"utm_source": "github"}
    emu.reset_log()
    assert emu.count() == 0 and len(emu.requests) == 0


async def test_request_log_is_bounded(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, max_logged_requests=3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url=BASE) as http:
        for number in range(5):
            await http.get("/api/v1/models", params={"n": number})
    assert [r.query["n"] for r in emu.requests] == ["2", "3", "4"]


# -- admin endpoints ------------------------------------------------------------------------------


async def test_admin_requests_hides_credentials_and_is_not_logged(
    client: httpx.AsyncClient, emu: Emulator
) -> None:
    await submit(client)
    await client.get("/api/v1/models")
    listing = (await client.get("/_emulator/requests", params={"method": "POST"})).json()
    assert listing["count"] == 1
    (entry,) = listing["requests"]
    assert entry["path"] == SUBMIT and entry["json"]["model"] == SCHNELL
    assert "authorization" not in entry["headers"]
    assert (await client.get("/_emulator/requests")).json()["count"] == 2
    assert emu.count() == 2  # admin calls are not recorded


async def test_admin_faults_config_script_and_reset(
    client: httpx.AsyncClient, emu: Emulator, clock: FakeClock
) -> None:
    armed = await client.post(
        "/_emulator/faults", json={"fault": "status", "code": 418, "path": "/api/v1/models"}
    )
    assert armed.status_code == 200 and armed.json()["faults"][0]["status_code"] == 418
    assert (await client.get("/api/v1/models")).status_code == 418
    assert (await client.post("/_emulator/faults", json={"fault": "nope"})).status_code == 400
    assert (await client.post("/_emulator/faults", json={"fault": "delay", "bogus": 1})).status_code == 400

    config = await client.post("/_emulator/config", json={"latency": 5.0})
    assert config.json()["latency"] == 5.0 and emu.latency == 5.0
    assert (await client.post("/_emulator/config", json={"latency": -1})).status_code == 400
    assert (await client.post("/_emulator/script", json={"outcome": "fail"})).status_code == 200
    prediction_id = await submit(client)
    clock.advance(4.9)
    assert (await poll(client, prediction_id)).json()["data"]["status"] == "processing"
    clock.advance(0.1)
    assert (await poll(client, prediction_id)).json()["data"]["status"] == "failed"

    assert (await client.post("/_emulator/reset")).json() == {"ok": True}
    assert emu.predictions == {} and emu.count() == 0
    assert (await poll(client, prediction_id)).status_code == 404


async def test_the_shipped_emulator_has_no_admin_routes() -> None:
    """Admin routes, the request log and faults are the tests' (tests/emulation), not the users'."""
    shipped = package_emulator.Emulator()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shipped.app), base_url=BASE) as http:
        assert (await http.get("/api/v1/models")).status_code == 200
        for method, path in [("GET", "/_emulator/requests"), ("POST", "/_emulator/reset")]:
            answer = await http.request(method, path)
            assert answer.status_code == 404 and answer.json()["msg"] == "not found"


# -- construction, CLI, independence --------------------------------------------------------------


def test_constructor_validates_timing() -> None:
    with pytest.raises(ValueError):
        Emulator(latency=1.0, queue_delay=2.0)
    with pytest.raises(ValueError):
        Emulator(latency=-1)
    with pytest.raises(ValueError):
        PredictionScript(outcome="explode")  # type: ignore[arg-type]


def test_cli_parser() -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "9000",
            "--latency",
            "0.5",
            "--queue-delay",
            "0.1",
            "--api-key",
            "a",
            "--api-key",
            "b",
            "--fail-http-status",
            "200",
        ]
    )
    assert (args.host, args.port, args.latency, args.queue_delay) == ("127.0.0.1", 9000, 0.5, 0.1)
    assert args.api_keys == ["a", "b"] and args.fail_http_status == 200


def test_emulator_imports_only_the_model_table_from_the_package() -> None:
    """The emulator stands in for Atlas: it shares the model table (what the models accept), and
    nothing of the client, tools or server it is there to test."""
    import atlas_image_mcp.emulator as package

    for source in Path(package.__file__).parent.glob("*.py"):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                parent = node.level == 2 and node.module == "catalogue"
                assert node.level <= 1 or parent, f"{source.name} imports from a parent package"
                assert not (node.module or "").startswith("atlas_image_mcp"), source.name
            elif isinstance(node, ast.Import):
                assert not any(alias.name.startswith("atlas_image_mcp") for alias in node.names), source.name


def test_reset_fault_drops_connection_under_uvicorn() -> None:
    emu = Emulator()
    emu.inject(Fault.reset(), path="/api/v1/models")
    config = uvicorn.Config(
        emu.app,
        host="127.0.0.1",
        port=0,
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        log_level="critical",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                http.get("/api/v1/models")
            assert http.get("/api/v1/models").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=5)
    assert not thread.is_alive()
