"""PollSchedule and AtlasClient.wait(): when polls happen, what is learned, and how many there are.

The first part proves the schedule's promises on the plan alone (pure, a fake clock that moves
only when the plan says so), for durations chosen to hurt it: every gap keeps the rule (at most
0.3 s for the first 10 s, at most 10% of the time waited after), so detection is bounded for
any duration, cold or learned, whatever was learned; and the polls stay within one of a plain
fixed 300 ms schedule's. The second part checks the same through ``AtlasClient.wait`` against a
fake Atlas that answers "completed" once the prediction's duration has passed on the fake clock,
reporting it as ``latency_ms`` like Atlas does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from itertools import pairwise

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas_image_mcp.client import AtlasClient
from atlas_image_mcp.models import Prediction
from atlas_image_mcp.polling import PollPlan, PollSchedule

from .conftest import atlas_client

PID = "8ba2926c6bd642049f4d17dd68ea6785"
SCHNELL = "black-forest-labs/flux-schnell"
DEV = "black-forest-labs/flux-dev"
EPS = 1e-6


# --- the plan alone -------------------------------------------------------------------------------


def detect(
    plan: PollPlan, duration: float, late: list[float] | None = None
) -> tuple[float, int, list[float]]:
    """Run one wait on a fake clock: (detection delay, polls, poll times) for a job of ``duration``.

    ``late``: how long each poll takes to come back (cycled), so later polls may start late.
    """
    now, polls = 0.0, []
    while True:
        now += plan.next_delay(now)
        polls.append(now)
        if now >= duration - EPS:
            return now - duration, len(polls), polls
        if late:
            now += late[len(polls) % len(late)]


def bound(duration: float) -> float:
    """How late the end of one job may be seen: 0.3 s up to 10 s, 10% of the duration beyond."""
    return 0.3 if duration <= 10 else 0.1 * duration


def learned(durations: list[float], **kw: float) -> PollSchedule:
    schedule = PollSchedule(**kw)  # type: ignore[arg-type]
    for d in durations:
        schedule.observe(SCHNELL, d)
    return schedule


def test_the_cold_plan_is_the_fixed_300_ms_grid_then_gaps_of_10_percent() -> None:
    times = []
    due = PollSchedule().plan(None).due_times()
    while not times or times[-1] < 20:
        times.append(next(due))
    assert times[:34] == pytest.approx([0.3 * k for k in range(1, 35)])  # 0.3 ... 10.2
    assert all(b - a == pytest.approx(0.1 * a) for a, b in pairwise(times[33:]))


@pytest.mark.parametrize(
    "duration", [0.01, 0.3, 0.31, 1.0, 2.95, 4.99, 7.3, 9.99, 10.0, 10.01, 30, 123.4, 599]
)
def test_cold_detection_and_polls_match_the_fixed_schedule_up_to_10_s(duration: float) -> None:
    schedule = PollSchedule()
    late, polls, _ = detect(schedule.plan(SCHNELL), duration)
    assert -EPS <= late <= bound(duration) + EPS
    if duration <= 10:
        assert polls == schedule.fixed_polls(duration)
    else:  # fewer past 10 s, where the gaps grow: 46 instead of 100 at 30 s
        assert polls <= schedule.fixed_polls(duration) - (duration > 11) * (duration - 10) * 2


HISTORIES = st.lists(
    st.one_of(
        st.floats(0.001, 12.0),
        st.floats(0.001, 600.0),
        st.sampled_from([0.3, 0.6, 0.9, 9.9, 10.0, 10.2, 29.999, 30.0]),
    ),
    min_size=0,
    max_size=40,
)
JOBS = st.one_of(st.floats(0.0, 12.0), st.floats(0.0, 600.0), st.sampled_from([0.0, 0.3, 10.0, 10.3]))


@settings(max_examples=400, deadline=None)
@given(history=HISTORIES, duration=JOBS)
def test_whatever_was_learned_every_job_is_seen_within_the_rule(
    history: list[float], duration: float
) -> None:
    schedule = learned(history)
    late, polls, times = detect(schedule.plan(SCHNELL), duration)
    assert -EPS <= late <= bound(duration) + EPS
    assert times[0] <= schedule.step + EPS
    assert all(b - a <= schedule.ceiling(a) + EPS for a, b in pairwise(times))
    # polls: at most one more than the fixed grid before 10 s (a shifted phase), two just after
    extra = polls - schedule.fixed_polls(duration)
    assert extra <= (1 if duration <= schedule.fast_until else 2)


@settings(max_examples=200, deadline=None)
@given(
    history=HISTORIES,
    duration=JOBS,
    late=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=5),
)
def test_slow_answers_never_stretch_a_gap_past_the_rule_plus_the_answer_itself(
    history: list[float], duration: float, late: list[float]
) -> None:
    schedule = learned(history)
    _, _, times = detect(schedule.plan(SCHNELL), duration, late)
    # a poll goes out at its due time, or at once if the previous answer came back after it
    for n, (a, b) in enumerate(pairwise(times)):
        answered = a + late[(n + 1) % len(late)]
        assert b - answered <= schedule.ceiling(a) + EPS


def test_a_model_that_always_takes_one_second_is_seen_at_once_with_the_fixed_number_of_polls() -> None:
    schedule = learned([1.0] * 5)
    late, polls, times = detect(schedule.plan(SCHNELL), 1.0)
    assert times == pytest.approx([0.1, 0.4, 0.7, 1.0])
    assert late == pytest.approx(0) and polls == schedule.fixed_polls(1.0) == 4


def test_a_few_samples_are_not_enough_to_move_the_grid() -> None:
    assert learned([1.0]).plan(SCHNELL).phase == pytest.approx(0.3)
    assert learned([1.0, 1.0]).plan(SCHNELL).phase == pytest.approx(0.3)
    assert learned([1.0] * 3).plan(SCHNELL).phase == pytest.approx(0.1)


def test_durations_spread_over_seconds_keep_the_fixed_grid() -> None:
    rng = random.Random(7)
    for draw in (lambda: rng.uniform(1, 8), lambda: 3 * math.exp(0.5 * rng.gauss(0, 1))):
        schedule = learned([draw() for _ in range(20)])
        assert schedule.plan(SCHNELL).phase == pytest.approx(0.3)


def test_one_outlier_does_not_pull_the_grid_off_the_usual_duration() -> None:
    schedule = learned([1.0, 1.01, 0.99, 1.0, 1.02, 1.0, 1.25, 1.0])
    plan = schedule.plan(SCHNELL)
    assert plan.phase == pytest.approx(0.12)  # just after the 1.02 s run; the 1.25 s one pays a poll
    assert detect(plan, 1.0)[0] == pytest.approx(0.02)


def test_a_learned_30_second_model_is_seen_at_once_and_a_job_that_departs_within_the_rule() -> None:
    schedule = learned([30.0, 30.0, 30.0])
    late, polls, _ = detect(schedule.plan(SCHNELL), 30.0)
    assert late == pytest.approx(0) and polls < schedule.fixed_polls(30.0) / 2
    for departed in (0.5, 5.0, 12.0, 29.0, 31.0, 60.0):  # faster or slower than ever before
        late, _, _ = detect(schedule.plan(SCHNELL), departed)
        assert late <= bound(departed) + EPS


def test_long_durations_near_each_other_share_one_poll() -> None:
    schedule = learned([20.0, 20.3, 20.5, 40.0])
    assert schedule.plan(SCHNELL).anchors == (20.5, 40.0)


def test_durations_are_learned_per_model_and_the_history_is_bounded() -> None:
    schedule = PollSchedule(history=3)
    for seconds in (5.0, 1.0, 2.0, 3.0):
        schedule.observe(SCHNELL, seconds)
    schedule.observe(DEV, 20.0)
    assert schedule.recent(SCHNELL) == [1.0, 2.0, 3.0]  # 5.0 was dropped
    assert schedule.recent(DEV) == [20.0] and schedule.recent("other/model") == []
    assert schedule.expected(SCHNELL) == (1.0, 3.0) and schedule.expected("other/model") is None
    for n in range(200):
        schedule.observe(f"model/{n}", 1.0)
    assert schedule.recent("model/199") and not schedule.recent(SCHNELL)


def test_the_expected_range_leaves_one_outlier_out_once_there_are_four() -> None:
    assert learned([1.0, 1.1, 0.9]).expected(SCHNELL) == (0.9, 1.1)
    assert learned([1.0, 1.1, 0.9, 30.0]).expected(SCHNELL) == (0.9, 1.1)


def test_learn_false_keeps_the_cold_plan() -> None:
    schedule = PollSchedule(learn=False)
    schedule.observe(SCHNELL, 1.0)
    assert not schedule.plan(SCHNELL).learned and schedule.recent(SCHNELL) == []


def test_nonsense_settings_are_refused() -> None:
    for bad in ({"step": 0}, {"ratio": 0}, {"max_interval": 0.1}):
        with pytest.raises(ValueError):
            PollSchedule(**bad)  # type: ignore[arg-type]


# --- through AtlasClient.wait ------------------------------------------------------------------


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
        if age >= self.duration - EPS:
            data.update(status="completed", outputs=["https://cdn.test/0.jpeg"])
            if self.timing == "latency_ms":
                data["latency_ms"] = round(self.duration * 1000)
            elif self.timing == "timestamps":
                data["created_at"] = "2026-08-10T12:00:00.000Z"
                data["completed_at"] = f"2026-08-10T12:00:{self.duration:06.3f}Z"
        return httpx.Response(200, json={"code": 200, "message": "", "data": data})

    def client(self, schedule: PollSchedule | None = None) -> AtlasClient:
        return atlas_client(
            api_key="k",
            base_url="https://api.test",
            transport=httpx.MockTransport(self.handler),
            sleep=self.sleep,
            clock=self.clock,
            rng=lambda: 0.5,
            poll_schedule=schedule or PollSchedule(),
        )

    async def run(
        self, client: AtlasClient, duration: float, *, model: str | None = None, max_wait: float = 60.0
    ) -> tuple[Prediction, int, float]:
        first = self.submit(duration, model)
        result = await client.wait(PID, max_wait, first=first)
        return result, len(self.polls), self.now - self.started - duration


async def test_the_client_polls_on_the_plan_and_learns_from_each_completion() -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        result, polls, late = await atlas.run(client, 1.0)
        assert result.status == "completed" and polls == 4 and late == pytest.approx(0.2)
        assert atlas.polls == pytest.approx([0.3, 0.6, 0.9, 1.2])
        for _ in range(3):
            await atlas.run(client, 1.0)
        result, polls, late = await atlas.run(client, 1.0)
        assert atlas.polls == pytest.approx([0.1, 0.4, 0.7, 1.0])  # the learned phase
        assert late == pytest.approx(0.0)


@pytest.mark.parametrize("duration", [0.3, 1.0, 2.0, 4.9, 9.9, 10.5, 45.0])
async def test_through_the_client_any_job_is_seen_within_the_rule_after_any_history(duration: float) -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        for seen in (0.8, 1.2, 1.0, 1.5, 30.0, 1.1):
            await atlas.run(client, seen)
        _, _, late = await atlas.run(client, duration)
    assert -EPS <= late <= bound(duration) + EPS


@pytest.mark.parametrize("timing", ["timestamps", "none"])
async def test_without_latency_ms_the_duration_comes_from_timestamps_or_the_polls(timing: str) -> None:
    atlas = FakeAtlas(timing=timing)
    schedule = PollSchedule()
    async with atlas.client(schedule) as client:
        await atlas.run(client, 2.1)
    (seen,) = schedule.recent(SCHNELL)
    if timing == "timestamps":
        assert seen == pytest.approx(2.1)
    else:  # between the last poll that saw it running (2.1 - 0.3) and the one that saw it done (2.1)
        assert 1.8 <= seen <= 2.1 + EPS


async def test_the_model_is_learned_from_the_first_poll_when_the_wait_starts_without_a_state() -> None:
    atlas = FakeAtlas()
    async with atlas.client() as client:
        for _ in range(4):
            await atlas.run(client, 1.9)
        atlas.submit(1.9)
        result = await client.wait(PID, 60)
    assert result.status == "completed"
    assert atlas.polls[0] == pytest.approx(0.3)  # cold until the first answer names the model
    assert atlas.polls[1:] == pytest.approx([0.4, 0.7, 1.0, 1.3, 1.6, 1.9])  # then the learned phase
    assert all(b - a <= 0.3 + EPS for a, b in pairwise(atlas.polls))
    assert len(atlas.polls) == 7


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
        for _ in range(4):
            await atlas.run(client, 1.0)
        await atlas.run(client.with_api_key("other-key"), 1.0)
    assert atlas.polls == pytest.approx([0.1, 0.4, 0.7, 1.0])


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
    async with atlas_client(
        api_key="k", base_url="https://api.test", transport=httpx.MockTransport(handler), limits=limits
    ) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(client.get_prediction, PID)
    assert peak == 3
