"""The tools through a real MCP client (in memory) against the emulator.

Acceptance: one generate_image call goes from a sentence to a visible picture and a
saved file; slow jobs hand back an id; every failure is a tool error an assistant can act on.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning
from PIL import Image

from atlas_image_mcp.emulator import PredictionScript
from atlas_image_mcp.render import MAX_BASE64_CHARS

from .conftest import TOOL_NAMES, FakeClock, make_api, text_of
from .emulation import Emulator

GENERATE = "/api/v1/model/generateImage"
POLL = "/api/v1/model/prediction/*"


def images_of(result) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(base64.b64decode(block.data)))
        for block in result.content
        if getattr(block, "type", None) == "image"
    ]


async def test_tools_are_listed_with_titles_annotations_and_bounded_described_parameters(connect) -> None:
    async with connect(api_key=None) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOL_NAMES
    expected = {
        "generate_image": (False, False, True),
        "edit_image": (False, False, True),
        "generate_variations": (False, False, True),
        "get_prediction": (False, True, True),
        "upload_media": (False, False, True),
        "export_image": (False, False, True),
        "list_models": (True, True, True),
        "show_gallery": (True, True, False),
        "get_balance": (True, True, True),
        "get_usage": (True, True, False),
    }
    for name, tool in tools.items():
        assert tool.title and tool.description
        hints = tool.annotations
        assert (hints.read_only_hint, hints.idempotent_hint, hints.open_world_hint) == expected[name]
        assert hints.destructive_hint is False
        assert tool.output_schema and tool.output_schema["type"] == "object"
        for prop, schema in tool.input_schema["properties"].items():
            assert schema.get("description"), f"{name}.{prop} has no description"
            variants = schema.get("anyOf", [schema])
            for variant in variants:
                if variant.get("type") in ("integer", "number"):
                    assert "minimum" in variant and "maximum" in variant, f"{name}.{prop} is unbounded"
                if variant.get("type") == "string" and "enum" not in variant:
                    assert "maxLength" in variant, f"{name}.{prop} has no length bound"
    gen = tools["generate_image"].input_schema
    assert gen["required"] == ["prompt"]
    assert gen["properties"]["num_images"]["minimum"] == 1 and gen["properties"]["num_images"]["maximum"] == 4


async def test_one_call_returns_a_visible_picture_a_saved_file_and_structured_content(
    connect, emulator: Emulator, output_dir: Path
) -> None:
    async with connect() as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "a red fox in the snow", "width": 1024, "height": 768, "seed": 7}
        )
    assert result.is_error is False
    data = result.structured_content
    assert data["status"] == "completed" and len(data["outputs"]) == 1
    out = data["outputs"][0]
    saved = Path(out["path"])
    assert saved.is_absolute() and saved.parent == output_dir
    assert saved.name == f"{data['prediction_id']}-1.jpg"
    with Image.open(saved) as img:
        assert img.size == (1024, 768)
    assert (out["width"], out["height"], out["mime_type"]) == (1024, 768, "image/jpeg")
    assert data["seed"] == 7 and data["price"] == "0.003"
    [thumb] = images_of(result)
    assert max(thumb.size) == 512 and thumb.size == (512, 384)
    text = text_of(result)
    assert data["prediction_id"] in text and out["url"] in text and str(saved) in text and "Seed: 7" in text
    links = [b for b in result.content if getattr(b, "type", None) == "resource_link"]
    assert [str(link.uri) for link in links] == [
        f"atlas-image://predictions/{data['prediction_id']}/images/1"
    ]
    assert emulator.count("POST", GENERATE) == 1


async def test_progress_notifications_carry_status_and_elapsed_time(connect, emulator: Emulator) -> None:
    emulator.script_next(PredictionScript(latency=0.3))
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "fox"}, progress_callback=on_progress)
    assert result.is_error is False
    assert seen, "no progress notification was received"
    assert all("elapsed" in (message or "") for _, message in seen)
    assert any(status in (seen[0][1] or "") for status in ("created", "processing"))
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)


async def test_slow_job_returns_processing_then_get_prediction_collects_it(
    settings, output_dir: Path, clock: FakeClock
) -> None:
    from mcp import Client

    from atlas_image_mcp.runtime import Runtime
    from atlas_image_mcp.server import make_server

    from .conftest import TEST_KEY

    emulator = Emulator(api_keys=[TEST_KEY], latency=30.0, clock=clock)
    runtime = Runtime.create(settings.replace(wait_seconds=0.2), client=make_api(emulator))
    async with Client(make_server(runtime)) as client:
        first = await client.call_tool("generate_image", {"prompt": "a slow fox"})
        assert first.is_error is False
        pid = first.structured_content["prediction_id"]
        assert first.structured_content["status"] in ("created", "processing")
        assert "get_prediction" in text_of(first) and pid in text_of(first)
        assert not list(output_dir.glob("*"))
        clock.advance(31)
        second = await client.call_tool("get_prediction", {"prediction_id": pid})
    await runtime.aclose()
    assert second.is_error is False and second.structured_content["status"] == "completed"
    assert Path(second.structured_content["outputs"][0]["path"]).exists()
    assert emulator.count("POST", GENERATE) == 1
    # "Took" is the job's time as Atlas reports it (30 s on the emulator's clock), not this call's
    assert second.structured_content["elapsed_seconds"] == 30.0 and "Took: 30.0 s" in text_of(second)


@pytest.mark.parametrize("http_status", [500, 200])
async def test_failed_prediction_is_a_tool_error_with_the_upstream_reason(
    connect, emulator, http_status
) -> None:
    emulator.script_next(
        PredictionScript(outcome="fail", reason="GPU fell over", fail_http_status=http_status)
    )
    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "fox"})
    assert result.is_error is True
    text = text_of(result)
    assert "GPU fell over" in text and "failed" in text and "generate_image again" in text
    assert emulator.count("POST", GENERATE) == 1


async def test_safety_block_is_a_tool_error_that_says_to_rephrase(connect, emulator) -> None:
    emulator.script_next(PredictionScript(outcome="nsfw"))
    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "something"})
    assert result.is_error is True
    assert "safety checker" in text_of(result) and "Rephrase" in text_of(result)


async def test_dry_run_sends_nothing_and_shows_the_exact_body(connect, emulator) -> None:
    async with connect(api_key=None) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "fox", "aspect_ratio": "16:9", "steps": 8, "dry_run": True}
        )
    assert result.is_error is False
    data = result.structured_content
    assert data["status"] == "dry_run" and data["prediction_id"] is None
    assert data["request_body"] == {
        "model": "black-forest-labs/flux-schnell",
        "prompt": "fox",
        "size": "1360*768",
        "num_images": 1,
    }
    assert data["ignored_parameters"] == ["steps"]
    assert "Estimated cost: $0.003" in text_of(result)
    # nothing billable and no key: at most the public catalogue and the model's schema were read
    assert all(r.method == "GET" and "authorization" not in r.headers for r in emulator.requests)


async def test_schnell_given_steps_does_not_send_them_and_says_so(connect, emulator) -> None:
    async with connect() as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "fox", "steps": 12, "guidance_scale": 5, "return_image": "none"}
        )
    assert result.is_error is False
    [post] = [r for r in emulator.requests if r.method == "POST"]
    assert (
        "num_inference_steps" not in post.json
        and "guidance_scale" not in post.json
        and "steps" not in post.json
    )
    assert result.structured_content["ignored_parameters"] == ["steps", "guidance_scale"]
    assert "Ignored" in text_of(result) and "steps, guidance_scale" in text_of(result)


async def test_flux_dev_sends_steps_as_num_inference_steps(connect, emulator) -> None:
    async with connect() as client:
        result = await client.call_tool(
            "generate_image",
            {"prompt": "fox", "model": "black-forest-labs/flux-dev", "steps": 12, "guidance_scale": 4.5,
             "width": 512, "height": 512, "save": False, "return_image": "none"},
        )  # fmt: skip
    assert result.is_error is False, text_of(result)
    [post] = [r for r in emulator.requests if r.method == "POST"]
    assert post.json["num_inference_steps"] == 12 and post.json["guidance_scale"] == 4.5
    assert post.json["size"] == "512*512"


async def test_thumbnail_full_and_none_modes(connect) -> None:
    async with connect(save=False) as client:
        thumb = await client.call_tool("generate_image", {"prompt": "fox", "width": 1536, "height": 1024})
        full = await client.call_tool(
            "generate_image", {"prompt": "fox", "width": 640, "height": 480, "return_image": "full"}
        )
        none = await client.call_tool("generate_image", {"prompt": "fox", "return_image": "none"})
    assert [img.size for img in images_of(thumb)] == [(512, 341)]
    assert [img.size for img in images_of(full)] == [(640, 480)]
    assert images_of(none) == []
    assert none.structured_content["outputs"][0]["url"].startswith("http")


async def test_a_picture_neither_shown_nor_saved_is_not_fetched_until_its_resource_is_read(
    connect, emulator
) -> None:
    async with connect(save=False) as client:
        result = await client.call_tool("generate_image", {"prompt": "fox", "return_image": "none"})
        fetched = emulator.count("GET", "/outputs/*")
        pid = result.structured_content["prediction_id"]
        picture = await client.read_resource(f"atlas-image://predictions/{pid}/images/1")
    (output,) = result.structured_content["outputs"]
    assert result.is_error is False and output["url"].startswith("http") and output["path"] is None
    assert f"Image 1: {output['url']}" in text_of(result)  # no size claimed for a picture not read
    assert fetched == 0
    assert emulator.count("GET", "/outputs/*") == 1  # the resource fetches (and checks) it
    assert picture.contents[0].mime_type == "image/jpeg"


async def test_full_images_never_exceed_the_inline_base64_budget(connect) -> None:
    async with connect(save=False) as client:
        result = await client.call_tool(
            "generate_image",
            {
                "prompt": "a very detailed " * 40,
                "width": 1536,
                "height": 1536,
                "num_images": 4,
                "return_image": "full",
            },
        )
    assert result.is_error is False
    inline = sum(len(b.data) for b in result.content if getattr(b, "type", None) == "image")
    assert 0 < inline <= MAX_BASE64_CHARS
    assert len(images_of(result)) == 4


async def test_save_false_writes_nothing(connect, output_dir: Path) -> None:
    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "fox", "save": False})
    assert result.is_error is False
    assert result.structured_content["outputs"][0]["path"] is None
    assert not output_dir.exists() or not list(output_dir.iterdir())


async def test_atlas_mcp_save_0_turns_saving_off(connect, output_dir: Path) -> None:
    async with connect(save=False) as client:
        result = await client.call_tool("generate_image", {"prompt": "fox", "num_images": 2})
    assert [o["path"] for o in result.structured_content["outputs"]] == [None, None]
    assert not output_dir.exists()


async def test_upload_from_path_and_base64_then_used_as_image_of_a_generation(
    connect, emulator, tmp_path: Path
) -> None:
    photo = tmp_path / "my photo.png"
    Image.new("RGB", (64, 48), "teal").save(photo)
    encoded = base64.b64encode(photo.read_bytes()).decode()
    async with connect() as client:
        by_path = await client.call_tool("upload_media", {"file_path": str(photo)})
        by_data = await client.call_tool("upload_media", {"data": f"data:image/png;base64,{encoded}"})
        by_b64 = await client.call_tool("upload_media", {"data": encoded, "filename": "cat.png"})
        url = by_path.structured_content["download_url"]
        gen = await client.call_tool(
            "generate_image", {"prompt": "make it night", "image": url, "strength": 0.5}
        )
    for result in (by_path, by_data, by_b64):
        assert result.is_error is False, text_of(result)
        assert "temporary" in text_of(result) and "generate_image" in text_of(result)
    assert by_path.structured_content["filename"] == "my photo.png"
    assert by_path.structured_content["size"] == photo.stat().st_size
    assert by_data.structured_content["filename"].endswith(".png")
    assert by_b64.structured_content["filename"] == "cat.png"
    assert gen.is_error is False, text_of(gen)
    [post] = [r for r in emulator.requests if r.method == "POST" and r.path == GENERATE]
    assert post.json["image"] == url and post.json["strength"] == 0.5


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "exactly one of file_path or data"),
        ({"file_path": "/nonexistent/x.png"}, "No file at"),
        ({"file_path": "relative.png"}, "absolute path"),
        ({"file_path": "C:\\Users\\me\\cat.png"}, "Windows path"),
        ({"data": "%%%not base64%%%"}, "not valid base64"),
    ],
)
async def test_upload_errors_are_clear(connect, emulator, arguments, expected) -> None:
    async with connect() as client:
        result = await client.call_tool("upload_media", arguments)
    assert result.is_error is True and expected in text_of(result)
    assert emulator.count("POST", "*uploadMedia") == 0


async def test_upload_refuses_directories_and_empty_files(connect, tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    async with connect() as client:
        folder = await client.call_tool("upload_media", {"file_path": str(tmp_path)})
        nothing = await client.call_tool("upload_media", {"file_path": str(empty)})
    assert folder.is_error and "directory" in text_of(folder)
    assert nothing.is_error and "empty" in text_of(nothing)


async def test_missing_key_lists_tools_and_explains_how_to_set_it(connect, emulator) -> None:
    async with connect(api_key=None) as client:
        assert len((await client.list_tools()).tools) == len(TOOL_NAMES)
        result = await client.call_tool("generate_image", {"prompt": "fox"})
    assert result.is_error is True
    assert "ATLASCLOUD_API_KEY" in text_of(result)
    assert len(emulator.requests) == 0
    # over stdio the key goes into the client's configuration, and so does the offline switch
    assert "env of this server's entry in the MCP client's configuration" in text_of(result)
    assert '"ATLAS_MCP_OFFLINE": "1"' in text_of(result)


async def test_a_hosted_server_without_a_key_says_its_operator_must_set_one(connect, emulator) -> None:
    async with connect(api_key=None, remote=True) as client:
        result = await client.call_tool("generate_image", {"prompt": "fox"})
    assert result.is_error is True
    assert "This hosted server has no Atlas Cloud API key. Its operator must set" in text_of(result)
    assert "client's configuration" not in text_of(result) and "--offline" not in text_of(result)
    assert len(emulator.requests) == 0


async def test_rejected_key_is_a_clear_tool_error(connect, emulator) -> None:
    async with connect(api_key="apikey-WRONG-000000") as client:
        result = await client.call_tool("generate_image", {"prompt": "fox"})
    assert result.is_error is True
    assert "ATLASCLOUD_API_KEY" in text_of(result) and "401" in text_of(result)
    assert "apikey-WRONG-000000" not in text_of(result)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"prompt": "fox", "num_images": 9}, "Invalid num_images: 9 is out of range; allowed: 1 to 4."),
        ({"prompt": "fox", "model": "black-forest-labs/flux-dev", "width": 256}, "512 to 1536"),
        ({"prompt": "fox", "aspect_ratio": "16:9", "width": 800}, "not both"),
        ({"prompt": "fox", "image": "/home/me/cat.png"}, "No file at '/home/me/cat.png'"),
        ({"prompt": "   "}, "prompt"),
    ],
)
async def test_bad_parameters_are_tool_errors_naming_the_allowed_range(
    connect, emulator, arguments, expected
) -> None:
    async with connect() as client:
        result = await client.call_tool("generate_image", arguments)
    assert result.is_error is True
    assert expected in text_of(result)
    assert emulator.count("POST", GENERATE) == 0


async def test_unknown_prediction_id_is_a_clear_error(connect) -> None:
    async with connect() as client:
        result = await client.call_tool("get_prediction", {"prediction_id": "0" * 32})
    assert result.is_error is True
    assert "No prediction" in text_of(result) and "generate_image" in text_of(result)


async def test_list_models_puts_flux_first_and_shows_prices(connect) -> None:
    async with connect(api_key=None) as client:
        result = await client.call_tool("list_models", {})
        flux = await client.call_tool("list_models", {"query": "dev"})
    ids = [m["id"] for m in result.structured_content["models"]]
    assert ids[0].startswith("black-forest-labs/flux") and "black-forest-labs/flux-schnell" in ids
    assert not any(i.startswith("internal/") for i in ids)
    schnell = next(m for m in result.structured_content["models"] if m["id"].endswith("flux-schnell"))
    assert schnell["price"] == "0.003"
    assert all("dev" in m["id"] or "dev" in m["name"].lower() or "dev" in m["description"].lower()
               for m in flux.structured_content["models"])  # fmt: skip


async def test_resources_expose_prediction_state_and_pictures(connect) -> None:
    async with connect() as client:
        result = await client.call_tool("generate_image", {"prompt": "fox", "width": 512, "height": 512})
        pid = result.structured_content["prediction_id"]
        templates = (await client.list_resource_templates()).resource_templates
        state = await client.read_resource(f"atlas-image://predictions/{pid}")
        picture = await client.read_resource(f"atlas-image://predictions/{pid}/images/1")
    assert {t.uri_template for t in templates} >= {
        "atlas-image://predictions/{prediction_id}",
        "atlas-image://predictions/{prediction_id}/images/{index}",
    }
    assert '"completed"' in state.contents[0].text
    with Image.open(io.BytesIO(base64.b64decode(picture.contents[0].blob))) as img:
        assert img.size == (512, 512)


async def test_a_png_output_is_saved_shown_and_served_as_png(connect, output_dir) -> None:
    """output_format=png: the saved file, the inline picture and the resource all say PNG (not JPEG)."""
    async with connect() as client:
        result = await client.call_tool(
            "generate_image",
            {"prompt": "fox", "model": "black-forest-labs/flux-2-dev/text-to-image", "output_format": "png",
             "width": 512, "height": 512, "return_image": "full"},
        )  # fmt: skip
        pid = result.structured_content["prediction_id"]
        picture = await client.read_resource(f"atlas-image://predictions/{pid}/images/1")
    output = result.structured_content["outputs"][0]
    assert output["url"].endswith(".png") and output["mime_type"] == "image/png"
    assert Path(output["path"]).suffix == ".png" and Path(output["path"]).parent == output_dir
    assert [c.mime_type for c in result.content if c.type == "image"] == ["image/png"]
    assert picture.contents[0].mime_type == "image/png"
    with Image.open(io.BytesIO(base64.b64decode(picture.contents[0].blob))) as img:
        assert (img.format, img.size) == ("PNG", (512, 512))


async def test_logging_set_level_filters_log_notifications(connect) -> None:
    received: list[tuple[str, object]] = []

    async def on_log(params) -> None:
        received.append((params.level, params.data))

    options = {"mode": "legacy", "logging_callback": on_log}
    async with connect(client_options=options) as client:
        assert client.server_capabilities.logging is not None
        with pytest.warns(MCPDeprecationWarning):
            await client.set_logging_level("warning")
        await client.call_tool("generate_image", {"prompt": "fox", "return_image": "none"})
        quiet = list(received)
        with pytest.warns(MCPDeprecationWarning):
            await client.set_logging_level("debug")
        await client.call_tool("generate_image", {"prompt": "fox", "return_image": "none"})
    assert quiet == []
    levels = {level for level, _ in received}
    assert {"info", "debug"} <= levels
    assert any("submitted prediction" in str(data) for _, data in received)


async def test_cancelling_the_call_stops_polling(connect, emulator: Emulator) -> None:
    emulator.script_next(PredictionScript(latency=60))
    async with connect() as client:
        with anyio.move_on_after(0.5):
            await client.call_tool("generate_image", {"prompt": "fox"})
        polls_at_cancel = emulator.count("GET", POLL)
        # A further round trip on the same session proves the server is free and not polling.
        await client.call_tool("generate_image", {"prompt": "fox", "dry_run": True})
    assert polls_at_cancel >= 1
    assert emulator.count("GET", POLL) == polls_at_cancel
