"""Budgets that survive restarts, and the cost of every call.

``ATLAS_MCP_MAX_IMAGES_PER_HOUR`` (images one key starts in a rolling hour) and
``ATLAS_MCP_BUDGET_USD_PER_DAY`` (what one key spends per UTC day) are kept in the SQLite ledger in the
state folder: past either, the picture tools refuse with a clear message and send nothing, a new
server on the same folder remembers, and two server processes sharing the folder never overspend
between them. The ledger is read here only through ``get_usage`` and the ledger's own interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from atlas_image_mcp.client import AtlasClient
from atlas_image_mcp.constants import IMAGE_WINDOW_SECONDS, LEDGER_FILE
from atlas_image_mcp.emulator import PredictionScript
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.ledger import Ledger, Limits
from atlas_image_mcp.runtime import Runtime, limits_of
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .conftest import EMULATOR_URL, FAST_POLLS, TEST_KEY, FakeClock, Sleeps, atlas_client, text_of
from .emulation import Emulator, Fault
from .http_helpers import ENTRY_POINT, child_env, free_port, mcp_client, serve_app, serve_process
from .loadgen import serve_in_thread

pytestmark = pytest.mark.timeout(90)

GENERATE = "/api/v1/model/generateImage"
SMALL = {"prompt": "a fox", "width": 512, "height": 512, "return_image": "none", "save": False}
DEV = "black-forest-labs/flux-dev"  # $0.012 a picture in the emulator's catalogue
USER_A, USER_B = "apikey-user-alice-000111", "apikey-user-bob-000222"


def api_for(emulator: Emulator, key: str | None = TEST_KEY, **kw: Any) -> AtlasClient:
    return atlas_client(
        api_key=key,
        base_url=EMULATOR_URL,
        transport=httpx.ASGITransport(app=emulator.app),
        poll_schedule=FAST_POLLS,
        **kw,
    )


@asynccontextmanager
async def guarded(
    emulator: Emulator,
    settings: Settings,
    limit: int | None = None,
    clock: FakeClock | None = None,
    sleep: Sleeps | None = None,
    **changes: Any,
) -> AsyncIterator[tuple[Client, Runtime]]:
    """A server with these limits on the emulator; ``clock`` drives the ledger's hours and days.

    ``sleep``: the Atlas client's sleep (a :class:`Sleeps` where retries must not wait for real).
    """
    chosen = settings.replace(max_images_per_hour=limit, save=False, **changes)
    ledger = None
    if clock is not None:
        ledger = Ledger(chosen.resolved_state_dir / LEDGER_FILE, limits_of(chosen), clock=clock)
    api = api_for(emulator, **({} if sleep is None else {"sleep": sleep}))
    runtime = Runtime.create(chosen, client=api, ledger=ledger)
    try:
        async with Client(make_server(runtime)) as client:
            yield client, runtime
    finally:
        await runtime.aclose()


async def generate(client: Client, **changes: Any) -> Any:
    with anyio.fail_after(15):
        return await client.call_tool("generate_image", {**SMALL, **changes})


async def usage(client: Client, days: int = 7) -> dict[str, Any]:
    with anyio.fail_after(10):
        result = await client.call_tool("get_usage", {"days": days})
    assert result.is_error is False, text_of(result)
    return dict(result.structured_content or {})


# --- images per hour --------------------------------------------------------------------------


async def test_past_the_limit_generate_image_refuses_clearly_and_sends_nothing(
    emulator: Emulator, settings: Settings
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


async def test_the_last_images_of_the_budget_can_still_be_used(
    emulator: Emulator, settings: Settings
) -> None:
    async with guarded(emulator, settings, limit=3) as (client, _):
        assert (await generate(client, num_images=2)).is_error is False
        assert (await generate(client, num_images=1)).is_error is False
        refused = await generate(client, num_images=1)
    assert refused.is_error and "Spend guard" in text_of(refused)
    assert emulator.count("POST", GENERATE) == 2


async def test_a_call_asking_for_more_than_the_whole_limit_says_so(
    emulator: Emulator, settings: Settings
) -> None:
    async with guarded(emulator, settings, limit=2) as (client, _):
        result = await generate(client, num_images=4)
    assert result.is_error and "asks for 4" in text_of(result) and "at most 2" in text_of(result)
    assert "minute" not in text_of(result)  # waiting would not help
    assert emulator.count("POST", GENERATE) == 0


async def test_the_window_rolls_after_an_hour(
    emulator: Emulator, settings: Settings, clock: FakeClock
) -> None:
    async with guarded(emulator, settings, limit=3, clock=clock) as (client, _):
        assert (await generate(client, num_images=2)).is_error is False  # t = 0
        clock.advance(1800)
        assert (await generate(client, num_images=1)).is_error is False  # t = 30 min
        refused = await generate(client)
        assert refused.is_error and "about 30 minute(s)" in text_of(refused)
        clock.advance(IMAGE_WINDOW_SECONDS - 1800 - 1)  # 1 s before the first two leave the window
        assert (await generate(client)).is_error is True
        clock.advance(1)
        assert (await generate(client, num_images=2)).is_error is False  # the first two have left
        assert (await generate(client)).is_error is True  # 30-min-old one + two new = 3
        clock.advance(1800)
        assert (await generate(client)).is_error is False
    assert emulator.count("POST", GENERATE) == 4


async def test_no_limit_means_unlimited(emulator: Emulator, settings: Settings) -> None:
    async with guarded(emulator, settings, limit=None) as (client, _):
        for _ in range(3):
            assert (await generate(client, num_images=4)).is_error is False
        seen = await usage(client)
    assert emulator.count("POST", GENERATE) == 3
    assert seen["images"] == 12 and seen["max_images_per_hour"] is None and seen["budget_usd_per_day"] is None


async def test_dry_runs_and_invalid_calls_use_no_budget(emulator: Emulator, settings: Settings) -> None:
    async with guarded(emulator, settings, limit=1, budget_usd_per_day=Decimal("0.003")) as (client, _):
        for _ in range(3):
            assert (await generate(client, dry_run=True)).is_error is False
        assert (await generate(client, width=100000)).is_error is True
        assert (await generate(client, model=DEV, width=256)).is_error is True
        assert (await generate(client)).is_error is False
    assert emulator.count("POST", GENERATE) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault.rate_limited(1), Fault.status(401), Fault.status(402), Fault.status(400)],
    ids=["429", "401", "402", "400"],
)
async def test_a_generation_refused_by_atlas_gives_its_budget_back(
    emulator: Emulator, settings: Settings, fault: Fault
) -> None:
    emulator.inject(fault, method="POST", path=GENERATE)
    async with guarded(emulator, settings, limit=1, budget_usd_per_day=Decimal("0.003")) as (client, _):
        assert (await generate(client)).is_error is True
        assert (await generate(client)).is_error is False  # the refused one did not count
    assert emulator.count("POST", GENERATE) == 2


@pytest.mark.parametrize(
    "fault", [Fault.status(502), Fault.reset(), Fault.invalid_json()], ids=["502", "reset", "invalid-json"]
)
async def test_a_generation_that_may_have_started_keeps_its_budget(
    emulator: Emulator, settings: Settings, fault: Fault
) -> None:
    emulator.inject(fault, method="POST", path=GENERATE)
    async with guarded(emulator, settings, limit=1) as (client, _):
        assert (await generate(client)).is_error is True
        refused = await generate(client)
    assert refused.is_error and "Spend guard" in text_of(refused)
    assert emulator.count("POST", GENERATE) == 1


async def test_a_connection_that_never_opened_gives_its_budget_back(settings: Settings) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api = atlas_client(
        api_key=TEST_KEY, base_url=EMULATOR_URL, transport=httpx.MockTransport(refuse), max_retries=0
    )
    runtime = Runtime.create(settings.replace(max_images_per_hour=1, save=False), client=api)
    try:
        async with Client(make_server(runtime)) as client:
            assert (await generate(client)).is_error is True
            seen = await usage(client)
    finally:
        await runtime.aclose()
    assert seen["images_last_hour"] == 0 and seen["by_day_and_model"] == []


async def test_concurrent_calls_cannot_overrun_the_limit(emulator: Emulator, settings: Settings) -> None:
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


async def test_the_ledger_never_holds_the_key_itself(emulator: Emulator, settings: Settings) -> None:
    async with guarded(emulator, settings, limit=5) as (client, runtime):
        assert (await generate(client)).is_error is False
        folder = runtime.settings.resolved_state_dir
        written = b"".join(path.read_bytes() for path in folder.iterdir() if path.is_file())
    assert written and TEST_KEY.encode() not in written
    assert (folder / LEDGER_FILE).stat().st_mode & 0o077 == 0  # readable by its owner only


async def test_the_ledger_forgets_calls_older_than_its_retention(tmp_path: Path, clock: FakeClock) -> None:
    ledger = Ledger(tmp_path / LEDGER_FILE, Limits(), clock=clock)
    for _ in range(3):
        await ledger.reserve(
            TEST_KEY, tool="t", model="m", images=1, estimate=Decimal("1"), amount=Decimal("1")
        )
    ledger.close()
    clock.advance(91 * 86400)
    reopened = Ledger(tmp_path / LEDGER_FILE, Limits(), clock=clock)
    seen = await reopened.usage(TEST_KEY, 90)
    reopened.close()
    assert seen.rows == [] and seen.largest == []


async def test_an_unwritable_state_folder_refuses_only_when_a_budget_depends_on_it(
    emulator: Emulator, settings: Settings, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "state"
    not_a_folder.write_text("a file where the state folder should be")
    async with guarded(emulator, settings, state_dir=not_a_folder) as (client, _):
        free = await generate(client)
        seen = await client.call_tool("get_usage", {})
    async with guarded(emulator, settings, state_dir=not_a_folder, budget_usd_per_day=Decimal("1")) as (
        client,
        _,
    ):
        refused = await generate(client)
    assert free.is_error is False and seen.structured_content["images"] == 1
    assert "could not be opened" in text_of(seen) and "only since this server started" in text_of(seen)
    assert (
        refused.is_error
        and "cannot be enforced" in text_of(refused)
        and "ATLAS_MCP_STATE_DIR" in text_of(refused)
    )
    assert emulator.count("POST", GENERATE) == 1


# --- the daily budget -----------------------------------------------------------------------------


async def test_the_daily_budget_refuses_the_call_that_would_cross_it(
    emulator: Emulator, settings: Settings
) -> None:
    async with guarded(emulator, settings, budget_usd_per_day=Decimal("0.05")) as (client, _):
        assert (await generate(client, model=DEV, num_images=2)).is_error is False  # $0.024
        assert (await generate(client, model=DEV, num_images=2)).is_error is False  # $0.048
        refused = await generate(client, model=DEV)  # $0.012 more would be $0.06
        fits = await generate(client)  # schnell, $0.003: more than the $0.002 left
        seen = await usage(client)
    text = text_of(refused)
    assert refused.is_error and "Daily budget" in text and "ATLAS_MCP_BUDGET_USD_PER_DAY" in text
    assert "$0.048 is spent or reserved today" in text and "about $0.012" in text
    assert "$0.002 is left" in text and "resets at 00:00 UTC" in text and "Nothing was sent" in text
    assert fits.is_error and "Daily budget" in text_of(fits)
    assert emulator.count("POST", GENERATE) == 2
    assert seen["spent_today_usd"] == "0.048" and seen["left_today_usd"] == "0.002"
    assert seen["budget_usd_per_day"] == "0.05" and seen["resets_at"].endswith("T00:00:00Z")


async def test_the_day_resets_at_midnight_utc(emulator: Emulator, settings: Settings) -> None:
    clock = FakeClock(start=86400 - 60)  # 1970-01-01 23:59:00 UTC
    async with guarded(emulator, settings, clock=clock, budget_usd_per_day=Decimal("0.012")) as (client, _):
        assert (await generate(client, model=DEV)).is_error is False
        refused = await generate(client, model=DEV)
        assert refused.is_error and "in about 1 minute(s)" in text_of(refused)
        clock.advance(60)
        assert (await generate(client, model=DEV)).is_error is False
        seen = await usage(client)
    assert [(row["day"], row["usd"]) for row in seen["by_day_and_model"]] == [
        ("1970-01-02", "0.012"),
        ("1970-01-01", "0.012"),
    ]


async def test_the_charge_replaces_the_estimate_and_a_failed_job_costs_nothing(
    emulator: Emulator, settings: Settings
) -> None:
    emulator.script_next(PredictionScript(price="0.02"))  # Atlas charged more than the table says
    emulator.script_next(PredictionScript(outcome="fail"))
    async with guarded(emulator, settings, budget_usd_per_day=Decimal("0.05")) as (client, _):
        charged = await generate(client, model=DEV)
        failed = await generate(client, model=DEV)
        seen = await usage(client)
    assert charged.structured_content["estimated_price"] == "0.012"
    assert charged.structured_content["price"] == "0.02"
    assert failed.is_error and "not billed" in text_of(failed)
    assert seen["spent_today_usd"] == "0.02" and seen["left_today_usd"] == "0.03"
    [row] = seen["by_day_and_model"]
    assert row["model"] == DEV and row["calls"] == 2 and row["images"] == 2 and row["estimated_calls"] == 0


async def test_a_charge_reported_later_is_recorded_by_get_prediction(
    emulator: Emulator, settings: Settings
) -> None:
    emulator.script_next(PredictionScript(price="0.006", latency=0.3))
    async with guarded(emulator, settings) as (client, _):
        started = await generate(client, wait=False)
        pid = started.structured_content["prediction_id"]
        before = await usage(client)
        later = await client.call_tool(
            "get_prediction", {"prediction_id": pid, "wait_seconds": 5, "return_image": "none"}
        )
        after = await usage(client)
    assert (
        started.structured_content["price"] is None
        and started.structured_content["estimated_price"] == "0.003"
    )
    assert "Estimated cost: $0.003" in text_of(started)
    assert before["largest_calls"][0]["charged"] is False and before["largest_calls"][0]["usd"] == "0.003"
    assert later.structured_content["price"] == "0.006"
    assert later.structured_content["estimated_price"] == "0.003"  # the ledger remembers the estimate
    assert after["largest_calls"][0] == {**before["largest_calls"][0], "usd": "0.006", "charged": True}
    assert after["by_day_and_model"][0]["estimated_calls"] == 0


async def test_budgets_survive_a_restart(emulator: Emulator, settings: Settings) -> None:
    budget = Decimal("0.03")
    async with guarded(emulator, settings, 10, budget_usd_per_day=budget) as (client, _):
        assert (await generate(client, model=DEV, num_images=2)).is_error is False  # $0.024
    async with guarded(emulator, settings, 10, budget_usd_per_day=budget) as (client, _):  # same folder
        refused = await generate(client, model=DEV)
        assert (await generate(client)).is_error is False  # $0.003 still fits
        seen = await usage(client)
    assert refused.is_error and "$0.024 is spent or reserved today" in text_of(refused)
    assert seen["spent_today_usd"] == "0.027" and seen["images_last_hour"] == 3
    assert emulator.count("POST", GENERATE) == 2


async def test_an_unknown_price_needs_a_bound_under_a_daily_budget(settings: Settings) -> None:
    emulator = Emulator(api_keys=[TEST_KEY], latency=0.05)
    emulator.inject(Fault.status(503), method="GET", path="/api/v1/models", times=100)  # built-in table
    unpriced = "black-forest-labs/flux-2-dev/text-to-image"  # no published price
    # the catalogue read is retried: Sleeps() spares the real back-off. The budget fits the bounded
    # call: an unknown price is held at max_cost_usd but at least $0.08 a picture.
    async with guarded(emulator, settings, budget_usd_per_day=Decimal("0.10"), sleep=Sleeps()) as (client, _):
        refused = await generate(client, model=unpriced)
        bounded = await generate(client, model=unpriced, max_cost_usd=0.04)
        seen = await usage(client)
    assert refused.is_error and "price of black-forest-labs/flux-2-dev/text-to-image is not known" in text_of(
        refused
    )
    assert "max_cost_usd" in text_of(refused)
    assert bounded.is_error is False and bounded.structured_content["estimated_price"] is None
    assert bounded.structured_content["price"] == "0.03"  # what the emulator charges for it
    assert seen["spent_today_usd"] == "0.03"
    assert emulator.count("POST", GENERATE) == 1


async def test_a_small_bound_does_not_shrink_what_an_unknown_price_holds_against_the_budget(
    settings: Settings,
) -> None:
    emulator = Emulator(api_keys=[TEST_KEY], latency=0.05)
    emulator.inject(Fault.status(503), method="GET", path="/api/v1/models", times=100)  # built-in table
    unpriced = "black-forest-labs/flux-2-dev/text-to-image"  # no published price
    async with guarded(emulator, settings, budget_usd_per_day=Decimal("0.05"), sleep=Sleeps()) as (client, _):
        with anyio.fail_after(30):
            tiny = [await generate(client, model=unpriced, max_cost_usd=0.001) for _ in range(3)]
        seen = await usage(client)
    for refused in tiny:
        assert refused.is_error and "$0.08" in text_of(refused), text_of(refused)  # held at the highest price
    assert seen["spent_today_usd"] == "0"
    assert emulator.count("POST", GENERATE) == 0


# --- per-user keys in hosted mode: one budget per key ---------------------------------------------


@asynccontextmanager
async def http_client(url: str, key: str | None) -> AsyncIterator[Client]:
    headers = {"X-Atlas-Api-Key": key} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10.0, read=30.0)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def test_hosted_per_user_keys_have_separate_budgets(settings: Settings) -> None:
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
            alice_usage, bob_usage = await usage(alice), await usage(bob)
        async with http_client(url, USER_A) as alice_again:  # a new session does not reset the budget
            assert (await generate(alice_again)).is_error is True
    posts = [r.headers["authorization"] for r in emulator.requests if r.method == "POST"]
    assert sorted(posts) == sorted([f"Bearer {USER_A}"] + [f"Bearer {USER_B}"] * 2)
    assert alice_usage["images"] == 2 and bob_usage["images"] == 2


# --- several processes on one ledger --------------------------------------------------------------


@pytest.mark.subprocess
async def test_two_server_processes_never_overspend_a_budget_between_them(tmp_path: Path) -> None:
    """Two ``serve --transport http`` processes share one state folder and are called at once."""
    emulator = Emulator(api_keys=[TEST_KEY], latency=0.05)
    budget, price, calls = Decimal("0.05"), Decimal("0.012"), 16
    env = child_env(
        tmp_path,
        ATLASCLOUD_API_KEY=TEST_KEY,
        ATLAS_MCP_STATE_DIR=str(tmp_path / "state"),
        ATLAS_MCP_BUDGET_USD_PER_DAY=str(budget),
        ATLAS_MCP_CONFIRM_ABOVE_USD="off",
        ATLAS_MCP_SAVE="0",
        ATLAS_MCP_LOG_LEVEL="WARNING",
    )
    with serve_app(emulator.app) as atlas:
        env["ATLASCLOUD_BASE_URL"] = atlas
        ports = [free_port(), free_port()]
        argv = [str(ENTRY_POINT), "serve", "--transport", "http", "--port"]
        with (
            serve_process([*argv, str(ports[0])], env, ports[0]),
            serve_process([*argv, str(ports[1])], env, ports[1]),
        ):
            results: list[Any] = []

            async def one(port: int) -> None:
                async with mcp_client(f"http://127.0.0.1:{port}", "streamable-http") as client:
                    results.append(await generate(client, model=DEV))

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for n in range(calls):
                        tg.start_soon(one, ports[n % 2])
                async with mcp_client(f"http://127.0.0.1:{ports[0]}", "streamable-http") as client:
                    seen = await usage(client)
    sent = emulator.count("POST", GENERATE)
    charged = sum((Decimal(p.price or "0") for p in emulator.predictions.values()), Decimal(0))
    assert charged <= budget and sent == int(budget / price) == 4  # every call that fits, none more
    assert sum(1 for r in results if not r.is_error) == sent
    refusals = [text_of(r) for r in results if r.is_error]
    assert len(refusals) == calls - sent and all("Daily budget" in text for text in refusals)
    assert Decimal(seen["spent_today_usd"]) == charged
