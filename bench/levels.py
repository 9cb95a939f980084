"""One load level over streamable HTTP: N ``generate_image`` calls at once against a server process,
with the wall time, latencies, CPU seconds and peak memory it cost; and its row in the report."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from bench.procs import RssSampler, TreeRssSampler, cpu_seconds, proc_status, reset_peak, tree_cpu
from bench.rawhttp import lean_load
from bench.servers import Emulator
from bench.stats import mb, median, ms, pct, secs
from tests.loadgen import run_load

POLL_GLOB = "/api/v1/model/prediction/*"


def sessions_for(calls: int) -> int:
    return max(1, min(calls // 5, 100))


@dataclass
class Outcome:
    """What a client reports of the calls of one level."""

    completed: int
    first_error: str
    wall: float
    p50: float
    p95: float


@dataclass
class Level:
    """One level: what the client saw, plus what the server, the emulator and the client spent."""

    calls: int
    sessions: int
    completed: int
    first_error: str
    wall: float
    p50: float
    p95: float
    polls_per_prediction: float
    rss_peak: int
    cpu_server: float
    cpu_emulator: float
    cpu_loadgen: float
    walls: list[float] = dataclasses.field(default_factory=list)  # every run of a repeated level
    cpus: list[float] = dataclasses.field(default_factory=list)  # server CPU per call, every run


def sdk_client(url: str, calls: int, arguments: dict[str, Any]) -> Outcome:
    """The calls from the MCP SDK client (``tests/loadgen.py``); its failure as a whole is an outcome."""
    started = time.perf_counter()
    try:
        stats = anyio.run(lambda: run_load(f"{url}/mcp", calls, sessions_for(calls), arguments))
    except Exception as exc:  # the SDK client failed as a whole: a result of the level, shown as such
        failure = f"the client failed: {type(exc).__name__}: {exc}"[:200]
        return Outcome(0, failure, time.perf_counter() - started, float("nan"), float("nan"))
    first_error = stats.errors[0] if stats.errors else ""
    return Outcome(
        stats.completed, first_error, stats.wall_seconds, stats.percentile(50), stats.percentile(95)
    )


def raw_client(url: str, calls: int, arguments: dict[str, Any]) -> Outcome:
    """The calls from :func:`bench.rawhttp.lean_load` (the server's own capacity, little client CPU)."""
    run = asyncio.run(lean_load(url, calls, sessions_for(calls), arguments))
    first_error = run.errors[0] if run.errors else ""
    return Outcome(run.completed, first_error, run.wall, median(run.latencies), pct(run.latencies, 95))


def measure_level(
    emu: Emulator, pid: int, calls: int, client: Callable[[], Outcome], *, tree: bool = False
) -> Level:
    """Run ``client`` against server ``pid``; ``tree``: count its worker processes' CPU and memory too."""
    emu.reset()
    peak_reset = not tree and reset_peak(pid)
    cpu = tree_cpu if tree else cpu_seconds
    cpu_server, cpu_emu, cpu_self = cpu(pid), cpu_seconds(emu.pid), time.process_time()
    with (TreeRssSampler if tree else RssSampler)(pid) as sampler:
        outcome = client()
    after = proc_status(pid)
    return Level(
        calls=calls,
        sessions=sessions_for(calls),
        completed=outcome.completed,
        first_error=outcome.first_error,
        wall=outcome.wall,
        p50=outcome.p50,
        p95=outcome.p95,
        polls_per_prediction=emu.count("GET", POLL_GLOB) / max(1, calls),
        rss_peak=max(sampler.peak, after.get("VmHWM", 0) if peak_reset else 0),
        cpu_server=cpu(pid) - cpu_server,
        cpu_emulator=cpu_seconds(emu.pid) - cpu_emu,
        cpu_loadgen=time.process_time() - cpu_self,
    )


def sdk_level(emu: Emulator, url: str, pid: int, calls: int, arguments: dict[str, Any]) -> Level:
    return measure_level(emu, pid, calls, lambda: sdk_client(url, calls, arguments))


def raw_level(
    emu: Emulator, url: str, pid: int, calls: int, arguments: dict[str, Any], *, tree: bool = False
) -> Level:
    return measure_level(emu, pid, calls, lambda: raw_client(url, calls, arguments), tree=tree)


def repeated(run: Callable[[int], Level], times: int) -> Level:
    """Run a load level ``times`` times; the run with the median wall time, every run's numbers attached."""
    levels = []
    for n in range(times):
        levels.append(run(n))
        time.sleep(0.3)
    levels.sort(key=lambda level: level.wall)
    return dataclasses.replace(
        levels[len(levels) // 2],
        walls=[level.wall for level in levels],
        cpus=[level.cpu_server / level.calls for level in levels],
    )


HEADER = [
    "calls",
    "sessions",
    "completed",
    "wall",
    "p50",
    "p95",
    "polls per prediction",
    "server peak RSS",
    "server CPU per call",
    "CPU server / emulator / load generator",
]


def _runs(values: list[float], each: Callable[[float], str]) -> str:
    """`` (runs: a, b, c)`` when a level ran more than once, else nothing."""
    return f" (runs: {', '.join(each(v) for v in values)})" if len(values) > 1 else ""


def row(level: Level) -> list[str]:
    """The level's cells under :data:`HEADER`."""
    error = f" ({level.first_error[:60]})" if level.first_error else ""
    return [
        str(level.calls),
        str(level.sessions),
        f"{level.completed}/{level.calls}{error}",
        secs(level.wall) + _runs(level.walls, lambda w: f"{w:.2f}"),
        secs(level.p50),
        secs(level.p95),
        f"{level.polls_per_prediction:.1f}",
        mb(level.rss_peak),
        ms(level.cpu_server / level.calls) + _runs(level.cpus, lambda c: f"{c * 1000:.1f}"),
        f"{level.cpu_server:.1f} / {level.cpu_emulator:.1f} / {level.cpu_loadgen:.1f} s",
    ]
