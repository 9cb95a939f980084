"""The MCP Apps viewer through the MCP client: what it declares, what an Apps client receives, and that
a client without the extension sees the results it always saw (the page itself: tests/test_browser.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.extension import advertise
from mcp_types import CallToolResult, ImageContent, TextContent

from atlas_image_mcp.constants import VIEWER_URI
from atlas_image_mcp.emulator import PredictionScript
from atlas_image_mcp.history import HistoryEntry, HistoryScope, PictureHistory
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.viewer import keep_local_paths_out

from .conftest import TEST_KEY, FakeClock, make_api, text_of
from .emulation import Emulator
from .http_helpers import mcp_client, serve_app

APPS = advertise("io.modelcontextprotocol/ui", {"mimeTypes": ["text/html;profile=mcp-app"]})
WITH_APPS = {"extensions": [APPS]}
PICTURE_TOOLS = ("generate_image", "get_prediction", "show_gallery")


def dumped(result: Any) -> str:
    return json.dumps(result.model_dump(mode="json", by_alias=True))


# --- what the server declares -------------------------------------------------------------------


async def test_picture_tools_declare_the_viewer_with_small_meta_and_frames_may_not_upload_files(
    connect,
) -> None:
    async with connect(client_options=WITH_APPS) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        extensions = client.server_capabilities.extensions or {}
    assert "io.modelcontextprotocol/ui" in extensions
    for name in PICTURE_TOOLS:
        assert tools[name].meta == {"ui": {"resourceUri": VIEWER_URI}}
    # upload_media reads local files: the assistant may call it, a frame may not.
    assert tools["upload_media"].meta == {"ui": {"visibility": ["model"]}}
    assert tools["list_models"].meta is None


async def test_the_viewer_is_one_self_contained_page_served_as_an_mcp_app_with_a_strict_csp(connect) -> None:
    async with connect(client_options=WITH_APPS) as client:
        [content] = (await client.read_resource(VIEWER_URI)).contents
        [listed] = [r for r in (await client.list_resources()).resources if r.uri == VIEWER_URI]
    assert content.mime_type == listed.mime_type == "text/html;profile=mcp-app"
    strict = {"connectDomains": [], "resourceDomains": [], "frameDomains": [], "baseUriDomains": []}
    assert content.meta == listed.meta == {"ui": {"csp": strict, "prefersBorder": True}}
    page = content.text
    assert page.startswith("<!doctype html>") and len(page) < 40_000
    # Nothing from elsewhere, and nothing that turns data into code or markup.
    for forbidden in ("http://", "https://", "<link", "src=", "href=", "import(", "eval(", "new Function",
                      "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "fetch(",
                      "XMLHttpRequest", "WebSocket", "localStorage"):  # fmt: skip
        assert forbidden not in page, forbidden
    [config] = re.findall(r'<script type="application/json" id="atlas-config">(.*?)</script>', page, re.S)
    settings = json.loads(config)
    assert settings["tools"] == {
        "poll": "get_prediction",
        "edit": "edit_image",
        "variations": "generate_variations",
        "gallery": "show_gallery",
    }
    assert 0 < settings["pollWaitSeconds"] < 60


# --- graceful without the extension ---------------------------------------------------------------


async def test_a_client_without_the_extension_gets_todays_result_and_an_apps_client_only_file_names(
    connect, output_dir: Path, tmp_path: Path
) -> None:
    arguments = {"prompt": "a red fox in the snow", "width": 640, "height": 480, "seed": 7}
    async with connect() as plain_client:
        plain = await plain_client.call_tool("generate_image", arguments)
    async with connect(client_options=WITH_APPS) as apps_client:
        framed = await apps_client.call_tool("generate_image", arguments)

    # Without the extension: the absolute path of the saved copy, in the text and the structure.
    [out] = plain.structured_content["outputs"]
    saved = Path(out["path"])
    assert saved.is_absolute() and saved.parent == output_dir and saved.exists()
    assert f"  saved to: {saved}" in text_of(plain).splitlines()
    assert [block.type for block in plain.content] == ["text", "image", "resource_link"]

    # With it: the same result, except that the saved copy is named by its file name only.
    [framed_out] = framed.structured_content["outputs"]
    assert framed_out["path"] == Path(framed_out["path"]).name
    assert f"  saved as {framed_out['path']} in the output folder" in text_of(framed).splitlines()
    assert str(tmp_path) not in dumped(framed)

    def normal(result: CallToolResult, pid: str, name: str, path_line: str) -> str:
        text = (
            dumped(result).replace(json.dumps(path_line)[1:-1], "SAVED").replace(json.dumps(name), '"NAME"')
        )
        text = text.replace(pid, "PID")
        return re.sub(r'("elapsed_seconds": |Took: )[0-9.]+', r"\1N", text)

    plain_pid, framed_pid = (
        plain.structured_content["prediction_id"],
        framed.structured_content["prediction_id"],
    )
    assert normal(plain, plain_pid, str(saved), f"saved to: {saved}") == normal(
        framed, framed_pid, framed_out["path"], f"saved as {framed_out['path']} in the output folder"
    )


async def test_the_prediction_resource_names_saved_copies_by_file_name_for_an_apps_client(connect) -> None:
    async with connect() as client:
        made = await client.call_tool("generate_image", {"prompt": "fox", "seed": 1})
        uri = f"atlas-image://predictions/{made.structured_content['prediction_id']}"
        plain = json.loads((await client.read_resource(uri)).contents[0].text)
    async with connect(client_options=WITH_APPS) as client:
        framed = json.loads((await client.read_resource(uri)).contents[0].text)
    assert Path(plain["outputs"][0]["path"]).is_absolute()
    assert framed["outputs"][0]["path"] == Path(plain["outputs"][0]["path"]).name


async def test_an_unwritable_output_folder_is_named_to_a_plain_client_but_not_to_an_apps_client(
    connect, tmp_path: Path
) -> None:
    blocked = tmp_path / "home" / "Pictures" / "atlas-image-mcp"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the folder should be")
    async with connect(output_dir=blocked) as client:
        plain = await client.call_tool("generate_image", {"prompt": "fox", "seed": 2})
    async with connect(output_dir=blocked, client_options=WITH_APPS) as client:
        framed = await client.call_tool("generate_image", {"prompt": "fox", "seed": 2})
    assert plain.is_error is False and framed.is_error is False  # the picture is there, unsaved
    assert f"Could not save the picture to {str(blocked)!r}" in text_of(plain)
    assert "Could not save the picture to 'the output folder'" in text_of(framed)
    assert str(tmp_path) not in dumped(framed)


def test_the_last_check_replaces_whole_local_folders_only_and_redacts_keys() -> None:
    result = CallToolResult(
        content=[
            TextContent(
                type="text", text="saved to: /home/al/Pictures/x.png; see https://cdn.example/home/al/y"
            ),
            TextContent(type="text", text=f"key {TEST_KEY} at '/home/al' (file:///home/al/z.png)"),
            ImageContent(type="image", data="AAAA", mime_type="image/png"),
        ],
        structured_content={"outputs": [{"path": "/home/al/Pictures/x.png", "url": "http://h/home/alfred"}]},
    )
    from atlas_image_mcp.redact import register_secret

    register_secret(TEST_KEY)
    clean = keep_local_paths_out(result, {"/home/al/Pictures": "the output folder", "/home/al": "~"})
    assert clean.content[0].text == "saved to: the output folder/x.png; see https://cdn.example/home/al/y"
    assert TEST_KEY not in clean.content[1].text and clean.content[1].text.endswith("at '~' (file://~/z.png)")
    assert clean.content[2] == result.content[2]
    assert clean.structured_content == {
        "outputs": [{"path": "the output folder/x.png", "url": "http://h/home/alfred"}]
    }


# --- this session's pictures ----------------------------------------------------------------------


async def test_the_gallery_lists_this_sessions_pictures_newest_first_with_the_prompt_they_were_made_with(
    settings, clock: FakeClock, output_dir: Path
) -> None:
    emulator = Emulator(api_keys=[TEST_KEY], latency=30.0, clock=clock)
    runtime = Runtime.create(settings, client=make_api(emulator))
    try:
        async with Client(make_server(runtime)) as client:
            empty = await client.call_tool("show_gallery", {})
            slow = await client.call_tool(
                "generate_image", {"prompt": "a slow snail", "seed": 1, "wait": False}
            )
            slow_id = slow.structured_content["prediction_id"]
            emulator.script_next(PredictionScript(latency=0))
            quick = await client.call_tool(
                "generate_image", {"prompt": "a quick hare", "seed": 2, "num_images": 2}
            )
            waiting = await client.call_tool("show_gallery", {})
            clock.advance(31)
            await client.call_tool("get_prediction", {"prediction_id": slow_id})  # collected later
            full = await client.call_tool("show_gallery", {})
            one = await client.call_tool("show_gallery", {"limit": 1})
    finally:
        await runtime.aclose()
    assert empty.structured_content == {"pictures": [], "total": 0}
    assert "No pictures in this session yet" in text_of(empty)
    quick_id = quick.structured_content["prediction_id"]
    assert [(p["prediction_id"], p["index"]) for p in waiting.structured_content["pictures"]] == [
        (quick_id, 1),
        (quick_id, 2),
    ]  # a job still running has no pictures yet
    pictures = full.structured_content["pictures"]
    # Newest request first; the slow job keeps the prompt it was started with and its place.
    assert [(p["prediction_id"], p["index"], p["prompt"], p["tool"]) for p in pictures] == [
        (quick_id, 1, "a quick hare", "generate_image"),
        (quick_id, 2, "a quick hare", "generate_image"),
        (slow_id, 1, "a slow snail", "generate_image"),
    ]
    assert all(p["resource_uri"] == f"atlas-image://predictions/{p['prediction_id']}/images/{p['index']}"
               for p in pictures)  # fmt: skip
    assert all(Path(p["path"]).parent == output_dir for p in pictures)  # a plain client: absolute paths
    assert one.structured_content["total"] == 3 and len(one.structured_content["pictures"]) == 1
    assert "(1 of 3)" in text_of(one)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_on_a_hosted_server_each_users_key_has_its_own_gallery(transport: str, settings) -> None:
    keys = {"alice": "apikey-ALICE-0123456789abcdef", "bob": "apikey-BOB-0123456789abcdef"}
    emulator = Emulator(api_keys=list(keys.values()), latency=0.05)
    runtime = Runtime.create(
        settings.replace(api_key=None, user_keys=True), client=make_api(emulator, api_key=None), remote=True
    )
    seen: dict[str, list[str]] = {}
    try:
        with serve_app(create_http_app(runtime)) as base:
            for user, key in keys.items():
                async with mcp_client(base, transport, {"X-Atlas-Api-Key": key}) as client:
                    made = await client.call_tool("generate_image", {"prompt": f"{user}'s cat", "seed": 1})
                    assert made.is_error is False, text_of(made)
                    listed = (await client.call_tool("show_gallery", {})).structured_content["pictures"]
                    seen[user] = [p["prompt"] for p in listed]
    finally:
        await runtime.aclose()
    assert seen == {"alice": ["alice's cat"], "bob": ["bob's cat"]}


async def test_the_history_is_bounded_newest_first_and_keeps_what_a_job_was_started_with() -> None:
    history = PictureHistory(max_entries=2, max_sessions=2)
    a, b, c = (HistoryScope(owner) for owner in "abc")  # three callers, one connection each
    await history.record(
        a, HistoryEntry("p1", "generate_image", 1.0, prompt="first", request_body={"prompt": "first"})
    )
    await history.record(a, HistoryEntry("p2", "generate_image", 2.0, prompt="second"))
    await history.record(
        a, HistoryEntry("p1", "get_prediction", 3.0, outputs=("https://o/1",), paths=(None,))
    )
    [p2, p1] = await history.entries(a)
    assert p2.prediction_id == "p2" and await history.last(a) == p1  # the latest with a picture
    assert (p1.tool, p1.prompt, p1.created, p1.outputs) == ("generate_image", "first", 1.0, ("https://o/1",))
    await history.record(a, HistoryEntry("p3", "generate_image", 4.0))
    assert [e.prediction_id for e in await history.entries(a)] == ["p3", "p2"]
    await history.record(b, HistoryEntry("q1", "generate_image", 5.0))
    await history.record(c, HistoryEntry("r1", "generate_image", 6.0))
    assert await history.entries(a) == [] and await history.last(a) is None  # the least recent session went
    assert [e.prediction_id for e in await history.entries(c)] == ["r1"]
    await history.aclose()


@pytest.mark.parametrize("tool", PICTURE_TOOLS)
async def test_the_picture_tools_answer_the_same_shape_with_or_without_the_extension(connect, tool) -> None:
    """The text layer never depends on the frame: every picture tool still answers in words."""
    arguments = {"prediction_id": "missing"} if tool == "get_prediction" else {}
    if tool == "generate_image":
        arguments = {"prompt": "fox", "dry_run": True}
    async with connect() as plain_client, connect(client_options=WITH_APPS) as apps_client:
        plain = await plain_client.call_tool(tool, arguments)
        framed = await apps_client.call_tool(tool, arguments)

    def timeless(text: str) -> str:  # how long each call took differs between two calls
        return "\n".join(line for line in text.splitlines() if not line.startswith("Took:"))

    assert text_of(plain) and timeless(text_of(plain)) == timeless(text_of(framed))
    assert plain.is_error == framed.is_error
    timing = "elapsed_seconds"  # how long each call took: wall-clock, so it may differ by a millisecond
    assert {k: v for k, v in (plain.structured_content or {}).items() if k != timing} == {
        k: v for k, v in (framed.structured_content or {}).items() if k != timing
    }
