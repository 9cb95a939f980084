"""What a person meets in a first hour with the tools: each refusal names its subject and the way on,
and offline results point at pictures that can be opened.

Through a real MCP client: the server on the emulator (in process), the offline server as a client
configuration starts it, and the offline server over HTTP.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from PIL import Image

from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .conftest import text_of
from .http_helpers import mcp_client, serve_app

pytestmark = pytest.mark.timeout(60)

UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


def _png(width: int = 256, height: int = 256, colour: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


# --- refusals that say what was wrong ---------------------------------------------------------------


async def test_a_mistyped_prediction_id_is_said_to_be_unknown_by_every_tool_that_takes_one(connect) -> None:
    async with connect() as client:
        answers = {
            "get_prediction": await client.call_tool("get_prediction", {"prediction_id": UNKNOWN_ID}),
            "edit_image": await client.call_tool("edit_image", {"prompt": "stormy", "image": UNKNOWN_ID}),
            "generate_variations": await client.call_tool(
                "generate_variations", {"prediction_id": UNKNOWN_ID}
            ),
        }
    said_by_get_prediction = text_of(answers["get_prediction"]).removeprefix(
        "Error executing tool get_prediction: "
    )
    assert said_by_get_prediction.startswith(
        f"No prediction with id '{UNKNOWN_ID}' was found at Atlas. Check the id"
    )
    for tool, answer in answers.items():
        text = text_of(answer).removeprefix(f"Error executing tool {tool}: ")
        assert answer.is_error is True, tool
        assert text.startswith(said_by_get_prediction), (tool, text)  # first of all: no such prediction


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("black-forest-labs/flux-shnell", "black-forest-labs/flux-schnell"),
        ("flux-dev", "black-forest-labs/flux-dev"),
        ("Black-Forest-Labs/FLUX-1.1-PRO", "black-forest-labs/flux-1.1-pro"),
    ],
)
async def test_a_mistyped_model_id_suggests_the_closest_catalogue_id(connect, typed: str, meant: str) -> None:
    async with connect() as client:
        answer = await client.call_tool("generate_image", {"prompt": "a fox", "model": typed})
    assert answer.is_error is True
    assert f"is not in the Atlas model catalogue. Did you mean '{meant}'?" in text_of(answer)


async def test_a_model_id_like_none_in_the_catalogue_gets_no_suggestion(connect) -> None:
    async with connect() as client:
        answer = await client.call_tool("generate_image", {"prompt": "a fox", "model": "acme/teapot"})
    assert answer.is_error is True and "Did you mean" not in text_of(answer)
    assert "Call list_models" in text_of(answer)


async def test_a_file_that_is_not_a_picture_is_named_in_the_refusal(connect, tmp_path: Path) -> None:
    notes = tmp_path / "passwd"
    notes.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    async with connect() as client:
        answer = await client.call_tool("edit_image", {"prompt": "x", "image": str(notes)})
    assert answer.is_error is True
    assert f"Invalid image: '{notes}' is not a picture" in text_of(answer)


async def test_a_home_relative_path_is_read_and_a_missing_one_says_where_it_looked(connect) -> None:
    home = Path.home()  # the test's own scratch home (conftest)
    home.mkdir(parents=True, exist_ok=True)
    (home / "fox.png").write_bytes(_png())
    async with connect() as client:
        edited = await client.call_tool("edit_image", {"prompt": "stormy", "image": "~/fox.png"})
        uploaded = await client.call_tool("upload_media", {"file_path": "~/fox.png"})
        missing = await client.call_tool("edit_image", {"prompt": "stormy", "image": "~/nope/fox.png"})
    assert edited.is_error is False, text_of(edited)
    assert uploaded.is_error is False, text_of(uploaded)
    assert missing.is_error is True
    assert f"No file at '~/nope/fox.png' ({home / 'nope' / 'fox.png'})" in text_of(missing)


# --- offline: results that open, figures marked as the emulator's -----------------------------------


async def test_offline_results_point_at_the_pictures_resource_and_say_they_are_the_emulators() -> None:
    runtime = Runtime.create(Settings(), offline=True, emulator_latency=0.05)
    try:
        async with Client(make_server(runtime)) as client:
            made = await client.call_tool("generate_image", {"prompt": "a fox", "width": 512})
            [output] = made.structured_content["outputs"]
            opened = await client.read_resource(output["url"])
            balance = await client.call_tool("get_balance", {})
    finally:
        await runtime.aclose()
    assert made.is_error is False, text_of(made)
    assert output["url"] == output["resource_uri"], "the URL shown is one the client can open"
    assert f"Image 1 512x1024 image/jpeg: {output['resource_uri']}" in text_of(made)
    assert "Offline: the built-in emulator of the Atlas API drew this picture" in text_of(made)
    assert opened.contents[0].mime_type == "image/jpeg"
    assert Path(output["path"]).is_file()
    text = text_of(balance)
    assert balance.is_error is False and text.startswith("Emulator balance: $")
    assert "not a real Atlas Cloud account" in text and "Top up" not in text


async def test_offline_over_http_nothing_is_saved_yet_every_picture_opens_and_can_be_edited() -> None:
    runtime = Runtime.create(Settings(), offline=True, remote=True, emulator_latency=0.05)
    with serve_app(create_http_app(runtime)) as base:
        async with mcp_client(base, "streamable-http") as client:
            made = await client.call_tool("generate_image", {"prompt": "a fox", "width": 512})
            [output] = made.structured_content["outputs"]
            opened = await client.read_resource(output["url"])
            edited = await client.call_tool("edit_image", {"prompt": "stormy", "image": "last"})
            again = await client.call_tool(
                "edit_image", {"prompt": "at night", "image": made.structured_content["prediction_id"]}
            )
    assert made.is_error is False and output["path"] is None, text_of(made)
    assert output["url"].startswith("atlas-image://predictions/")
    assert opened.contents[0].mime_type == "image/jpeg"
    assert edited.is_error is False, text_of(edited)
    assert again.is_error is False, text_of(again)


# --- the emulator's edit banners --------------------------------------------------------------------


def _banner_rows(picture: Image.Image) -> int:
    """How many rows from the top are covered by the emulator's dark banners (on a white source)."""
    grey = picture.convert("L")
    width = grey.width
    rows = 0
    for y in range(grey.height // 2):
        mean = sum(grey.getpixel((x, y)) for x in range(0, width, 4)) / len(range(0, width, 4))  # type: ignore[misc]
        if mean > 150:  # the white source shows through: below the banners
            break
        rows += 1
    return rows


def _picture(result: Any) -> Image.Image:
    [block] = [b for b in result.content if b.type == "image"]
    return Image.open(io.BytesIO(base64.b64decode(block.data)))


async def test_editing_an_edited_picture_draws_its_banner_below_the_first(connect) -> None:
    white = base64.b64encode(_png(512, 512)).decode()
    full = {"return_image": "full", "save": False}
    async with connect() as client:
        first = await client.call_tool("edit_image", {"prompt": "make it stormy", "image": white, **full})
        second = await client.call_tool(
            "edit_image",
            {"prompt": "add a lighthouse", "image": first.structured_content["prediction_id"], **full},
        )
    assert first.is_error is False and second.is_error is False, text_of(second)
    one, two = _banner_rows(_picture(first)), _banner_rows(_picture(second))
    assert one > 0
    assert two >= 2 * one - 2, f"the second banner covers the first ({one} rows, then {two})"
