"""Section: turns per picture, the tool calls from a prompt to a visible picture (a model, not a
measurement)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.official import NPX_PACKAGE
from bench.report import Context, Row, Section

LATENCY = 5.0  # seconds a job takes upstream
WAIT_BOUND = 45.0  # ATLAS_MCP_WAIT_SECONDS: how long generate_image waits before it answers
PERIODS = (3.0, 10.0, 30.0)  # how often an assistant polls the official server


@dataclass
class Polled:
    """An assistant polling the official server every ``period`` seconds."""

    period: float
    calls: int
    picture_after: float


def our_calls(latency: float) -> int:
    """One call while the job is done within the wait bound; then one more per 30 s."""
    return 1 if latency < WAIT_BOUND else 1 + math.ceil((latency - WAIT_BOUND) / 30.0)


def polled(latency: float, period: float) -> Polled:
    polls = max(1, math.ceil(latency / period))
    return Polled(period, 1 + polls, polls * period)


def section(ctx: Context) -> Section:
    s = Section(f"Turns per picture (L = {LATENCY:g} s)")
    s.add(
        "Tool calls an assistant makes from the prompt to a visible picture. This server:",
        "`generate_image` waits (up to `ATLAS_MCP_WAIT_SECONDS` = 45 s) and returns the picture inline:",
        '**one call** while L < 45 s. The official server returns a prediction id at once ("Use',
        '`atlas_get_prediction` with this ID ... Image generation usually takes 10-30 seconds"), with',
        "no inline image. Model (an assumption, not a measurement): the assistant calls",
        "`atlas_get_prediction` every T seconds until it is done, so it makes 1 + ceil(L / T) calls and",
        "sees the picture after ceil(L / T) x T seconds; T = 10 and 30 s are the documented cadence,",
        "T = 3 s stands for re-polling on every model turn.",
    )
    s.add("")
    theirs = {period: polled(LATENCY, period) for period in PERIODS}
    rows = [["atlas-image-mcp", str(our_calls(LATENCY)), "L + the added latency above"]]
    rows += [
        [f"{NPX_PACKAGE}, polling every {p.period:g} s", str(p.calls), f"{p.picture_after:g} s"]
        for p in theirs.values()
    ]
    s.table(["server", "tool calls", "picture visible after"], rows)
    s.rows.append(
        Row(
            f"Tool calls per picture, L = {LATENCY:g} s",
            f"1 (official: {theirs[10.0].calls} at T = 10-30 s, {theirs[3.0].calls} at T = 3 s)",
        )
    )
    return s
