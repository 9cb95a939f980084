"""The spend guard and cost reporting (issue 5).

``ATLAS_MCP_MAX_IMAGES_PER_HOUR`` caps the images one server process (or, with per-user keys,
one key) can start in a rolling hour. Past it generate_image refuses with a clear message and
sends nothing. Results report the cost when Atlas returns it; get_prediction reads it later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from atlas_image_mcp.client import AtlasClient
from atlas_image_mcp.emulator import Emulator, Fault, PredictionScript
from atlas_image_mcp.errors import SpendLimitError
from atlas_image_mcp.guard import WINDOW_SECONDS, SpendGuard
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .conftest import EMULATOR_URL, FAST_POLLS, TEST_KEY, FakeClock, text_of
from .loadgen import serve_in_thread

GENERATE = "/api/v1/model/generateImage"
SMALL = {"prompt": "a fox", "width": 512, "height": 512, "return_image": "none", "save": False}
USER_A, USER_B = "apikey-user-alice-000111", "apikey-user-bob-000222"


def api_for(emulator: Emulator, key: str | None = TEST_KEY, **kw: Any) -> AtlasClient:
    return AtlasClient(
        api_key=key,
        base_url=EMULATOR_URL,
        transport=httpx.ASGITransport(app=emulator.app),
        poll_schedule=FAST_POLLS,
        **kw,
    )


@asynccontextmanager
async def guarded(
    emulator: Emulator, settings: Settings, limit: int | None, clock: FakeClock | None = None, **kw: Any
) -> AsyncIterator[tuple[Client, Runtime]]:
    runtime = Runtime.create(
        settings.replace(max_images_per_hour=limit, save=False), client=api_for(emulator, **kw)
    )
    if clock is not None:
        runtime.guard = SpendGuard(limit, clock=clock)
    try:
        async with Client(make_server(runtime)) as client:
            yield client, runtime
    finally:
        await runtime.aclose()


async def generate(client: Client, **changes: Any) -> Any:
    with anyio.fail_after(15):
        return await client.call_tool("generate_image", {**SMALL, **changes})


# --- the limit --------------------------------------------------------------------------------


async def test_past_the_limit_generate_image_refuses_clearly_and_sends_nothing(
    emulator: Emulator, settings
) -> None:
    async with guarded(emulator, settings, limit=3) as (client, _):
        first = await generate(client, num_images=2)
        second = await generate(client, num_images=2)
    assert first.is_error is False and len(first.structured_content["outputs"]) == 2
    assert second.is_error is True
    text = text_of(second)
    assert (
        "Spend guard" in text
        and "at most 3 images per hour" in text
        and "ATLAS_MCP_MAX_IMAGES_PER_HOUR" in text
    )
    assert "2 already started" in text and "Nothing was sent or billed" in text and "minute" in text
    assert emulator.count("POST", GENERATE) == 1


async def test_the_last_images_of_the_budget_can_still_be_used(emulator: Emulator, settings) -> None:
    async with guarded(emulator, settings, limit=3) as (client, _):
        assert (await generate(client, num_images=2)).is_error is False
        assert (await generate(client, num_images=1)).is_error is False
        refused = await generate(client, num_images=1)
    assert refused.is_error and "Spend guard" in text_of(refused)
    assert emulator.count("POST", GENERATE) == 2


async def test_a_call_asking_for_more_than_the_whole_limit_says_so(emulator: Emulator, settings) -> None:
    async with guarded(emulator, settings, limit=2) as (client, _):
        result = await generate(client, num_images=4)
    assert result.is_error and "asks for 4" in text_of(result) and "at most 2" in text_of(result)
    assert "minute" not in text_of(result)  # waiting would not help
    assert emulator.count("POST", GENERATE) == 0


async def test_the_window_rolls_after_an_hour(emulator: Emulator, settings, clock: FakeClock) -> None:
    async with guarded(emulator, settings, limit=3, clock=clock) as (client, _):
        assert (await generate(client, num_images=2)).is_error is False  # t = 0
        clock.advance(1800)
        assert (await generate(client, num_images=1)).is_error is False  # t = 30 min
        refused = await generate(client)
        assert refused.is_error and "about 30 minute(s)" in text_of(refused)
        clock.advance(WINDOW_SECONDS - 1800 - 1)  # 1 s before the first two leave the window
        assert (await generate(client)).is_error is True
        clock.advance(1)
        assert (await generate(client, num_images=2)).is_error is False  # the first two have left
        assert (await generate(client)).is_error is True  # 30-min-old one + two new = 3
        clock.advance(1800)
        assert (await generate(client)).is_error is False
    assert emulator.count("POST", GENERATE) == 4


async def test_no_limit_means_unlimited(emulator: Emulator, settings) -> None:
    async with guarded(emulator, settings, limit=None) as (client, runtime):
        for _ in range(3):
            assert (await generate(client, num_images=4)).is_error is False
    assert runtime.guard.limit is None and emulator.count("POST", GENERATE) == 3


async def test_dry_runs_and_invalid_calls_use_no_budget(emulator: Emulator, settings) -> None:
    async with guarded(emulator, settings, limit=1) as (client, _):
        for _ in range(3):
            assert (await generate(client, dry_run=True)).is_error is False
        assert (await generate(client, width=100000)).is_error is True
        assert (await generate(client, model="black-forest-labs/flux-dev", width=256)).is_error is True
        assert (await generate(client)).is_error is False
    assert emulator.count("POST", GENERATE) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault.rate_limited(1), Fault.status(401), Fault.status(402), Fault.status(400)],
    ids=["429", "401", "402", "400"],
)
async def test_a_generation_refused_by_atlas_gives_its_budget_back(
    emulator: Emulator, settings, fault: Fault
) -> None:
    emulator.inject(fault, method="POST", path=GENERATE)
    async with guarded(emulator, settings, limit=1) as (client, _):
        assert (await generate(client)).is_error is True
        assert (await generate(client)).is_error is False  # the refused one did not count
    assert emulator.count("POST", GENERATE) == 2


@pytest.mark.parametrize(
    "fault", [Fault.status(502), Fault.reset(), Fault.invalid_json()], ids=["502", "reset", "invalid-json"]
)
async def test_a_generation_that_may_have_started_keeps_its_budget(
    emulator: Emulator, settings, fault: Fault
) -> None:
    emulator.inject(fault, method="POST", path=GENERATE)
    async with guarded(emulator, settings, limit=1) as (client, _):
        assert (await generate(client)).is_error is True
        refused = await generate(client)
    assert refused.is_error and "Spend guard" in text_of(refused)
    assert emulator.count("POST", GENERATE) == 1


async def test_a_connection_that_never_opened_gives_its_budget_back(emulator: Emulator, settings) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api = AtlasClient(
        api_key=TEST_KEY, base_url=EMULATOR_URL, transport=httpx.MockTransport(refuse), max_retries=0
    )
    runtime = Runtime.create(settings.replace(max_images_per_hour=1, save=False), client=api)
    async with Client(make_server(runtime)) as client:
        assert (await generate(client)).is_error is True
        assert runtime.guard.used(TEST_KEY) == 0
    await runtime.aclose()


async def test_concurrent_calls_cannot_overrun_the_limit(emulator: Emulator, settings) -> None:
    async with guarded(emulator, settings, limit=5) as (client, _):
        results: list[Any] = []

        async def one() -> None:
            results.append(await generate(client))

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(one)
    assert sum(1 for r in results if not r.is_error) == 5
    assert sum(1 for r in results if r.is_error and "Spend guard" in text_of(r)) == 7
    assert emulator.count("POST", GENERATE) == 5


def test_the_guard_never_holds_the_key_itself() -> None:
    guard = SpendGuard(2)
    guard.reserve(TEST_KEY, 1)
    assert guard.buckets() and all(TEST_KEY not in bucket for bucket in guard.buckets())
    assert guard.used(TEST_KEY) == 1 and guard.used("another") == 0


def test_idle_per_user_buckets_are_forgotten(clock: FakeClock) -> None:
    guard = SpendGuard(1, clock=clock)
    for n in range(300):
        guard.reserve(f"user-{n}", 1)
    clock.advance(WINDOW_SECONDS)
    guard.reserve("late-user", 1)
    assert len(guard.buckets()) == 1
    with pytest.raises(SpendLimitError):
        guard.reserve("late-user", 1)


# --- per-user keys in hosted mode: one budget per key -------------------------------------------


@asynccontextmanager
async def http_client(url: str, key: str | None) -> AsyncIterator[Client]:
    headers = {"X-Atlas-Api-Key": key} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10.0, read=30.0)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def test_hosted_per_user_keys_have_separate_budgets(settings) -> None:
    emulator = Emulator(api_keys=[USER_A, USER_B], latency=0.05)
    runtime = Runtime.create(
        settings.replace(api_key=None, user_keys=True, max_images_per_hour=2, save=False),
        client=api_for(emulator, key=None),
        remote=True,
    )
    with serve_in_thread(create_http_app(runtime), graceful=1.0) as base:
        url = f"{base}/mcp"
        async with http_client(url, USER_A) as alice, http_client(url, USER_B) as bob:
            assert (await generate(alice, num_images=2)).is_error is False
            refused = await generate(alice)
            assert refused.is_error and "Spend guard" in text_of(refused)
            assert (await generate(bob)).is_error is False  # Bob's budget is his own
            assert (await generate(bob)).is_error is False
            assert (await generate(bob)).is_error is True
        async with http_client(url, USER_A) as alice_again:  # a new session does not reset the budget
            assert (await generate(alice_again)).is_error is True
    posts = [r.headers["authorization"] for r in emulator.requests if r.method == "POST"]
    assert sorted(posts) == sorted([f"Bearer {USER_A}"] + [f"Bearer {USER_B}"] * 2)


# --- cost ---------------------------------------------------------------------------------------


async def test_the_result_reports_the_cost_atlas_returns(connect, emulator: Emulator) -> None:
    emulator.script_next(PredictionScript(price="0.0123"))
    async with connect() as client:
        result = await client.call_tool("generate_image", SMALL)
    assert result.structured_content["price"] == "0.0123"
    assert "Cost: $0.0123" in text_of(result)


async def test_no_cost_is_invented_when_atlas_returns_none(connect, emulator: Emulator) -> None:
    emulator.script_next(PredictionScript(price=None))
    async with connect() as client:
        result = await client.call_tool("generate_image", SMALL)
    assert result.is_error is False and result.structured_content["price"] is None
    assert "Cost" not in text_of(result)


async def test_get_prediction_reads_the_cost_later(connect, emulator: Emulator) -> None:
    emulator.script_next(PredictionScript(price="0.006", latency=0.3))
    async with connect() as client:
        started = await client.call_tool("generate_image", {**SMALL, "wait": False})
        assert started.is_error is False and started.structured_content["status"] in ("created", "processing")
        assert started.structured_content["price"] is None  # not known at submit time
        pid = started.structured_content["prediction_id"]
        later = await client.call_tool(
            "get_prediction", {"prediction_id": pid, "wait_seconds": 5, "return_image": "none"}
        )
        again = await client.call_tool("get_prediction", {"prediction_id": pid, "return_image": "none"})
    for result in (later, again):
        assert result.structured_content["status"] == "completed"
        assert result.structured_content["price"] == "0.006" and "Cost: $0.006" in text_of(result)
    assert emulator.count("POST", GENERATE) == 1


async def test_dry_run_estimates_the_cost_of_several_images(connect, emulator: Emulator) -> None:
    async with connect() as client:
        result = await client.call_tool(
            "generate_image",
            {"prompt": "fox", "model": "black-forest-labs/flux-dev", "num_images": 3, "dry_run": True},
        )
    assert "Estimated cost: $0.036" in text_of(result)
    assert emulator.count("POST") == 0  # at most the public catalogue and schema were read
