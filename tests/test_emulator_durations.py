"""The emulator's per-prediction durations: drawn from a distribution, with a fixed seed.

Driven in process with a fake clock: a prediction's latency shows in its ``latency_ms`` and in
when its status turns ``completed``.
"""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator

import httpx
import pytest

from atlas_image_mcp.emulator.__main__ import build_parser
from atlas_image_mcp.emulator.store import Durations

from .conftest import FakeClock
from .emulation import Emulator

BASE = "http://atlas.emulator"
AUTH = {"Authorization": "Bearer k"}
BODY = {"model": "black-forest-labs/flux-schnell", "prompt": "a fox", "size": "256*256"}


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emu.app), base_url=BASE, headers=AUTH
    ) as http:
        yield http


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(latency=1.0, clock=clock, durations="uniform:1,8", seed=7)


async def latencies(client: httpx.AsyncClient, emu: Emulator, clock: FakeClock, n: int) -> list[float]:
    """Submit ``n`` predictions, wait them out on the fake clock, return their reported durations."""
    ids = []
    for _ in range(n):
        answer = await client.post("/api/v1/model/generateImage", json=BODY)
        ids.append(answer.json()["data"]["id"])
    clock.advance(3600)
    out = []
    for pid in ids:
        data = (await client.get(f"/api/v1/model/prediction/{pid}")).json()["data"]
        assert data["status"] == "completed"
        out.append(data["latency_ms"] / 1000)
    return out


async def test_durations_are_drawn_per_prediction_and_repeat_after_a_reset(
    client: httpx.AsyncClient, emu: Emulator, clock: FakeClock
) -> None:
    first = await latencies(client, emu, clock, 40)
    assert all(1.0 <= d <= 8.0 for d in first)
    assert len(set(first)) > 30  # not one constant
    assert (await client.post("/_emulator/reset")).status_code == 200
    assert await latencies(client, emu, clock, 40) == first  # same seed, same sequence


async def test_a_prediction_completes_when_its_own_drawn_duration_has_passed(
    client: httpx.AsyncClient, emu: Emulator, clock: FakeClock
) -> None:
    pid = (await client.post("/api/v1/model/generateImage", json=BODY)).json()["data"]["id"]
    duration = emu.predictions[pid].done_at - emu.predictions[pid].submitted_at
    clock.advance(duration - 0.01)
    assert (await client.get(f"/api/v1/model/prediction/{pid}")).json()["data"]["status"] == "processing"
    clock.advance(0.01)
    assert (await client.get(f"/api/v1/model/prediction/{pid}")).json()["data"]["status"] == "completed"
    (row,) = (await client.get("/_emulator/predictions")).json()["predictions"]
    assert row["done_at"] - row["submitted_at"] == pytest.approx(duration)  # for benchmarks to read


async def test_admin_config_selects_a_distribution_and_a_seed(
    client: httpx.AsyncClient, emu: Emulator, clock: FakeClock
) -> None:
    answer = await client.post("/_emulator/config", json={"durations": "lognormal:3,0.5", "seed": 11})
    assert answer.status_code == 200
    assert answer.json()["durations"] == "lognormal:3,0.5" and answer.json()["seed"] == 11
    drawn = await latencies(client, emu, clock, 200)
    assert 2.5 < statistics.median(drawn) < 3.5
    assert (await client.post("/_emulator/config", json={"seed": 11})).status_code == 200
    assert await latencies(client, emu, clock, 200) == drawn  # a new seed starts the draws again
    back = await client.post("/_emulator/config", json={"durations": None, "latency": 2.0})
    assert back.json()["durations"] is None
    assert await latencies(client, emu, clock, 3) == [2.0, 2.0, 2.0]
    for bad in ("uniform:8,1", "normal:1,2", "two-mode:2,20", "lognormal:x,1", 5):
        assert (await client.post("/_emulator/config", json={"durations": bad})).status_code == 400


async def test_the_two_mode_mix_puts_most_predictions_near_the_short_mode(
    client: httpx.AsyncClient, emu: Emulator, clock: FakeClock
) -> None:
    await client.post("/_emulator/config", json={"durations": "two-mode:2,20,0.8"})
    drawn = await latencies(client, emu, clock, 300)
    short = [d for d in drawn if d < 6]
    assert all(d > 12 for d in drawn if d >= 6)
    assert 0.7 < len(short) / len(drawn) < 0.9
    assert 1.8 < statistics.median(short) < 2.2


def test_a_script_latency_still_wins_over_the_distribution(clock: FakeClock) -> None:
    assert Durations.parse("1.5") == Durations("constant", (1.5,))
    assert str(Durations.parse(" Uniform:1,8 ")) == "uniform:1,8"
    assert Durations.parse("two-mode:2,20,0.8,0.2").args == (2.0, 20.0, 0.8, 0.2)


def test_the_command_line_takes_durations_and_a_seed() -> None:
    args = build_parser().parse_args(["--durations", "two-mode:2,20,0.8", "--seed", "3"])
    assert (args.durations, args.seed) == ("two-mode:2,20,0.8", 3)
    assert build_parser().parse_args([]).durations is None
