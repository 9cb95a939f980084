"""PollSchedule and AtlasClient.wait(): when polls happen, what is learned, and how many there are.

A fake clock moves only when the client sleeps, and a fake Atlas answers "completed" once the
prediction's duration has passed on that clock, reporting it as ``latency_ms`` like Atlas does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import anyio
import httpx
import pytest

from atlas_image_mcp.client import AtlasClient
from atlas_image_mcp.models import Prediction
from atlas_image_mcp.polling import PollSchedule

PID = "8ba2926c6bd642049f4d17dd68ea6785"
SCHNELL = "black-forest-labs/flux-schnell"
DEV = "black-forest-labs/flux-dev"


@dataclass
class FakeAtlas:
    """Atlas on a fake clock: a prediction of ``duration`` seconds, polls recorded with their time."""

    now: float = 1000.0
    started: float = 1000.0
    duration: float = 1.0
    model: str = SCHNELL
    timing: str = "latency_ms"  # latency_ms | timestamps | none
    polls: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def submit(self, duration: float, model: str | None = None) -> Prediction:
        self.started, self.duration, self.polls = self.now, duration, []
        self.model = model or self.model
        return Prediction(id=PID, status="created", model=self.model)

    def handler(self, request: httpx.Request) -> httpx.Response:
        age = self.now - self.started
        self.polls.append(age)
        data: dict = {"id": PID, "model": self.model, "status": "processing", "outputs": None, "error": ""}
        if age >= self.duration:
            data.update(status="completed", outputs=["https://cdn.test/0.jpeg"])
            if self.timing == "latency_ms":
                data["latency_ms"] = round(self.duration * 1000)
            elif self.timing == "timestamps":
                data["created_at"] = "2026-08-10T12:00:00.000Z"
                data["completed_at"] = f"2026-08-10T12:00:{self.duration:06.3f}Z"
        return httpx.Response(200, json={"code": 200, "message": "", "data": data})

    def client(self, schedule: PollSchedule | None = None) -> AtlasClient:
        return AtlasClient(
            api_key="k",
            base_url="https://api.test",
            transport=httpx.MockTransport(self.handler),
            sleep=self.sleep,
            clock=self.clock,
            rng=lambda: 0.5,
            poll_schedule=schedule or PollSchedule(rng=lambda: 0.5),
        )

    async def run(
        self, client: AtlasClient, duration: float, *, model: str | None = None, max_wait: float = 60.0
    ):
        first = self.submit(duration, model)
        result = await client.wait(PID, max_wait, first=first)
        return result, len(self.polls), self.now - self.started - duration


async def test_a_model_seen_once_is_then_polled_twice_and_detected_at_once() -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        result, cold_polls, _ = await atlas.run(client, 1.0)
        assert result.status == "completed"
        assert cold_polls == 5  # 0.24, 0.48, 0.72, 0.96, 1.2 on the cold schedule
        for _ in range(3):
            result, polls, late = await atlas.run(client, 1.0)
            assert result.status == "completed"
            assert atlas.polls == [pytest.approx(0.5), pytest.approx(1.0)]  # half-way, then right at 1 s
            assert late == pytest.approx(0.0)


@pytest.mark.parametrize("duration", [0.3, 1.0, 2.0, 4.9])
async def test_anything_under_five_seconds_is_seen_within_250_ms_on_the_cold_schedule(
    duration: float,
) -> None:
    for rng in (0.0, 0.5, 1.0):
        atlas = FakeAtlas()
        async with atlas.client(PollSchedule(rng=lambda r=rng: r)) as client:
            result, _, late = await atlas.run(client, duration)
        assert result.status == "completed"
        assert 0 <= late <= 0.25 + 1e-9


@pytest.mark.parametrize("duration", [0.8, 1.0, 1.7, 2.4, 3.0])
async def test_a_learned_fast_model_is_still_seen_within_250_ms_when_it_runs_slower(duration: float) -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        for seen in (0.8, 1.2, 1.0, 1.5):
            await atlas.run(client, seen)
        _, _, late = await atlas.run(client, duration)
    assert 0 <= late <= 0.25 + 1e-9


async def test_a_30_second_prediction_takes_at_most_12_polls_once_the_model_is_known() -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        _, cold_polls, _ = await atlas.run(client, 30.0)
        _, polls, late = await atlas.run(client, 30.0)
        _, polls_again, _ = await atlas.run(client, 31.0)  # a bit slower than last time
    assert cold_polls > 12  # the cold schedule cannot know: 250 ms polls for the first 5 s
    assert polls <= 12 and polls_again <= 12
    assert late == pytest.approx(0.0)
    assert all(later - earlier <= 5.0 + 1e-9 for earlier, later in pairwise(atlas.polls))


async def test_a_job_faster_than_any_recent_one_is_caught_within_half_the_fastest() -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        await atlas.run(client, 4.0)
        await atlas.run(client, 4.0)
        _, _, late = await atlas.run(client, 0.5)
    assert late <= 4.0 / 2


async def test_a_job_much_slower_than_recent_ones_is_polled_at_most_max_interval_apart() -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        await atlas.run(client, 1.0)
        result, polls, _ = await atlas.run(client, 40.0)
    assert result.status == "completed"
    gaps = [later - earlier for earlier, later in pairwise(atlas.polls)]
    assert max(gaps) <= 5.0 + 1e-9
    # past the fastest recent run (1 s), the cold schedule's 250 ms promise holds until 5 s
    assert all(g <= 0.25 + 1e-9 for g, at in zip(gaps, atlas.polls[1:], strict=True) if 1.0 < at < 5.0)


async def test_durations_are_learned_per_model() -> None:
    atlas = FakeAtlas()
    schedule = PollSchedule(rng=lambda: 0.5)
    async with atlas.client(schedule) as client:
        await atlas.run(client, 1.0, model=SCHNELL)
        await atlas.run(client, 20.0, model=DEV)
    assert schedule.expected(SCHNELL) == (pytest.approx(1.0), pytest.approx(1.0))
    assert schedule.expected(DEV) == (pytest.approx(20.0), pytest.approx(20.0))
    assert schedule.expected("other/model") is None


@pytest.mark.parametrize("timing", ["timestamps", "none"])
async def test_without_latency_ms_the_duration_comes_from_timestamps_or_the_polls(timing: str) -> None:
    atlas = FakeAtlas(timing=timing)
    schedule = PollSchedule(rng=lambda: 0.5)
    async with atlas.client(schedule) as client:
        await atlas.run(client, 2.1)
    lo, hi = schedule.expected(SCHNELL) or (0, 0)
    if timing == "timestamps":
        assert lo == hi == pytest.approx(2.1)
    else:  # between the last poll that saw it running (2.0) and the one that saw it done (2.25)
        assert 2.0 <= lo == hi <= 2.25


async def test_one_outlier_does_not_widen_the_window_once_there_are_four_samples() -> None:
    schedule = PollSchedule()
    for seconds in (1.0, 1.1, 0.9, 30.0):
        schedule.observe(SCHNELL, seconds)
    assert schedule.expected(SCHNELL) == (0.9, 1.1)


def test_history_and_the_number_of_models_are_bounded() -> None:
    schedule = PollSchedule(history=3)
    for seconds in (5.0, 1.0, 2.0, 3.0):
        schedule.observe(SCHNELL, seconds)
    assert schedule.expected(SCHNELL) == (1.0, 3.0)  # 5.0 was dropped
    for n in range(200):
        schedule.observe(f"model/{n}", 1.0)
    assert schedule.expected("model/199") is not None
    assert schedule.expected("model/0") is None


async def test_learn_false_keeps_the_cold_schedule() -> None:
    atlas = FakeAtlas()
    async with atlas.client(PollSchedule(learn=False, rng=lambda: 0.5)) as client:
        await atlas.run(client, 1.0)
        _, polls, _ = await atlas.run(client, 1.0)
    assert polls == 5


async def test_the_model_is_learned_from_the_first_poll_when_the_wait_starts_without_a_state() -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        await atlas.run(client, 2.0)
        atlas.submit(2.0)
        result = await client.wait(PID, 60)
    assert result.status == "completed"
    assert atlas.polls[0] == pytest.approx(0.24)  # cold until the first answer names the model
    assert atlas.polls[-1] == pytest.approx(2.0)
    assert len(atlas.polls) <= 4


async def test_a_learned_plan_still_stops_at_the_deadline_with_the_last_state() -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        await atlas.run(client, 30.0)
        result, _, _ = await atlas.run(client, 30.0, max_wait=12.0)
    assert result.status == "processing"
    assert atlas.now - atlas.started == pytest.approx(12.0)


async def test_views_with_another_key_share_what_was_learned() -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        await atlas.run(client, 1.0)
        _, polls, _ = await atlas.run(client.with_api_key("other-key"), 1.0)
    assert polls == 2


async def test_requests_in_flight_never_exceed_the_connection_limit() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={"code": 200, "data": {"id": PID, "status": "processing"}})

    limits = httpx.Limits(max_connections=3, max_keepalive_connections=3)
    async with AtlasClient(
        api_key="k", base_url="https://api.test", transport=httpx.MockTransport(handler), limits=limits
    ) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(client.get_prediction, PID)
    assert peak == 3
