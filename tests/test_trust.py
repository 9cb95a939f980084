"""Trust nothing from outside: a hostile upstream, anonymous clients, clocks that never run out.

Every test talks to the server through the SDK's MCP client. Atlas is played by
:class:`tests.hostile.Hostile`, a malicious stand-in on 127.0.0.1, and the "internal services" an
attacker would like to reach listen on 127.0.0.2, a loopback address the server must refuse: the
configured base URL is ``http://127.0.0.1:<port>``, so "same host as ATLASCLOUD_BASE_URL" never
excuses them. Name tricks go through a fake resolver, never real DNS.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from atlas_image_mcp.client import AtlasClient, ClientHooks, ClientOptions
from atlas_image_mcp.constants import CALL_MARGIN_SECONDS
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .conftest import FAST_POLLS, Sleeps, text_of
from .hostile import PID, Answer, Drip, Endless, Hostile, Redirect, Stage, json_answer
from .loadgen import serve_in_thread
from .pictures import bomb_png, jpeg, png, truncated_jpeg

pytestmark = pytest.mark.timeout(90)

KEY = "sk_live_TRUSTCANARY_0123456789"
CANARY = "INTERNAL-ONLY-5e1f"
QUICK = {"prompt": "a fox", "width": 512, "height": 512, "return_image": "thumbnail"}


# --- the stage ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def atlas_stage() -> Iterator[tuple[Stage, str]]:
    """One server for the module on 127.0.0.1; each test puts its own Hostile on it."""
    stage = Stage()
    with serve_in_thread(stage, graceful=0.5) as base:
        yield stage, base


@pytest.fixture(scope="module")
def internal_stage() -> Iterator[tuple[Stage, str]]:
    """One server for the module on 127.0.0.2; each test puts its own internal service on it."""
    stage = Stage()
    with serve_in_thread(stage, host="127.0.0.2", graceful=0.5) as base:
        yield stage, base


@pytest.fixture
def hostile() -> Hostile:
    return Hostile()


@pytest.fixture
def atlas(hostile: Hostile, atlas_stage: tuple[Stage, str]) -> str:
    """The hostile Atlas, on 127.0.0.1: the server's ATLASCLOUD_BASE_URL."""
    stage, base = atlas_stage
    stage.actor = hostile
    return base


@pytest.fixture
def internal(internal_stage: tuple[Stage, str]) -> tuple[Hostile, str]:
    """An internal service on 127.0.0.2 holding a secret (a real picture, and a metadata answer)."""
    service = Hostile()
    service.route("/secret.png", Answer(200, png(64, 64, text=CANARY), "image/png"))
    service.route("/latest/meta-data/iam", json_answer({"token": CANARY}))
    stage, base = internal_stage
    stage.actor = service
    return service, base


class FakeDNS:
    """Names the test decides; anything else resolves as an IP literal or not at all."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host in self.names:
            return self.names[host]
        try:
            import ipaddress

            return [str(ipaddress.ip_address(host))]
        except ValueError:
            raise OSError(f"no such name {host}") from None


@asynccontextmanager
async def connect(
    base: str,
    settings: Settings,
    *,
    resolver: Any = None,
    sleep: Any = None,
    logs: list[str] | None = None,
    **changes: Any,
) -> AsyncIterator[Client]:
    """An MCP client on a server whose Atlas is ``base`` (over real loopback sockets)."""
    configured = settings.replace(api_key=KEY, base_url=base, **changes)
    extra: dict[str, Any] = {"poll_schedule": FAST_POLLS}
    if resolver is not None:
        extra["resolver"] = resolver
    if sleep is not None:
        extra["sleep"] = sleep
    api = AtlasClient(ClientOptions.from_settings(configured), api_key=KEY, hooks=ClientHooks(**extra))
    runtime = Runtime.create(configured, client=api)

    async def on_log(params: Any) -> None:
        if logs is not None:
            logs.append(json.dumps(params.model_dump(mode="json")))

    try:
        async with Client(make_server(runtime), mode="legacy", logging_callback=on_log) as client:
            if logs is not None:
                with pytest.warns(MCPDeprecationWarning):
                    await client.set_logging_level("debug")
            yield client
    finally:
        await runtime.aclose()


async def generate(client: Client, bound: float = 20.0, **arguments: Any) -> Any:
    with anyio.fail_after(bound):
        return await client.call_tool("generate_image", {**QUICK, **arguments})


def saved_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def blocks(result: Any, kind: str) -> list[Any]:
    return [b for b in result.content if getattr(b, "type", None) == kind]


def completed_with_notes(result: Any) -> dict[str, Any]:
    """A paid job whose pictures failed: still a result, with the id, status, URLs and notes."""
    data = result.structured_content
    assert data is not None, text_of(result)
    assert data["prediction_id"] == PID and data["status"] == "completed", data
    assert data["outputs"] and all(out["url"] for out in data["outputs"]), data
    assert PID in text_of(result)
    return data


# --- 1. server-side request forgery ---------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["ip", "dns-to-internal", "dns-to-metadata", "mapped-ipv6", "redirect", "redirect-by-name"],
)
async def test_outputs_pointing_inside_are_never_fetched_saved_or_served(
    hostile: Hostile,
    atlas: str,
    internal: tuple[Hostile, str],
    settings: Settings,
    output_dir: Path,
    where: str,
) -> None:
    service, inside = internal
    port = inside.rsplit(":", 1)[1]
    dns = FakeDNS({"pics.example": ["127.0.0.2"], "cdn.example": ["169.254.169.254"]})
    target = {
        "ip": f"{inside}/secret.png",
        "dns-to-internal": f"http://pics.example:{port}/secret.png",
        "dns-to-metadata": "http://cdn.example/latest/meta-data/iam",
        "mapped-ipv6": f"http://[::ffff:127.0.0.2]:{port}/secret.png",
        "redirect": f"{atlas}/out/moved.png",  # on the API's own host: allowed, then redirected inside
        "redirect-by-name": f"{atlas}/out/moved-by-name.png",
    }[where]
    hostile.route("/out/moved.png", Redirect(f"{inside}/secret.png"))
    hostile.route("/out/moved-by-name.png", Redirect(f"http://pics.example:{port}/secret.png", 307))
    hostile.prediction(outputs=[target])
    async with connect(atlas, settings, resolver=dns) as client:
        result = await generate(client)
        state = await client.read_resource(f"atlas-image://predictions/{PID}")
        with pytest.raises(MCPError):
            await client.read_resource(f"atlas-image://predictions/{PID}/images/1")
    data = completed_with_notes(result)
    [out] = data["outputs"]
    assert out["path"] is None and out["width"] is None and out["error"], out
    assert "ATLAS_MCP_DOWNLOAD_HOSTS" in out["error"] and "address" in out["error"]
    assert blocks(result, "image") == []
    assert service.requests == []  # never contacted, not even once
    assert saved_files(output_dir) == []
    everything = result.model_dump_json() + state.model_dump_json()
    assert CANARY not in everything


async def test_a_host_named_in_download_hosts_is_fetched_even_on_a_private_address(
    hostile: Hostile, atlas: str, internal: tuple[Hostile, str], settings: Settings, output_dir: Path
) -> None:
    """The positive control: the same output as above, allowed by name, arrives and is saved."""
    service, inside = internal
    hostile.prediction(outputs=[f"{inside}/secret.png"])
    async with connect(atlas, settings, download_hosts=("127.0.0.2",)) as client:
        result = await generate(client)
    [out] = completed_with_notes(result)["outputs"]
    assert out["error"] is None and out["width"] == 64 and Path(out["path"]).is_file()  # noqa: ASYNC240
    assert service.count("GET", "/secret.png") == 1


async def test_a_redirect_chain_is_followed_at_most_three_hops(
    hostile: Hostile, atlas: str, settings: Settings, output_dir: Path
) -> None:
    for hop in range(6):
        hostile.route(f"/hop/{hop}", Redirect(f"{atlas}/hop/{hop + 1}"))
    hostile.route("/hop/6", Answer(200, png(), "image/png"))
    hostile.prediction(outputs=[f"{atlas}/hop/0"])
    async with connect(atlas, settings) as client:
        result = await generate(client)
    [out] = completed_with_notes(result)["outputs"]
    assert "redirected more than 3 times" in out["error"]
    assert hostile.count("GET", "/hop/") == 4
    assert saved_files(output_dir) == []


async def test_something_that_is_not_a_picture_is_never_saved_shown_or_served(
    hostile: Hostile, atlas: str, settings: Settings, output_dir: Path
) -> None:
    """Even from the API's own host: a JSON answer labelled image/jpeg stays out of every result."""
    hostile.route("/out/1.jpeg", Answer(200, json.dumps({"token": CANARY}).encode(), "image/jpeg"))
    hostile.prediction(outputs=[f"{atlas}/out/1.jpeg"])
    async with connect(atlas, settings) as client:
        result = await generate(client)
        with pytest.raises(MCPError, match="not a picture"):
            await client.read_resource(f"atlas-image://predictions/{PID}/images/1")
    [out] = completed_with_notes(result)["outputs"]
    assert "not a picture" in out["error"]
    assert blocks(result, "image") == [] and saved_files(output_dir) == []
    assert CANARY not in result.model_dump_json()


# --- 3. a bad picture never loses a paid job ------------------------------------------------------


@pytest.mark.parametrize(
    ("picture", "expected"),
    [
        pytest.param(lambda: truncated_jpeg(), "does not decode", id="truncated-jpeg"),
        pytest.param(lambda: bomb_png(12000, 12000), "ATLAS_MCP_MAX_MEGAPIXELS", id="decompression-bomb"),
        pytest.param(lambda: b"<html>gone</html>", "not a picture", id="not-a-picture"),
    ],
)
@pytest.mark.parametrize("tool", ["generate_image", "get_prediction"])
async def test_a_bad_picture_keeps_the_prediction_id_status_and_url_with_a_note(
    hostile: Hostile,
    atlas: str,
    settings: Settings,
    output_dir: Path,
    picture: Any,
    expected: str,
    tool: str,
) -> None:
    hostile.route("/out/1.png", Answer(200, picture(), "image/png"))
    hostile.prediction(outputs=[f"{atlas}/out/1.png"], model="black-forest-labs/flux-schnell")
    async with connect(atlas, settings) as client:
        with anyio.fail_after(20):
            if tool == "generate_image":
                result = await client.call_tool(tool, {**QUICK, "save": True})
            else:
                result = await client.call_tool(tool, {"prediction_id": PID, "return_image": "full"})
    assert result.is_error is False
    data = completed_with_notes(result)
    [out] = data["outputs"]
    assert out["url"] == f"{atlas}/out/1.png" and out["url"] in text_of(result)
    assert expected in out["error"] and expected in text_of(result)
    assert data["error"] and data["next_step"] and "get_prediction" in data["next_step"]
    assert blocks(result, "image") == [] and saved_files(output_dir) == []


async def test_a_picture_over_the_pixel_cap_is_refused_from_its_header_alone(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    hostile.route("/out/1.png", Answer(200, png(300, 200), "image/png"))
    hostile.prediction(outputs=[f"{atlas}/out/1.png"])
    async with connect(atlas, settings, max_megapixels=0.05) as client:
        result = await generate(client)
    [out] = completed_with_notes(result)["outputs"]
    assert "million pixels" in out["error"] and "ATLAS_MCP_MAX_MEGAPIXELS" in out["error"]
    assert "not decoded" in out["error"]


# --- 7. upstream does not decide memory -----------------------------------------------------------


async def test_outputs_beyond_the_number_asked_are_ignored(
    hostile: Hostile, atlas: str, settings: Settings, output_dir: Path
) -> None:
    for n in range(20):
        hostile.route(f"/out/{n}.png", Answer(200, png(8, 8), "image/png"))
    hostile.prediction(outputs=[f"{atlas}/out/{n}.png" for n in range(20)])
    async with connect(atlas, settings) as client:
        result = await generate(client, num_images=2)
    data = completed_with_notes(result)
    assert len(data["outputs"]) == 2 and len(saved_files(output_dir)) == 2
    assert hostile.count("GET", "/out/") == 2
    assert "20 outputs for 2 asked" in text_of(result)


async def test_an_endless_download_stops_at_the_cap_and_the_call_budget_is_shared(
    hostile: Hostile, atlas: str, settings: Settings, output_dir: Path
) -> None:
    streams = [Endless() for _ in range(3)]
    for n, stream in enumerate(streams):
        hostile.route(f"/out/{n}.png", stream)
    hostile.prediction(outputs=[f"{atlas}/out/{n}.png" for n in range(3)])
    async with connect(atlas, settings, max_download_mb=1, max_call_download_mb=1.5) as client:
        result = await generate(client, num_images=3)
    data = completed_with_notes(result)
    errors = [out["error"] for out in data["outputs"]]
    assert all(errors), errors
    assert any("ATLAS_MCP_MAX_CALL_DOWNLOAD_MB" in e for e in errors), errors
    assert saved_files(output_dir) == []


async def test_an_inline_data_uri_is_saved_and_pointed_to_never_echoed(
    hostile: Hostile, atlas: str, settings: Settings, output_dir: Path
) -> None:
    encoded = base64.b64encode(png(64, 48)).decode()
    hostile.prediction(outputs=[f"data:image/png;base64,{encoded}"])
    async with connect(atlas, settings) as client:
        result = await generate(client)
        state = await client.read_resource(f"atlas-image://predictions/{PID}")
        picture = await client.read_resource(f"atlas-image://predictions/{PID}/images/1")
    [out] = completed_with_notes(result)["outputs"]
    assert out["url"] == f"atlas-image://predictions/{PID}/images/1" and out["width"] == 64
    assert Path(out["path"]).read_bytes() == base64.b64decode(encoded)  # noqa: ASYNC240
    payload = encoded[40:80]  # any stretch of the payload
    assert payload not in text_of(result) and payload not in json.dumps(result.structured_content)
    assert payload not in state.model_dump_json()
    assert base64.b64decode(picture.contents[0].blob) == base64.b64decode(encoded)


@pytest.mark.parametrize("answer", ["post", "poll"])
async def test_an_answer_larger_than_the_cap_is_not_read_and_the_id_is_kept(
    hostile: Hostile, atlas: str, settings: Settings, answer: str
) -> None:
    """An answer carrying a 2 MB data URI, with a 0.5 MB download cap: a clear error, the id kept."""
    if answer == "poll":
        hostile.submit = json_answer({"code": 200, "data": {"id": PID, "status": "processing"}})
    big = base64.b64encode(bytes(2 * 1024 * 1024)).decode()
    hostile.prediction(outputs=[f"data:image/png;base64,{big}"])
    async with connect(atlas, settings, max_download_mb=0.5, sleep=Sleeps()) as client:
        result = await generate(client)
    text = text_of(result)
    assert result.is_error and PID in text and "not read" in text, text
    assert ("get_prediction" if answer == "poll" else "Atlas console") in text
    assert big[:64] not in text


# --- 6. time limits that bound time ---------------------------------------------------------------


@pytest.mark.slow  # a real 0.5 s timeout and 1 s wait
async def test_a_poll_answer_dripped_byte_by_byte_is_cut_off_and_the_id_kept(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    hostile.submit = json_answer({"code": 200, "data": {"id": PID, "status": "processing"}})
    # a byte every 0.2 s: each read is quick, the whole answer would take half a minute
    hostile.poll = Drip(
        json.dumps({"code": 200, "data": {"id": PID, "status": "processing"}}).encode(), every=0.2
    )
    async with connect(atlas, settings, timeout=0.5, wait_seconds=1, sleep=Sleeps()) as client:
        with anyio.fail_after(1 + CALL_MARGIN_SECONDS + 2):
            result = await client.call_tool("generate_image", QUICK)
    assert PID in text_of(result) and "get_prediction" in text_of(result)


@pytest.mark.slow  # a real 0.5 s timeout
async def test_a_download_dripped_byte_by_byte_is_cut_off_with_a_note(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    hostile.route("/out/1.png", Drip(png(), every=0.2, content_type="image/png"))  # ~16 s in all
    hostile.prediction(outputs=[f"{atlas}/out/1.png"])
    async with connect(atlas, settings, timeout=0.5, max_retries=0) as client:
        result = await generate(client, bound=1 + CALL_MARGIN_SECONDS + 2)
    [out] = completed_with_notes(result)["outputs"]
    assert "did not finish within" in out["error"], out


@pytest.mark.slow  # the call's real deadline: its wait plus CALL_MARGIN_SECONDS (10 s)
async def test_generate_returns_within_its_wait_plus_the_margin_whatever_the_post_does(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    """The generation POST answered a byte a second, with a per-request timeout far away."""
    hostile.submit = Drip(json.dumps({"code": 200, "data": {"id": PID, "status": "processing"}}).encode())
    async with connect(atlas, settings, timeout=120, wait_seconds=1) as client:
        with anyio.fail_after(1 + CALL_MARGIN_SECONDS + 2):
            result = await client.call_tool("generate_image", QUICK)
    text = text_of(result)
    assert result.is_error and "timed out" in text and "history" in text, text
    assert hostile.count("POST") == 1


async def test_a_huge_retry_after_is_capped_and_never_outlasts_the_call(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    hostile.poll = json_answer({"code": 429, "msg": "slow down"}, 429, (("Retry-After", "999999"),))
    sleeps = Sleeps()
    async with connect(atlas, settings, sleep=sleeps) as client:
        with anyio.fail_after(CALL_MARGIN_SECONDS + 2):
            result = await client.call_tool("get_prediction", {"prediction_id": PID, "wait_seconds": 0})
    text = text_of(result)
    assert result.is_error and "HTTP 429" in text, text
    assert "999999" not in text and "about 10 min" in text
    assert all(s <= CALL_MARGIN_SECONDS for s in sleeps.asked), sleeps.asked


# --- 4. keys echoed in success fields -------------------------------------------------------------


async def test_a_key_hidden_in_success_fields_never_leaves_the_server(
    hostile: Hostile, atlas: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hostile.route(f"/out/{KEY}.png", Answer(200, png(), "image/png"))
    hostile.prediction(
        outputs=[f"{atlas}/out/{KEY}.png?token={KEY}"], model=f"m/{KEY}", price=KEY[:30], error=KEY
    )
    logs: list[str] = []
    async with connect(atlas, settings, logs=logs) as client:
        result = await generate(client)
        fetched = await client.call_tool("get_prediction", {"prediction_id": PID})
        state = await client.read_resource(f"atlas-image://predictions/{PID}")
    assert result.is_error is False, text_of(result)
    assert hostile.count("GET", "/out/") >= 1  # the download itself used the real URL
    said = [result.model_dump_json(), fetched.model_dump_json(), state.model_dump_json(), *logs]
    said += [r.getMessage() for r in caplog.records if r.name.startswith("atlas_image_mcp")]
    for item in said:
        assert "TRUSTCANARY" not in item, item[:2000]
    assert "[redacted]" in result.model_dump_json()


# --- low: a POST is never sent twice, misleading messages ------------------------------------------


async def test_a_redirect_answered_to_the_generation_post_is_not_followed(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    hostile.submit = Redirect(f"{atlas}/api/v1/model/generateImage", 307)
    async with connect(atlas, settings) as client:
        result = await generate(client)
    text = text_of(result)
    assert result.is_error and "redirect" in text and "ATLASCLOUD_BASE_URL" in text, text
    assert hostile.count("POST") == 1


async def test_a_server_error_on_generate_does_not_say_to_just_try_again(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    hostile.submit = json_answer({"code": 500, "msg": "boom"}, 500)
    async with connect(atlas, settings) as client:
        text = text_of(await generate(client))
    assert "may still have reached Atlas" in text and "try again in a minute" not in text, text


async def test_a_completed_prediction_without_outputs_keeps_its_id_and_never_says_not_billed(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    hostile.prediction(outputs=[])
    async with connect(atlas, settings) as client:
        result = await generate(client)
    text = text_of(result)
    assert result.is_error and PID in text and "not billed" not in text and "no picture" in text, text
    assert result.structured_content["prediction_id"] == PID


@pytest.mark.parametrize("price", ["-5", -5, "NaN", "abc", "Infinity", "1e400", "  "])
async def test_a_price_that_is_not_an_amount_is_never_shown_as_one(
    hostile: Hostile, atlas: str, settings: Settings, price: Any
) -> None:
    hostile.route("/out/1.png", Answer(200, png(), "image/png"))
    hostile.prediction(outputs=[f"{atlas}/out/1.png"], price=price)
    async with connect(atlas, settings) as client:
        result = await generate(client)
        fetched = await client.call_tool("get_prediction", {"prediction_id": PID})
        state = json.loads((await client.read_resource(f"atlas-image://predictions/{PID}")).contents[0].text)
    for answer in (result, fetched):
        assert answer.is_error is False, text_of(answer)
        assert answer.structured_content["price"] is None
        assert "Cost: $" not in text_of(answer)
    assert state["price"] is None


async def test_a_sane_price_is_shown_as_atlas_sent_it(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    hostile.route("/out/1.png", Answer(200, png(), "image/png"))
    hostile.prediction(outputs=[f"{atlas}/out/1.png"], price="0.0300")
    async with connect(atlas, settings) as client:
        result = await generate(client)
    assert result.structured_content["price"] == "0.0300" and "Cost: $0.0300" in text_of(result)


@pytest.mark.parametrize("index", ["²", "١", "0", "5", "1x"])
async def test_a_resource_index_is_ascii_digits_within_the_outputs(
    hostile: Hostile, atlas: str, settings: Settings, index: str
) -> None:
    hostile.route("/out/1.jpeg", Answer(200, jpeg(), "image/jpeg"))
    hostile.prediction(outputs=[f"{atlas}/out/1.jpeg"])
    async with connect(atlas, settings) as client:
        with pytest.raises(MCPError) as info:
            await client.read_resource(f"atlas-image://predictions/{PID}/images/{index}")
        picture = await client.read_resource(f"atlas-image://predictions/{PID}/images/1")
    assert "has no image" in info.value.message
    assert base64.b64decode(picture.contents[0].blob) == jpeg()


# --- low: upload_media takes pictures only, and the upload root holds on stdio --------------------


async def test_upload_media_over_stdio_refuses_a_file_that_is_not_a_picture(
    hostile: Hostile, atlas: str, settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}\n")
    disguised = tmp_path / "holiday.png"
    disguised.write_bytes(secret.read_bytes())
    photo = tmp_path / "photo.dat"
    photo.write_bytes(png(4, 4))
    hostile.route(
        "/api/v1/model/uploadMedia", json_answer({"code": 200, "data": {"download_url": f"{atlas}/m/1"}})
    )
    async with connect(atlas, settings) as client:
        refused = [await client.call_tool("upload_media", {"file_path": str(p)}) for p in (secret, disguised)]
        inline = await client.call_tool(
            "upload_media", {"data": base64.b64encode(secret.read_bytes()).decode(), "filename": "a.png"}
        )
        accepted = await client.call_tool("upload_media", {"file_path": str(photo)})
    for result in (*refused, inline):
        assert result.is_error and "not a picture" in text_of(result), text_of(result)
    assert accepted.is_error is False, text_of(accepted)  # judged by content, not by name
    assert hostile.count("POST", "/api/v1/model/uploadMedia") == 1
    async with connect(atlas, settings, upload_any_file=True) as client:
        widened = await client.call_tool("upload_media", {"file_path": str(secret)})
    assert widened.is_error is False


async def test_the_upload_root_applies_over_stdio_too(
    hostile: Hostile, atlas: str, settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    (root / "in.png").write_bytes(png())
    (tmp_path / "out.png").write_bytes(png())
    hostile.route(
        "/api/v1/model/uploadMedia", json_answer({"code": 200, "data": {"download_url": f"{atlas}/m/1"}})
    )
    async with connect(atlas, settings, upload_root=root) as client:
        inside = await client.call_tool("upload_media", {"file_path": str(root / "in.png")})
        outside = await client.call_tool("upload_media", {"file_path": str(tmp_path / "out.png")})
    assert inside.is_error is False
    assert outside.is_error and "ATLAS_MCP_UPLOAD_ROOT" in text_of(outside)


async def test_connection_to_an_unresolvable_output_is_a_note_not_a_crash(
    hostile: Hostile, atlas: str, settings: Settings
) -> None:
    hostile.prediction(outputs=["http://nowhere.example/1.png"])
    async with connect(atlas, settings, resolver=FakeDNS({}), max_retries=0) as client:
        result = await generate(client)
    [out] = completed_with_notes(result)["outputs"]
    assert out["error"] and "could not be downloaded" in out["error"]


def test_the_hostile_stage_really_serves_the_secret_it_guards(internal: tuple[Hostile, str]) -> None:
    """Guard against a vacuous test: the internal service does answer when asked directly."""
    _service, inside = internal
    assert CANARY.encode() in httpx.get(f"{inside}/secret.png", timeout=5).content
