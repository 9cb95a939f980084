"""Section: a batch of four prompts in one ``generate_image`` call, against four calls one after another."""

from __future__ import annotations

import time

from bench.jobs import SEED, generate_call
from bench.report import Context, Row, Section
from bench.servers import emulator_process, started_server
from bench.stats import median

MEASURE = "A batch of 4 prompts vs 4 calls in a row"
PROMPTS = ["a red fox in the snow", "an owl at night", "a whale at dawn", "a heron in the reeds"]
GENERATE = "/api/v1/model/generateImage"


def batches(runs: int, latency: float, tmp: str) -> tuple[list[float], list[float], list[float]]:
    """Wall times of ``runs`` batches and of ``runs`` x 4 single calls, and each batch's POST spread
    (last POST's arrival minus the first's, from the emulator's log)."""
    batch_walls: list[float] = []
    single_walls: list[float] = []
    spreads: list[float] = []
    with emulator_process(latency) as emu:
        server = started_server(emu.url, tmp)
        try:
            generate_call(server, {"prompt": "warm up", "seed": SEED}, 0)  # first connection, first decode
            token = 1
            for run in range(runs):
                started = time.monotonic()
                for n, prompt in enumerate(PROMPTS):
                    generate_call(server, {"prompt": prompt, "seed": SEED + run * 10 + n}, token)
                    token += 1
                single_walls.append(time.monotonic() - started)
                _, before = emu.requests("POST", GENERATE)
                arguments = {"prompt": PROMPTS[0], "prompts": PROMPTS[1:], "seed": SEED + 100 + run}
                call = generate_call(server, arguments, token)
                token += 1
                batch_walls.append(call.arrived - call.sent)
                _, after = emu.requests("POST", GENERATE)
                arrivals = [r["at"] for r in after[len(before) :]]
                if len(arrivals) != len(PROMPTS) or len(call.result["structuredContent"]["outputs"]) != 4:
                    raise RuntimeError("the batch did not send four jobs and answer with four pictures")
                spreads.append(max(arrivals) - min(arrivals))
        finally:
            server.close()
    return batch_walls, single_walls, spreads


def section(ctx: Context) -> Section:
    s = Section("A batch of four prompts (`generate_image` with `prompts`, L = 1 s)")
    runs = 1 if ctx.quick else 5
    latency = 0.4 if ctx.quick else 1.0
    try:
        batch_walls, single_walls, spreads = batches(runs, latency, ctx.tmp)
    except (RuntimeError, KeyError, IndexError) as exc:
        s.add(f"Not measured: {str(exc)[:300]}")
        s.rows.append(Row(MEASURE, "not measured"))
        return s
    b, one = median(batch_walls), median(single_walls)
    s.add(
        f"A stdio server (warmed up by one call) makes four pictures {runs} time(s) both ways: four",
        "`generate_image` calls one after another, then one call with `prompt` and three `prompts`",
        f"(1024x1024 schnell, thumbnails inline, saved). The emulator takes {latency:g} s per job. Spread",
        "is the time between the batch's first and last generation POST at the emulator.",
    )
    s.add("")
    s.table(
        ["runs", "batch wall (median)", "4 calls wall (median)", "ratio", "POST spread (max)"],
        [
            [
                str(runs),
                f"{b * 1000:.0f} ms",
                f"{one * 1000:.0f} ms",
                f"{one / b:.2f}x",
                f"{max(spreads) * 1000:.0f} ms",
            ]
        ],
    )
    s.rows.append(Row(MEASURE, f"{b * 1000:.0f} ms vs {one * 1000:.0f} ms ({one / b:.1f}x faster)"))
    return s
