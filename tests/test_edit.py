"""Editing, combining and varying pictures across the FLUX family, through the MCP client.

Each flow is one tool call against the emulator, and each checks the exact body the emulator
received: the model table decides what is sent, and nothing else is.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from atlas_image_mcp.catalogue import BUILT_IN, DEFAULT_EDIT_MODELS, spec_from_schema
from atlas_image_mcp.emulator.served_models import MODELS, CatalogueModel, schema_document

from .conftest import EMULATOR_URL, Sleeps, text_of
from .emulation import Emulator, Fault

GENERATE = "/api/v1/model/generateImage"
UPLOAD = "/api/v1/model/uploadMedia"
KONTEXT = "black-forest-labs/flux-kontext-dev"
FILL = "black-forest-labs/flux-fill-dev"
REDUX = "black-forest-labs/flux-redux-dev"
MULTI = "black-forest-labs/flux-2-pro/edit"


def posts(emulator: Emulator, path: str = GENERATE) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.method == "POST" and r.path == path]


def output_url(prediction_id: str, n: int = 0) -> str:
    return f"{EMULATOR_URL}/outputs/{prediction_id}/{n}.jpeg"


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


async def generate(client: Any, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("generate_image", {"prompt": "a lighthouse at dusk", **arguments})
    assert result.is_error is False, text_of(result)
    return result.structured_content


async def edit(client: Any, **arguments: Any) -> Any:
    result = await client.call_tool("edit_image", {"prompt": "make the sky stormy", **arguments})
    assert result.is_error is False, text_of(result)
    return result


# --- one call per way of giving the picture --------------------------------------------------------


@pytest.mark.parametrize("given", ["prediction id", "resource uri", "last", "url"])
async def test_an_earlier_picture_is_edited_with_kontext_in_one_call(
    connect, emulator: Emulator, given
) -> None:
    async with connect() as client:
        first = await generate(client, width=512, height=512)
        pid = first["prediction_id"]
        image = {
            "prediction id": pid,
            "resource uri": f"atlas-image://predictions/{pid}/images/1",
            "last": "last",
            "url": output_url(pid),
        }[given]
        result = await edit(client, image=image)
    data = result.structured_content
    assert data["status"] == "completed" and data["model"] == KONTEXT
    assert data["prompt"] == "make the sky stormy" and data["sources"] == [output_url(pid)]
    assert posts(emulator)[-1] == {
        "model": KONTEXT,
        "prompt": "make the sky stormy",
        "image": output_url(pid),
        "num_images": 1,
    }
    # no size was asked: the edit keeps the input picture's size
    assert (data["outputs"][0]["width"], data["outputs"][0]["height"]) == (512, 512)
    assert "Source 1: " + output_url(pid) in text_of(result)


async def test_a_local_file_is_uploaded_then_edited_over_stdio(connect, emulator: Emulator, tmp_path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(png((200, 30, 30)))
    async with connect() as client:
        result = await edit(client, image=str(photo))
    [upload] = [r for r in emulator.requests if r.method == "POST" and r.path == UPLOAD]
    assert b'filename="photo.png"' in upload.body
    [body] = posts(emulator)
    assert body["image"].startswith(f"{EMULATOR_URL}/media/") and body["image"].endswith("/photo.png")
    assert result.structured_content["sources"] == [body["image"]]


@pytest.mark.parametrize("form", ["data uri", "bare base64"])
async def test_picture_data_is_uploaded_and_the_result_names_its_url_not_the_data(
    connect, emulator: Emulator, form
) -> None:
    encoded = base64.b64encode(png((10, 120, 240))).decode()
    image = f"data:image/png;base64,{encoded}" if form == "data uri" else encoded
    async with connect() as client:
        result = await edit(client, image=image)
    [body] = posts(emulator)
    assert body["image"].startswith(f"{EMULATOR_URL}/media/")
    assert encoded not in text_of(result) and encoded not in str(result.structured_content)
    assert result.structured_content["sources"] == [body["image"]]


async def test_a_hosted_server_refuses_a_local_path_and_says_what_to_send(
    connect, emulator, tmp_path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(png((1, 2, 3)))
    async with connect(remote=True) as client:
        result = await client.call_tool("edit_image", {"prompt": "x", "image": str(photo), "save": False})
    assert result.is_error is True
    assert "hosted" in text_of(result) and "upload_media" in text_of(result)
    assert emulator.count("POST") == 0


async def test_an_expired_output_url_is_replaced_by_an_upload_of_the_saved_copy(
    connect, emulator: Emulator
) -> None:
    async with connect() as client:
        first = await generate(client, width=512, height=512)
        pid = first["prediction_id"]
        emulator.inject(Fault.status(404), method="GET", path=f"/outputs/{pid}/*", times=1)  # the probe
        result = await edit(client, image=pid)
    [upload] = [r for r in emulator.requests if r.method == "POST" and r.path == UPLOAD]
    assert f'filename="{pid}-1.jpg"'.encode() in upload.body
    body = posts(emulator)[-1]
    assert body["image"].startswith(f"{EMULATOR_URL}/media/")
    assert "saved copy" not in str(result.structured_content["sources"])


async def test_last_without_any_picture_says_there_is_none(connect, emulator: Emulator) -> None:
    async with connect() as client:
        result = await client.call_tool("edit_image", {"prompt": "x", "image": "last"})
    assert result.is_error is True and "none yet" in text_of(result)
    assert emulator.count("POST") == 0


# --- inpainting, references, variations ------------------------------------------------------------


async def test_a_mask_picks_the_inpainting_model_and_repaints_only_the_white_area(
    connect, emulator: Emulator, tmp_path
) -> None:
    source, mask = tmp_path / "source.png", tmp_path / "mask.png"
    source.write_bytes(png((30, 160, 60), (256, 256)))
    canvas = Image.new("L", (256, 256), 0)
    canvas.paste(255, (128, 0, 256, 256))  # right half white: repaint it
    canvas.save(mask)
    async with connect() as client:
        result = await edit(client, prompt="a red brick wall", image=str(source), mask_image=str(mask))
    data = result.structured_content
    assert data["model"] == FILL
    [body] = posts(emulator)
    assert set(body) == {"model", "prompt", "image", "mask_image"}
    with Image.open(data["outputs"][0]["path"]) as out:
        kept = ImageStat.Stat(out.crop((16, 96, 112, 240)).convert("RGB")).mean  # left half, below the banner
        painted = ImageChops.difference(
            out.crop((144, 96, 240, 240)).convert("RGB"), Image.new("RGB", (96, 144), (30, 160, 60))
        )
    assert abs(kept[0] - 30) < 25 and abs(kept[1] - 160) < 25  # the source shows where the mask is black
    assert max(ImageStat.Stat(painted).mean) > 40  # visibly changed where it is white


async def test_two_references_are_combined_by_a_multi_reference_model(
    connect, emulator: Emulator, tmp_path
) -> None:
    logo, mug = tmp_path / "logo.png", tmp_path / "mug.png"
    logo.write_bytes(png((250, 250, 0)))
    mug.write_bytes(png((0, 0, 250)))
    async with connect() as client:
        result = await edit(client, prompt="put the logo on the mug", images=[str(logo), str(mug)])
    assert result.structured_content["model"] == MULTI
    [body] = posts(emulator)
    assert body["model"] == MULTI and len(body["images"]) == 2 and "image" not in body
    assert body["images"] == result.structured_content["sources"]


async def test_variations_of_our_job_repeat_its_request_with_new_seeds(connect, emulator: Emulator) -> None:
    async with connect() as client:
        first = await generate(
            client, model="black-forest-labs/flux-dev", steps=20, seed=7, width=768, height=512
        )
        result = await client.call_tool(
            "generate_variations", {"prediction_id": first["prediction_id"], "count": 3}
        )
    assert result.is_error is False, text_of(result)
    original, variation = posts(emulator)
    assert variation == {**original, "seed": -1, "num_images": 3}
    assert len(result.structured_content["outputs"]) == 3


async def test_variations_of_a_job_not_ours_use_redux_on_its_picture(
    connect, emulator: Emulator, tmp_path: Path
) -> None:
    async with connect() as client:
        first = await generate(client)
    # a server that does not share the first one's store (no history of the job), and Atlas'
    # history unreadable
    emulator.inject(Fault.status(500), method="GET", path="/api/v1/model/history", times=10)
    elsewhere = tmp_path / "another-machine"
    async with connect(sleep=Sleeps(), state_dir=elsewhere) as client:  # retried: no real back-off
        result = await client.call_tool(
            "generate_variations", {"prediction_id": first["prediction_id"], "count": 2}
        )
    assert result.is_error is False, text_of(result)
    body = posts(emulator)[-1]
    assert body == {"model": REDUX, "image": output_url(first["prediction_id"]), "num_images": 2}
    assert "prompt" not in body  # Redux [dev] takes none
    assert REDUX in text_of(result)


async def test_variations_read_an_earlier_request_from_atlas_history(connect, emulator: Emulator) -> None:
    async with connect() as client:
        first = await generate(client, seed=11)
    async with connect() as client:  # another session: only Atlas' history knows the request
        result = await client.call_tool(
            "generate_variations", {"prediction_id": first["prediction_id"], "count": 2}
        )
    original, variation = posts(emulator)
    assert variation == {**original, "seed": -1, "num_images": 2}
    assert result.structured_content["status"] == "completed"


# --- the FLUX family in generate_image and the model table -----------------------------------------


@pytest.mark.parametrize(
    ("model", "arguments", "body", "ignored"),
    [
        (
            "black-forest-labs/flux-1.1-pro",
            {"width": 1024, "height": 768, "num_images": 1, "steps": 10},
            {"size": "1024*768"},
            ["steps"],
        ),
        ("black-forest-labs/flux-1.1-pro-ultra", {"aspect_ratio": "16:9"}, {"aspect_ratio": "16:9"}, []),
        (
            "black-forest-labs/flux-kontext-pro/text-to-image",
            {"aspect_ratio": "2:3"},
            {"aspect_ratio": "2:3", "num_images": 1},
            [],
        ),
        (
            "black-forest-labs/flux-2-pro/text-to-image",
            {"width": 2048, "height": 1536, "output_format": "png"},
            {"size": "2048*1536", "output_format": "png"},
            [],
        ),
    ],
)
async def test_each_flux_model_is_sent_its_own_parameters(
    connect, emulator, model, arguments, body, ignored
) -> None:
    async with connect() as client:
        data = await generate(client, model=model, **arguments)
    [sent] = posts(emulator)
    assert sent == {"model": model, "prompt": "a lighthouse at dusk", **body}
    assert data["ignored_parameters"] == ignored


async def test_a_size_out_of_the_models_range_is_refused_before_anything_is_sent(connect, emulator) -> None:
    async with connect() as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "x", "model": "black-forest-labs/flux-1.1-pro", "width": 2048}
        )
    assert result.is_error is True and "256 to 1440" in text_of(result)
    assert emulator.count("POST") == 0


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("bytedance/seedream-v4", {"model": "bytedance/seedream-v4", "prompt": "a lighthouse at dusk"}),
        ("google/imagen4", {"model": "google/imagen4", "prompt": "a lighthouse at dusk"}),
    ],
)
async def test_other_catalogue_models_get_only_what_their_schema_declares(
    connect, emulator, model, sent
) -> None:
    async with connect() as client:
        data = await generate(client, model=model)
    assert posts(emulator) == [sent]  # no size, no num_images added
    assert data["status"] == "completed"


async def test_a_model_missing_from_the_live_catalogue_is_named_as_such(connect, emulator) -> None:
    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "x", "model": "acme/not-a-model"})
    assert result.is_error is True and "not in the Atlas model catalogue" in text_of(result)
    assert emulator.count("POST") == 0


async def test_the_live_schema_wins_over_the_built_in_row(settings, tmp_path) -> None:
    from mcp import Client

    from atlas_image_mcp.runtime import Runtime
    from atlas_image_mcp.server import make_server

    from .conftest import TEST_KEY, make_api

    narrowed = [
        CatalogueModel(**{**m.__dict__, "size_range": (256, 800)}) if m.id.endswith("flux-schnell") else m
        for m in MODELS
    ]
    live = Emulator(api_keys=[TEST_KEY], latency=0.0, models=narrowed)
    schnell = next(m for m in narrowed if m.id.endswith("flux-schnell"))
    schnell_schema = schema_document(schnell, EMULATOR_URL)
    schnell_schema["components"]["schemas"]["Input"]["properties"]["num_images"]["maximum"] = 2
    runtime = Runtime.create(settings, client=make_api(live))

    async def patched_schema(url: str) -> dict[str, Any]:
        return schnell_schema

    runtime.client.model_schema = patched_schema  # type: ignore[method-assign]
    try:
        async with Client(make_server(runtime)) as client:
            result = await client.call_tool("generate_image", {"prompt": "x", "num_images": 3})
    finally:
        await runtime.aclose()
    assert result.is_error is True and "1 to 2" in text_of(result)


async def test_the_built_in_table_serves_when_the_catalogue_cannot_be_read(connect, emulator) -> None:
    emulator.inject(Fault.status(503), method="GET", path="/api/v1/models", times=50)
    async with connect(sleep=Sleeps()) as client:  # the catalogue read is retried: no real back-off
        data = await generate(client, model="black-forest-labs/flux-dev", steps=12)
    assert posts(emulator)[0]["num_inference_steps"] == 12 and data["status"] == "completed"


async def test_list_models_reports_kind_inputs_and_price(connect) -> None:
    async with connect() as client:
        result = await client.call_tool("list_models", {})
    models = {m["id"]: m for m in result.structured_content["models"]}
    assert (
        models[KONTEXT].items() >= {"kind": "edit", "references": 1, "mask": False, "price": "0.025"}.items()
    )
    assert models[FILL]["kind"] == "inpaint" and models[FILL]["mask"] is True
    assert models[MULTI]["kind"] == "multi-edit" and models[MULTI]["references"] == 8
    assert models[REDUX]["kind"] == "variation"
    assert models["black-forest-labs/flux-schnell"]["price"] == "0.003"
    assert "google/imagen4" in models and "alibaba/wan-2.6/text-to-video" not in models
    assert "edit, 1 picture" in text_of(result)


def test_every_built_in_row_survives_its_own_schema() -> None:
    """The emulator's schema of each row reads back as the same row: one table, two directions."""
    by_id = {m.id: m for m in MODELS}
    for row in BUILT_IN:
        document = schema_document(by_id[row.id], EMULATOR_URL)
        back = spec_from_schema(row.id, document, known=row)
        assert back is not None
        assert (back.kind, back.prompt, back.sizing, back.references, back.mask) == (
            row.kind,
            row.prompt,
            row.sizing,
            row.references,
            row.mask,
        )
        assert {n: (p.wire, p.range, p.choices) for n, p in back.params.items()} == {
            n: (p.wire, p.range, p.choices) for n, p in row.params.items()
        }


# --- what the emulator refuses, as Atlas would -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": KONTEXT, "prompt": "x"}, "image is required"),
        ({"model": FILL, "prompt": "x", "image": "https://a.test/1.png"}, "mask_image is required"),
        ({"model": REDUX, "prompt": "x", "image": "https://a.test/1.png"}, "unknown parameter: prompt"),
        (
            {"model": MULTI, "prompt": "x", "images": [f"https://a.test/{n}.png" for n in range(9)]},
            "at most 8",
        ),
        (
            {"model": KONTEXT, "prompt": "x", "image": "https://a.test/1.png", "size": "2000*512"},
            "between 256 and 1536",
        ),
        (
            {"model": "black-forest-labs/flux-1.1-pro-ultra", "prompt": "x", "aspect_ratio": "5:4"},
            "must be one of",
        ),
    ],
)
async def test_the_emulator_refuses_what_the_real_schema_would(emulator: Emulator, body, message) -> None:
    import httpx

    from .conftest import TEST_KEY

    transport = httpx.ASGITransport(app=emulator.app)
    async with httpx.AsyncClient(transport=transport, base_url=EMULATOR_URL) as http:
        answer = await http.post(GENERATE, json=body, headers={"Authorization": f"Bearer {TEST_KEY}"})
    assert answer.status_code == 400 and message in answer.json()["msg"]


def test_the_default_edit_model_is_the_first_kontext_model() -> None:
    assert DEFAULT_EDIT_MODELS[0] == KONTEXT


async def test_dry_run_of_an_edit_uploads_nothing(connect, emulator: Emulator, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(png((5, 5, 5)))
    async with connect() as client:
        result = await client.call_tool("edit_image", {"prompt": "x", "image": str(photo), "dry_run": True})
    assert result.is_error is False
    assert emulator.count("POST") == 0
    assert result.structured_content["request_body"]["model"] == KONTEXT


async def test_a_picture_collected_with_get_prediction_becomes_last(connect, emulator: Emulator) -> None:
    from atlas_image_mcp.emulator import PredictionScript

    emulator.script_next(PredictionScript(latency=0.3))
    async with connect() as client:
        first = await generate(client, wait=False)
        assert first["status"] != "completed"
        collected = await client.call_tool(
            "get_prediction", {"prediction_id": first["prediction_id"], "wait_seconds": 10}
        )
        assert collected.structured_content["prompt"] == "a lighthouse at dusk"
        result = await edit(client, image="last")
    assert posts(emulator)[-1]["image"] == output_url(first["prediction_id"])
    assert result.structured_content["sources"] == [output_url(first["prediction_id"])]


# --- one input check for every tool that takes a picture -------------------------------------------


def claimed_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height``: only the header is read before it is refused."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def picture_inputs(tmp_path: Path, content: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The same content given to each tool in each form it takes: (tool, arguments)."""
    path = tmp_path / "input.png"
    path.write_bytes(content)
    data = base64.b64encode(content).decode()
    return [
        ("upload_media", {"file_path": str(path)}),
        ("upload_media", {"data": data, "filename": "input.png"}),
        ("edit_image", {"prompt": "x", "image": str(path), "save": False}),
        ("edit_image", {"prompt": "x", "image": f"data:image/png;base64,{data}", "save": False}),
    ]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        pytest.param(claimed_png(40_000, 40_000), "1600.0 million pixels", id="1600-megapixels"),
        pytest.param(claimed_png(5_000, 5_000), "25.0 million pixels", id="25-megapixels"),
        pytest.param(b"", "empty", id="zero-bytes"),
        pytest.param(b"just some text, not a picture at all" * 3, "not a picture", id="text"),
    ],
)
async def test_every_tool_refuses_the_same_inputs_with_the_same_plain_words(
    connect, emulator: Emulator, tmp_path: Path, content: bytes, said: str
) -> None:
    async with connect() as client:
        results = [
            (tool, await client.call_tool(tool, arguments))
            for tool, arguments in picture_inputs(tmp_path, content)
        ]
    for tool, result in results:
        text = text_of(result)
        assert result.is_error and said in text, f"{tool}: {text}"
    assert emulator.count("POST") == 0


async def test_a_big_proc_file_is_refused_in_plain_words_by_every_tool(connect, emulator: Emulator) -> None:
    async with connect() as client:
        upload = await client.call_tool("upload_media", {"file_path": "/proc/self/pagemap"})
        edited = await client.call_tool(
            "edit_image", {"prompt": "x", "image": "/proc/self/pagemap", "save": False}
        )
    for result in (upload, edited):
        assert result.is_error and "empty" in text_of(result), text_of(result)
    assert emulator.count("POST") == 0
