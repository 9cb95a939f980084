"""One tool call over stdio, timed against the emulator's own log of the job it started."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from bench.servers import Emulator
from bench.stdio import RawStdio

PROMPT = "a red fox in the snow, golden hour"
SEED = 7  # fixed: the emulator renders a picture once and then serves it like a CDN would
ARGUMENTS = {"prompt": PROMPT, "seed": SEED}  # defaults: 1024x1024 schnell, thumbnail inline, saved
FIXED_STEP = 0.3  # the plain fixed schedule polls are compared with


@dataclass
class Call:
    """A tool call's result, when it was sent and when its answer arrived (monotonic clock)."""

    result: dict[str, Any]
    sent: float
    arrived: float
    fresh: bool = False  # the first prediction of its process


@dataclass
class Job:
    duration: float  # the emulator's own: submit to completion
    added: float  # end to end minus the duration
    detect: float  # completion to the arrival of the poll that saw it
    polls: int
    fixed: int  # polls a plain fixed 300 ms schedule makes for this duration
    fresh: bool
    submit: float = float("nan")  # call sent -> the generation POST arrived upstream
    tail: float = float("nan")  # the poll that saw it done -> the answer back (download, thumbnail, save)


def generate_call(
    server: RawStdio,
    arguments: dict[str, Any],
    token: int,
    tool: str = "generate_image",
    *,
    fresh: bool = False,
) -> Call:
    """Call ``tool`` with a progress token; a failed call raises."""
    sent = time.monotonic()
    params = {"name": tool, "arguments": arguments, "_meta": {"progressToken": token}}
    answer, arrived = server.request("tools/call", params)
    if "error" in answer or answer["result"].get("isError"):
        raise RuntimeError(f"{tool} failed: {json.dumps(answer)[:500]}")
    return Call(answer["result"], sent, arrived, fresh)


def analyse_jobs(emu: Emulator, calls: list[Call]) -> list[Job]:
    """Each call's job, from the emulator's log of its prediction and of the polls for it."""
    predictions = emu.predictions()
    return [_job(emu, call, predictions[call.result["structuredContent"]["prediction_id"]]) for call in calls]


def _job(emu: Emulator, call: Call, prediction: dict[str, Any]) -> Job:
    duration = prediction["done_at"] - prediction["submitted_at"]
    _, polls = emu.requests("GET", f"/api/v1/model/prediction/{prediction['id']}")
    seen = [p["at"] for p in polls if p["at"] >= prediction["done_at"]]
    return Job(
        duration=duration,
        added=call.arrived - call.sent - duration,
        detect=(seen[0] - prediction["done_at"]) if seen else float("nan"),
        polls=len(polls),
        fixed=max(1, math.ceil(duration / FIXED_STEP - 1e-9)),
        fresh=call.fresh,
        submit=prediction["submitted_at"] - call.sent,
        tail=(call.arrived - seen[0]) if seen else float("nan"),
    )
