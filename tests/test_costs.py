"""The price of every call, and the person's go-ahead above a threshold.

Through real MCP clients against the emulator: the SDK's in-memory client in both protocol eras
(``legacy`` negotiates 2025-11-25 and elicits with ``elicitation/create`` during the call;
``2026-07-28`` gets ``input_required`` and calls again with the answer), and over streamable HTTP
where the era and the transport decide whether the person can be asked at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.extension import ClaimContext
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult

from atlas_image_mcp.emulator import PredictionScript
from atlas_image_mcp.http import create_http_app
from atlas_image_mcp.runtime import Runtime
from atlas_image_mcp.server import make_server
from atlas_image_mcp.settings import Settings

from .conftest import TEST_KEY, Sleeps, make_api, text_of
from .emulation import Emulator, Fault
from .http_helpers import RawSession, mcp_transport, serve_app
from .test_tasks import CreatedTask, TasksClient, hosted_runtime

pytestmark = pytest.mark.timeout(60)

GENERATE = "/api/v1/model/generateImage"
DEV = "black-forest-labs/flux-dev"  # $0.012 a picture
#: 4 x $0.012 = $0.048: above the 0.01 threshold the tests set, below the hosted default of 0.10.
EXPENSIVE = {
    "prompt": "a fox in the snow",
    "model": DEV,
    "num_images": 4,
    "width": 512,
    "height": 512,
    "return_image": "none",
    "save": False,
}
CHEAP = {**EXPENSIVE, "model": "black-forest-labs/flux-schnell", "num_images": 1}  # $0.003
ERAS = ("legacy", "2026-07-28")
ERA_VERSIONS = {"legacy": "2025-11-25", "2026-07-28": "2026-07-28"}
THRESHOLD = "0.01"


class Person:
    """An elicitation callback that answers like a person would, and remembers what it was asked."""

    def __init__(self, action: str = "accept", content: dict[str, Any] | None = None) -> None:
        self.action = action
        self.content = {"confirm": True} if content is None and action == "accept" else content
        self.asked: list[ElicitRequestParams] = []

    async def __call__(self, ctx: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params)
        return ElicitResult(action=self.action, content=self.content)  # type: ignore[arg-type]

    @property
    def messages(self) -> list[str]:
        return [p.message for p in self.asked]


async def call(client: Client, tool: str = "generate_image", **arguments: Any) -> CallToolResult:
    with anyio.fail_after(20):
        return await client.call_tool(tool, arguments)


# --- a call over the threshold ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_an_accepting_person_gets_the_call_sent_exactly_once(
    connect: Callable[..., Any], emulator: Emulator, mode: str
) -> None:
    person = Person("accept")
    options = {"mode": mode, "elicitation_callback": person}
    async with connect(confirm_above_usd=THRESHOLD, client_options=options) as client:
        result = await call(client, **EXPENSIVE)
        version = client.protocol_version
    assert version == ERA_VERSIONS[mode]
    assert result.is_error is False and result.structured_content["status"] == "completed"
    assert result.structured_content["estimated_price"] == "0.048"
    assert result.structured_content["price"] == "0.048" and "Cost: $0.048" in text_of(result)
    [message] = person.messages
    assert "about $0.048" in message and "4 pictures x $0.012 with black-forest-labs/flux-dev" in message
    assert "$0.01" in message
    schema = person.asked[0].requested_schema  # type: ignore[union-attr]
    assert schema["properties"]["confirm"]["type"] == "boolean"
    assert emulator.count("POST", GENERATE) == 1


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_a_declining_person_gets_nothing_sent_and_is_told_so(
    connect: Callable[..., Any], emulator: Emulator, mode: str, action: str
) -> None:
    person = Person(action)
    options = {"mode": mode, "elicitation_callback": person}
    async with connect(confirm_above_usd=THRESHOLD, client_options=options) as client:
        result = await call(client, **EXPENSIVE)
    assert result.is_error is False
    structured = result.structured_content
    assert structured["status"] == "declined" and structured["prediction_id"] is None
    assert structured["estimated_price"] == "0.048" and structured["price"] is None
    text = text_of(result)
    assert "Not sent" in text and "Nothing was sent or billed" in text and "about $0.048" in text
    assert ("cancelled the question" if action == "cancel" else "declined") in text
    assert len(person.asked) == 1
    assert emulator.count("POST", GENERATE) == 0


@pytest.mark.parametrize("mode", ERAS)
async def test_accepting_the_form_but_unticking_confirm_sends_nothing(
    connect: Callable[..., Any], emulator: Emulator, mode: str
) -> None:
    person = Person("accept", {"confirm": False})
    async with connect(
        confirm_above_usd=THRESHOLD, client_options={"mode": mode, "elicitation_callback": person}
    ) as client:
        result = await call(client, **EXPENSIVE)
    assert result.structured_content["status"] == "declined" and "did not confirm" in text_of(result)
    assert emulator.count("POST", GENERATE) == 0


@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_that_cannot_ask_gets_the_cost_and_how_to_confirm(
    connect: Callable[..., Any], emulator: Emulator, mode: str
) -> None:
    async with connect(confirm_above_usd=THRESHOLD, client_options={"mode": mode}) as client:
        result = await call(client, **EXPENSIVE)
        too_low = await call(client, **EXPENSIVE, max_cost_usd=0.04)
        assert emulator.count("POST", GENERATE) == 0  # nothing sent so far
        confirmed = await call(client, **EXPENSIVE, max_cost_usd=0.048)
    structured = result.structured_content
    assert result.is_error is False and structured["status"] == "confirmation_required"
    assert structured["prediction_id"] is None and structured["estimated_price"] == "0.048"
    text = text_of(result)
    assert "about $0.048" in text and "confirms calls above $0.01" in text and "cannot ask" in text
    assert "Nothing was sent or billed" in text and "max_cost_usd=0.048" in text
    assert too_low.is_error and "max_cost_usd" in text_of(too_low) and "$0.048" in text_of(too_low)
    assert confirmed.is_error is False and confirmed.structured_content["status"] == "completed"
    assert emulator.count("POST", GENERATE) == 1


@pytest.mark.parametrize("mode", ERAS)
async def test_at_or_below_the_threshold_nobody_is_asked(
    connect: Callable[..., Any], emulator: Emulator, mode: str
) -> None:
    person = Person("decline")
    options = {"mode": mode, "elicitation_callback": person}
    async with connect(confirm_above_usd="0.048", client_options=options) as client:
        cheap = await call(client, **CHEAP)
        exactly = await call(client, **EXPENSIVE)  # $0.048 is not above $0.048
    assert person.asked == []
    assert cheap.structured_content["estimated_price"] == "0.003" and exactly.is_error is False
    assert emulator.count("POST", GENERATE) == 2


async def test_a_person_who_can_be_asked_is_asked_even_when_the_assistant_names_a_bound(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    person = Person("decline")
    async with connect(
        confirm_above_usd=THRESHOLD, client_options={"elicitation_callback": person}
    ) as client:
        result = await call(client, **EXPENSIVE, max_cost_usd=1)
    assert len(person.asked) == 1 and result.structured_content["status"] == "declined"
    assert emulator.count("POST", GENERATE) == 0


async def test_off_by_default_over_stdio_and_every_result_carries_both_prices(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    person = Person("decline")
    async with connect(client_options={"elicitation_callback": person}) as client:
        result = await call(client, **EXPENSIVE)
    assert person.asked == [] and result.structured_content["status"] == "completed"
    assert result.structured_content["estimated_price"] == "0.048"
    assert result.structured_content["price"] == "0.048"


@pytest.mark.parametrize("tool", ["edit_image", "generate_variations"])
async def test_edits_and_variations_are_priced_and_confirmed_the_same_way(
    connect: Callable[..., Any], emulator: Emulator, tool: str
) -> None:
    person = Person("decline")
    async with connect(client_options={"elicitation_callback": person}) as client:
        first = await call(client, **CHEAP)
        pid = first.structured_content["prediction_id"]
    arguments: dict[str, Any] = (
        {"prompt": "make it night", "image": pid, "num_images": 2, "return_image": "none", "save": False}
        if tool == "edit_image"
        else {"prediction_id": pid, "count": 2, "return_image": "none", "save": False}
    )
    async with connect(confirm_above_usd="0.005", client_options={"elicitation_callback": person}) as client:
        priced = await call(client, tool, **arguments, dry_run=True)
        declined = await call(client, tool, **arguments)
    estimate = priced.structured_content["estimated_price"]
    assert estimate is not None and Decimal(estimate) > Decimal("0.005")
    assert f"Estimated cost: ${estimate}" in text_of(priced) and "the person will be asked first" in text_of(
        priced
    )
    assert declined.structured_content["status"] == "declined"
    assert declined.structured_content["estimated_price"] == estimate
    assert len(person.asked) == 1 and f"about ${estimate}" in person.messages[0]
    assert emulator.count("POST", GENERATE) == 1  # only the first picture
    assert emulator.count("POST", "/api/v1/model/uploadMedia") == 0  # nothing uploaded before asking


# --- the price in every result ------------------------------------------------------------------------


async def test_the_result_reports_the_charge_atlas_returns(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    emulator.script_next(PredictionScript(price="0.0123"))
    async with connect() as client:
        result = await call(client, **CHEAP)
    assert result.structured_content["price"] == "0.0123" and "Cost: $0.0123" in text_of(result)
    assert result.structured_content["estimated_price"] == "0.003"


async def test_no_charge_is_invented_when_atlas_reports_none(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    emulator.script_next(PredictionScript(price=None))
    async with connect() as client:
        result = await call(client, **CHEAP)
    assert result.is_error is False and result.structured_content["price"] is None
    assert result.structured_content["estimated_price"] == "0.003"
    assert "Cost:" not in text_of(result)
    assert "Estimated cost: $0.003 (Atlas reports the charge when it is known)" in text_of(result)


# --- dry runs and unknown prices ---------------------------------------------------------------------


async def test_dry_run_fills_the_text_and_the_structured_estimate(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    async with connect() as client:
        result = await call(client, prompt="fox", model=DEV, num_images=3, dry_run=True)
    assert result.structured_content["status"] == "dry_run"
    assert result.structured_content["estimated_price"] == "0.036"
    assert result.structured_content["price"] is None  # nothing is charged for a dry run
    assert "Estimated cost: $0.036 (3 pictures x $0.012 with black-forest-labs/flux-dev)" in text_of(result)
    assert emulator.count("POST") == 0


@pytest.fixture
def unpriced_emulator() -> Emulator:
    """The emulator with its catalogue unreadable: the server falls back to the built-in table."""
    emulator = Emulator(api_keys=[TEST_KEY], latency=0.05)
    emulator.inject(Fault.status(503), method="GET", path="/api/v1/models", times=1000)
    return emulator


UNPRICED = {**CHEAP, "model": "black-forest-labs/flux-2-dev/text-to-image"}  # no published price


async def test_an_unknown_price_is_said_in_words_and_needs_confirmation(
    settings: Settings, unpriced_emulator: Emulator
) -> None:
    person = Person("accept")
    runtime = Runtime.create(
        settings.replace(confirm_above_usd=Decimal("5"), save=False),
        client=make_api(unpriced_emulator, sleep=Sleeps()),  # its catalogue read is retried: no real back-off
    )
    try:
        async with Client(make_server(runtime)) as cannot_ask:
            dry = await call(cannot_ask, **UNPRICED, dry_run=True)
            unconfirmed = await call(cannot_ask, **UNPRICED)
        async with Client(make_server(runtime), elicitation_callback=person) as can_ask:
            accepted = await call(can_ask, **UNPRICED)
    finally:
        await runtime.aclose()
    assert dry.structured_content["estimated_price"] is None
    assert "Estimated cost: unknown (no price is known for" in text_of(dry)
    assert unconfirmed.structured_content["status"] == "confirmation_required"
    assert "an unknown amount" in text_of(unconfirmed) and "max_cost_usd set to the most" in text_of(
        unconfirmed
    )
    [question] = person.messages
    assert "does not know" in question and "cannot be shown before it runs" in question
    assert accepted.structured_content["estimated_price"] is None
    assert accepted.structured_content["price"] == "0.03"  # Atlas' charge, reported after the job
    assert unpriced_emulator.count("POST", GENERATE) == 1


async def test_a_bound_of_zero_is_refused_for_a_call_that_costs_money(
    settings: Settings, unpriced_emulator: Emulator
) -> None:
    runtime = Runtime.create(settings.replace(save=False), client=make_api(unpriced_emulator, sleep=Sleeps()))
    try:
        async with Client(make_server(runtime)) as client:
            unknown = await call(client, **UNPRICED, max_cost_usd=0)
            priced = await call(client, **CHEAP, max_cost_usd=0)
            dry = await call(client, **UNPRICED, max_cost_usd=0, dry_run=True)
    finally:
        await runtime.aclose()
    assert unknown.is_error and "max_cost_usd" in text_of(unknown) and "Nothing was sent" in text_of(unknown)
    assert priced.is_error and "max_cost_usd" in text_of(priced)
    assert dry.is_error is False and dry.structured_content["status"] == "dry_run"  # sends nothing anyway
    assert unpriced_emulator.count("POST", GENERATE) == 0


async def test_over_http_a_bound_does_not_confirm_an_unknown_price_for_a_client_that_cannot_ask(
    unpriced_emulator: Emulator,
) -> None:
    settings = Settings(api_key=TEST_KEY, wait_seconds=20, save=False)
    runtime = Runtime.create(settings, client=make_api(unpriced_emulator, sleep=Sleeps()), remote=True)
    person = Person("accept")
    with serve_app(create_http_app(runtime)) as base:
        async with over_http(base, "legacy") as cannot_ask:
            bounded = await call(cannot_ask, **UNPRICED, max_cost_usd=1)
        async with over_http(base, "legacy", elicitation_callback=person) as can_ask:
            asked = await call(can_ask, **UNPRICED, max_cost_usd=1)
    assert bounded.structured_content["status"] == "confirmation_required", text_of(bounded)
    assert "max_cost_usd" not in text_of(bounded) and "unknown" in text_of(bounded)
    assert len(person.asked) == 1 and asked.structured_content["status"] == "completed"
    assert unpriced_emulator.count("POST", GENERATE) == 1  # only the call the person confirmed


# --- over HTTP: the hosted default, stateless sessions, and MCP tasks --------------------------------


@asynccontextmanager
async def over_http(base: str, mode: str, **options: Any) -> AsyncIterator[Client]:
    transport = mcp_transport(base, "streamable-http")
    async with Client(transport, mode=mode, read_timeout_seconds=30, **options) as client:
        yield client


async def test_hosted_servers_confirm_above_ten_cents_by_default(emulator: Emulator) -> None:
    person = Person("decline")
    premium = {
        **EXPENSIVE,
        "model": "black-forest-labs/flux-kontext-pro/text-to-image",
        "aspect_ratio": "1:1",
    }
    premium.pop("width"), premium.pop("height")
    with serve_app(create_http_app(hosted_runtime(emulator, save=False))) as base:
        async with over_http(base, "2026-07-28", elicitation_callback=person) as client:
            dev = await call(client, **EXPENSIVE)  # $0.048: below $0.10
            pro = await call(client, **premium)  # 4 x $0.04 = $0.16
    assert dev.structured_content["status"] == "completed"
    assert (
        pro.structured_content["status"] == "declined" and pro.structured_content["estimated_price"] == "0.16"
    )
    [message] = person.messages
    assert "about $0.16" in message and "$0.10" in message
    assert emulator.count("POST", GENERATE) == 1


async def test_stateless_http_asks_2026_clients_and_tells_older_ones_how_to_confirm(
    emulator: Emulator,
) -> None:
    runtime = hosted_runtime(emulator, save=False, confirm_above_usd=Decimal(THRESHOLD))
    with serve_app(create_http_app(runtime, stateless=True)) as base:
        modern_person, legacy_person = Person("accept"), Person("accept")
        async with over_http(base, "2026-07-28", elicitation_callback=modern_person) as modern:
            sent = await call(modern, **EXPENSIVE)
        async with over_http(base, "legacy", elicitation_callback=legacy_person) as legacy:
            unconfirmed = await call(legacy, **EXPENSIVE)  # no channel for a question mid-call
    assert sent.structured_content["status"] == "completed" and len(modern_person.asked) == 1
    assert unconfirmed.structured_content["status"] == "confirmation_required" and legacy_person.asked == []
    assert "max_cost_usd=0.048" in text_of(unconfirmed)
    assert emulator.count("POST", GENERATE) == 1


class RecordingTasksClient(TasksClient):
    """The tasks extension, noting each task the server created."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def claims(self) -> list[Any]:
        [claim] = super().claims()
        inner = claim.resolve

        async def resolve(created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
            self.created.append(created.task_id)
            return await inner(created, ctx)

        return [type(claim)(result_type=claim.result_type, model=claim.model, resolve=resolve)]


@pytest.mark.parametrize("action", ["accept", "decline"])
async def test_with_tasks_the_person_is_asked_before_the_task_exists(emulator: Emulator, action: str) -> None:
    person, tasks = Person(action), RecordingTasksClient()
    runtime = hosted_runtime(emulator, save=False, confirm_above_usd=Decimal(THRESHOLD))
    with serve_app(create_http_app(runtime)) as base:
        async with over_http(base, "2026-07-28", elicitation_callback=person, extensions=[tasks]) as client:
            result = await call(client, **EXPENSIVE)
    assert len(person.asked) == 1
    if action == "accept":  # confirmed in the call, then a task once Atlas accepted the job
        assert len(tasks.created) == 1 and result.structured_content["status"] == "completed"
        assert emulator.count("POST", GENERATE) == 1
    else:  # declined: no task, no job
        assert tasks.created == [] and result.structured_content["status"] == "declined"
        assert emulator.count("POST", GENERATE) == 0


async def test_vscode_style_2025_tasks_ask_the_person_in_the_call_then_become_a_task(
    emulator: Emulator,
) -> None:
    """The 2025-11-25 form: ``params.task`` on ``tools/call``; the question comes on the call's stream."""
    asked: list[dict[str, Any]] = []

    def accept(params: dict[str, Any]) -> dict[str, Any]:
        asked.append(params)
        return {"action": "accept", "content": {"confirm": True}}

    runtime = hosted_runtime(emulator, save=False, confirm_above_usd=Decimal(THRESHOLD))
    with serve_app(create_http_app(runtime)) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            session = RawSession(http, f"{base}/mcp")
            with anyio.fail_after(30):
                await session.open(capabilities={"elicitation": {}})
                created = await session.call_answering(
                    accept, "tools/call", name="generate_image", arguments=EXPENSIVE, task={}
                )
                task = created["result"]["task"]
                result = (await session.call("tasks/result", taskId=task["taskId"]))["result"]
    [question] = asked
    assert "about $0.048" in question["message"] and question["requestedSchema"]["type"] == "object"
    assert result["structuredContent"]["status"] == "completed"
    assert result["structuredContent"]["estimated_price"] == "0.048"
    assert emulator.count("POST", GENERATE) == 1


async def test_with_a_shared_task_secret_another_replica_takes_the_answer(emulator: Emulator) -> None:
    """2026-07-28: the question from one stateless replica, the answer to another with the same secret."""
    secret = {"task_secret": "task-secret-0123456789-abcdefghij", "confirm_above_usd": Decimal(THRESHOLD)}
    first, second = (hosted_runtime(emulator, save=False, **secret) for _ in range(2))
    with (
        serve_app(create_http_app(first, stateless=True)) as a,
        serve_app(create_http_app(second, stateless=True)) as b,
    ):
        options = {"elicitation_callback": Person("accept")}
        async with (
            over_http(a, "2026-07-28", **options) as on_a,
            over_http(b, "2026-07-28", **options) as on_b,
        ):
            with anyio.fail_after(20):
                asked = await on_a.session.call_tool("generate_image", EXPENSIVE, allow_input_required=True)
                [key] = asked.input_requests  # type: ignore[union-attr]
                result = await on_b.session.call_tool(
                    "generate_image",
                    EXPENSIVE,
                    allow_input_required=True,
                    input_responses={key: ElicitResult(action="accept", content={"confirm": True})},
                    request_state=asked.request_state,  # type: ignore[union-attr]
                )
    assert isinstance(result, CallToolResult) and result.structured_content["status"] == "completed"
    assert emulator.count("POST", GENERATE) == 1


async def test_a_tampered_confirmation_is_refused(connect: Callable[..., Any], emulator: Emulator) -> None:
    """The 2026 answer rides a sealed requestState: a client cannot forge a confirmation."""
    options = {"mode": "2026-07-28", "elicitation_callback": Person("accept")}
    async with connect(confirm_above_usd=THRESHOLD, client_options=options) as client:
        with anyio.fail_after(20):
            first = await client.session.call_tool("generate_image", EXPENSIVE, allow_input_required=True)
        assert getattr(first, "result_type", None) == "input_required"
        [key] = first.input_requests
        accept = ElicitResult(action="accept", content={"confirm": True})
        with pytest.raises(MCPError) as refused, anyio.fail_after(20):
            await client.session.call_tool(
                "generate_image",
                EXPENSIVE,
                allow_input_required=True,
                input_responses={key: accept},
                request_state="v1.forged",
            )
    assert refused.value.error.code == -32602
    assert emulator.count("POST", GENERATE) == 0
