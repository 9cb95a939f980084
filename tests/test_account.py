"""``get_balance`` (Atlas' ``GET /public/v1/balance``) and ``get_usage`` (this server's ledger)."""

from __future__ import annotations

import json
from collections.abc import Callable
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

from .conftest import EMULATOR_URL, TEST_KEY, atlas_client, text_of
from .emulation import Emulator

PICTURE = {"prompt": "a fox", "width": 512, "height": 512, "return_image": "none", "save": False}
DEV = "black-forest-labs/flux-dev"


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    with anyio.fail_after(15):
        return await client.call_tool(tool, arguments)


async def test_get_balance_answers_and_goes_down_as_pictures_are_made(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    async with connect() as client:
        before = await call(client, "get_balance")
        assert (await call(client, "generate_image", **PICTURE, model=DEV, num_images=2)).is_error is False
        after = await call(client, "get_balance")
    assert before.is_error is False
    assert before.structured_content == {
        "currency": "usd",
        "available": "10",
        "cash": "10",
        "bonus": "0",
        "frozen": "0",
    }
    assert "Atlas Cloud balance: $10.00 available (cash $10.00, bonus $0.00, frozen $0.00)" in text_of(before)
    assert after.structured_content["available"] == "9.976"
    assert "$9.976 available" in text_of(after)
    [request] = [r for r in emulator.requests if r.path == "/public/v1/balance"][:1]
    assert request.method == "GET"


def _hostile(body: Any, status: int = 200) -> AtlasClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )

    return atlas_client(
        api_key=TEST_KEY, base_url=EMULATOR_URL, transport=httpx.MockTransport(answer), max_retries=0
    )


@pytest.mark.parametrize(
    "body",
    [
        {"available": {"value": "1e999", "currency": "usd"}},
        {"available": {"value": "12", "currency": "<script>alert(1)</script>"}},
        {"available": "10", "cash": [1, 2, 3]},
        ["not", "an", "object"],
        {"available": {"value": "9" * 40, "currency": "usd"}},
    ],
    ids=["exponent", "markup-currency", "wrong-shapes", "list", "too-long"],
)
async def test_a_balance_answer_that_cannot_be_trusted_is_not_shown(settings: Settings, body: Any) -> None:
    runtime = Runtime.create(settings, client=_hostile(body))
    try:
        async with Client(make_server(runtime)) as client:
            result = await call(client, "get_balance")
    finally:
        await runtime.aclose()
    assert result.is_error is True
    text = text_of(result)
    assert "without any amount this server can read" in text and "console" in text
    assert "script" not in text and "999" not in text


async def test_only_the_well_formed_amounts_of_a_balance_are_kept(settings: Settings) -> None:
    body = {
        "available": {"value": "3.500000", "currency": "USD"},
        "cash": {"value": "x", "currency": "usd"},
        "bonus": {"value": "1.0", "currency": "eur"},  # not mixed in with the dollars
        "account": {"name": f"Bearer {TEST_KEY}"},
    }
    runtime = Runtime.create(settings, client=_hostile(body))
    try:
        async with Client(make_server(runtime)) as client:
            result = await call(client, "get_balance")
    finally:
        await runtime.aclose()
    assert result.structured_content == {"currency": "usd", "available": "3.5"}
    assert TEST_KEY not in text_of(result) and "$3.50 available (bonus 1 EUR)." in text_of(result)


async def test_a_refused_balance_request_says_what_to_do(settings: Settings) -> None:
    runtime = Runtime.create(settings, client=_hostile({"code": 401, "msg": "invalid key"}, status=401))
    try:
        async with Client(make_server(runtime)) as client:
            result = await call(client, "get_balance")
    finally:
        await runtime.aclose()
    assert result.is_error and "ATLASCLOUD_API_KEY" in text_of(result) and TEST_KEY not in text_of(result)


async def test_get_usage_shows_spend_by_day_and_model_and_the_largest_calls(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    emulator.script_next(PredictionScript(price=None))  # the first charge is never reported: an estimate
    async with connect(budget_usd_per_day=1, max_images_per_hour=50) as client:
        for arguments in ({"num_images": 3}, {"model": DEV, "num_images": 2}, {"model": DEV}):
            assert (await call(client, "generate_image", **PICTURE, **arguments)).is_error is False
        result = await call(client, "get_usage")
    assert result.is_error is False
    usage = result.structured_content
    assert usage["total_usd"] == "0.045" and usage["images"] == 6
    rows = [
        (r["model"], r["calls"], r["images"], r["usd"], r["estimated_calls"])
        for r in usage["by_day_and_model"]
    ]
    assert rows == [(DEV, 2, 3, "0.036", 0), ("black-forest-labs/flux-schnell", 1, 3, "0.009", 1)]
    largest = [(c["model"], c["images"], c["usd"], c["charged"]) for c in usage["largest_calls"]]
    assert largest == [
        (DEV, 2, "0.024", True),
        (DEV, 1, "0.012", True),
        ("black-forest-labs/flux-schnell", 3, "0.009", False),
    ]
    assert usage["spent_today_usd"] == "0.045" and usage["left_today_usd"] == "0.955"
    assert usage["images_last_hour"] == 6 and usage["max_images_per_hour"] == 50
    text = text_of(result)
    assert "$0.045 for 6 image(s) in 3 call(s)" in text and "(1 not yet charged: estimated)" in text
    assert "of the $1.00 daily budget; $0.955 left" in text and "Images in the last hour: 6 of 50." in text


async def test_usage_is_per_key_and_needs_one(connect: Callable[..., Any]) -> None:
    async with connect(api_key=None) as client:
        result = await call(client, "get_usage")
    assert result.is_error and "ATLASCLOUD_API_KEY" in text_of(result)


async def test_offline_usage_is_kept_in_memory_and_says_so(settings: Settings) -> None:
    runtime = Runtime.create(settings.replace(save=False), offline=True, emulator_latency=0.05)
    try:
        async with Client(make_server(runtime)) as client:
            assert (await call(client, "generate_image", **PICTURE)).is_error is False
            result = await call(client, "get_usage")
    finally:
        await runtime.aclose()
    assert result.structured_content["images"] == 1
    assert "kept in memory (offline mode)" in text_of(result)
    assert not runtime.settings.resolved_state_dir.exists()  # nothing was written for a pretend spend
