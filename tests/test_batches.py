"""Batches: generate_image with ``prompts`` or ``count``, through a real MCP client on the emulator.

Parallelism is shown by the emulator itself, never by a clock: each generation POST is held at the
emulator's door until all of the batch's POSTs have arrived, so a server that sent them one after
another would never get its first answer (and the test would fail at its bound).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import anyio
import pytest
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult

from atlas_image_mcp.emulator import PredictionScript

from .conftest import text_of
from .emulation import Emulator, Fault
from .test_tasks import SLOW, CreatedTask, get_task, hosted, modern, until_ended

GENERATE = "/api/v1/model/generateImage"
POLL = "/api/v1/model/prediction/*"


class Barrier:
    """The emulator's ``sleep`` for a ``Fault.delay``: a POST waits here until ``parties`` have arrived."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_in = anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.all_in.set()
        with anyio.fail_after(10):  # a server sending one POST at a time never gets here
            await self.all_in.wait()


class Person:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})


def posts(emulator: Emulator) -> list[dict[str, Any]]:
    return [r.json for r in emulator.requests if r.method == "POST" and r.path == GENERATE]


async def generate(client: Any, **arguments: Any) -> CallToolResult:
    with anyio.fail_after(30):
        return await client.call_tool("generate_image", {"prompt": "a lighthouse", **arguments})


async def test_four_prompts_are_sent_at_once_confirmed_once_and_answered_with_four_pictures(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    barrier = Barrier(4)
    emulator.sleep = barrier
    emulator.inject(Fault.delay(0), method="POST", path=GENERATE, times=4)
    person = Person()
    options = {"mode": "legacy", "elicitation_callback": person}
    async with connect(confirm_above_usd=Decimal("0.005"), client_options=options) as client:
        result = await generate(client, prompts=["a fox", "an owl", "a whale"], seed=5)
    assert result.is_error is False, text_of(result)
    assert barrier.arrived == 4
    requests = [r for r in emulator.requests if r.matches("POST", GENERATE) or r.matches("GET", POLL)]
    assert [r.method for r in requests[:4]] == ["POST"] * 4  # every POST before any poll
    assert sorted(body["prompt"] for body in posts(emulator)) == [
        "a fox",
        "a lighthouse",
        "a whale",
        "an owl",
    ]
    assert {body["seed"] for body in posts(emulator)} == {5}  # prompts compare at the same seed
    [question] = person.asked
    assert "about $0.012" in question and "4 pictures x $0.003" in question and "4 jobs" in question
    data = result.structured_content
    assert data["status"] == "completed" and data["prediction_id"] is None and len(data["outputs"]) == 4
    jobs = data["jobs"]
    assert [job["prompt"] for job in jobs] == ["a lighthouse", "a fox", "an owl", "a whale"]
    assert [job["pictures"] for job in jobs] == [[1], [2], [3], [4]]
    assert len({job["prediction_id"] for job in jobs}) == 4 and all(job["seed"] == 5 for job in jobs)
    assert data["price"] == data["estimated_price"] == "0.012"
    assert len([block for block in result.content if block.type == "image"]) == 4
    text = text_of(result)
    assert all(job["prediction_id"] in text for job in jobs) and 'Job 4 "a whale"' in text


async def test_count_runs_one_prompt_with_distinct_seeds_and_names_files_across_the_batch(
    connect: Callable[..., Any], emulator: Emulator, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    async with connect() as client:
        seeded = await generate(client, count=3, seed=10, save_as="drafts/logo.png")
        drawn = await generate(client, count=3)
    assert [body["seed"] for body in posts(emulator)[:3]] == [10, 11, 12]
    assert [job["seed"] for job in seeded.structured_content["jobs"]] == [10, 11, 12]
    assert sorted(p.name for p in (folder / "drafts").iterdir()) == ["logo-1.png", "logo-2.png", "logo-3.png"]
    assert len({body["seed"] for body in posts(emulator)[3:]}) == 3  # drawn here, distinct
    assert drawn.structured_content["prompt"] == "a lighthouse"


@pytest.mark.parametrize(
    ("limit", "words"),
    [({"budget_usd_per_day": Decimal("0.01")}, "Daily budget"), ({"max_images_per_hour": 3}, "images")],
)
async def test_a_batch_the_limits_cannot_cover_sends_nothing_and_holds_nothing(
    connect: Callable[..., Any], emulator: Emulator, limit: dict[str, Any], words: str
) -> None:
    async with connect(**limit) as client:
        refused = await generate(client, count=4)
        usage = await client.call_tool("get_usage", {})
        single = await generate(client)
    assert refused.is_error is True and words in text_of(refused)
    assert (
        usage.structured_content["spent_today_usd"] == "0"
        and usage.structured_content["images_last_hour"] == 0
    )
    assert single.is_error is False and len(posts(emulator)) == 1  # the batch sent nothing, not even part


async def test_failures_in_a_batch_are_named_with_their_ids_and_the_other_pictures_stand(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    emulator.inject(Fault.status(400), method="POST", path=GENERATE)  # one POST refused: not sent
    emulator.script_next(PredictionScript(outcome="fail", reason="NSFW content"))
    async with connect() as client:
        result = await generate(client, count=3)
        usage = await client.call_tool("get_usage", {})
    assert result.is_error is False, text_of(result)
    data = result.structured_content
    statuses = sorted(job["status"] for job in data["jobs"])
    assert statuses == ["completed", "failed", "not_sent"]
    failed = next(job for job in data["jobs"] if job["status"] == "failed")
    unsent = next(job for job in data["jobs"] if job["status"] == "not_sent")
    assert failed["prediction_id"] and "NSFW content" in failed["error"] and failed["pictures"] == []
    assert unsent["prediction_id"] is None and unsent["error"]
    assert len(data["outputs"]) == 1 and "2 of 3 jobs failed" in data["error"]
    assert failed["prediction_id"] in data["error"] and failed["prediction_id"] in text_of(result)
    # the refused POST gave its reservation back; the failed job is settled at 0
    assert usage.structured_content["images_last_hour"] == 2


async def test_a_batch_that_made_no_picture_is_an_error_that_still_names_every_id(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    for _ in range(2):
        emulator.script_next(PredictionScript(outcome="fail", reason="overloaded"))
    async with connect() as client:
        result = await generate(client, count=2)
    assert result.is_error is True
    ids = [job["prediction_id"] for job in result.structured_content["jobs"]]
    assert len(ids) == 2 and all(pid and pid in text_of(result) for pid in ids)


async def test_a_dry_run_of_a_batch_sends_nothing_and_lists_its_jobs(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    async with connect() as client:
        result = await generate(client, prompts=["a fox"], count=2, seed=1, dry_run=True)
        too_many = await generate(client, prompts=["a", "b", "c"], count=3)
    data = result.structured_content
    assert data["status"] == "dry_run" and [(j["prompt"], j["seed"]) for j in data["jobs"]] == [
        ("a lighthouse", 1), ("a lighthouse", 2), ("a fox", 1), ("a fox", 2)
    ]  # fmt: skip
    assert "Estimated cost: $0.012" in text_of(result)
    assert too_many.is_error is True and "make 12 jobs; a batch runs at most 8" in text_of(too_many)
    assert emulator.requests == [] or posts(emulator) == []


async def test_a_single_call_keeps_its_result_shape(connect: Callable[..., Any]) -> None:
    async with connect() as client:
        result = await generate(client)
    assert "jobs" not in result.structured_content
    assert all("file" not in out for out in result.structured_content["outputs"])


async def test_the_gallery_shows_a_batch_as_one_group(connect: Callable[..., Any]) -> None:
    async with connect() as client:
        batch = await generate(client, count=2)
        await generate(client)
        gallery = await client.call_tool("show_gallery", {})
    pictures = gallery.structured_content["pictures"]
    ids = {job["prediction_id"] for job in batch.structured_content["jobs"]}
    grouped = [p for p in pictures if p["prediction_id"] in ids]
    assert len(grouped) == 2 and grouped[0]["batch"] and grouped[0]["batch"] == grouped[1]["batch"]
    assert [p for p in pictures if p["prediction_id"] not in ids][0]["batch"] is None


# --- a batch as one task ------------------------------------------------------------------------------


@pytest.fixture
def slow(clock: Any) -> Emulator:
    from .conftest import TEST_KEY

    return Emulator(api_keys=[TEST_KEY], latency=SLOW, clock=clock)


async def test_a_batch_is_one_task_that_survives_a_restart(slow: Emulator, clock: Any) -> None:
    secret = "task-secret-0123456789-abcdefghij"
    picture = {"prompt": "a fox", "prompts": ["an owl"], "width": 512, "height": 512}
    with hosted(slow, task_secret=secret) as first:
        async with modern(first) as client:
            with anyio.fail_after(30):
                created = await client.session.call_tool("generate_image", picture, allow_claimed=True)
                assert isinstance(created, CreatedTask), created
                working = await get_task(client.session, created.task_id)
    ids = list(slow.predictions)
    assert len(ids) == 2 and all(pid in working["statusMessage"] for pid in ids)
    clock.advance(SLOW)
    with hosted(slow, task_secret=secret) as second:
        async with modern(second) as client:
            with anyio.fail_after(30):
                done = await until_ended(client.session, created.task_id)
    assert done["status"] == "completed", done
    result = CallToolResult.model_validate(done["result"])
    data = result.structured_content or {}
    assert sorted(job["prediction_id"] for job in data["jobs"]) == sorted(ids)
    assert len(data["outputs"]) == 2 and data["status"] == "completed"


async def test_a_batch_not_waited_for_answers_processing_with_each_running_job_to_collect(
    connect: Callable[..., Any], emulator: Emulator
) -> None:
    for _ in range(2):
        emulator.script_next(PredictionScript(latency=60))
    async with connect() as client:
        result = await generate(client, count=2, wait=False)
    assert result.is_error is False and result.structured_content["status"] == "processing"
    ids = [job["prediction_id"] for job in result.structured_content["jobs"]]
    assert all(pid in result.structured_content["next_step"] for pid in ids) and "get_prediction" in text_of(
        result
    )


async def test_a_batch_reports_progress_in_jobs_done(connect: Callable[..., Any]) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect() as client:
        with anyio.fail_after(30):
            result = await client.call_tool(
                "generate_image", {"prompt": "a fox", "count": 3}, progress_callback=on_progress
            )
    assert result.is_error is False
    assert seen and all(total == 3 for _, total, _ in seen)
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)
    assert seen[-1][0] == 3 and "3 of 3 jobs done" in (seen[-1][2] or "")
