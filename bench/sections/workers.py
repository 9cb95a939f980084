"""Section: worker processes behind one port (``serve --stateless --workers N``), 1 against 2."""

from __future__ import annotations

import asyncio
import time

from bench import levels
from bench.levels import Level
from bench.progress import log
from bench.rawhttp import lean_load
from bench.report import Context, Row, Section
from bench.servers import Emulator, emulator_process, http_server_process
from bench.stats import ms, secs
from tests.loadgen import LOAD_ARGUMENTS

WORKERS = (1, 2)


def server_args(workers: int) -> list[str]:
    return ["--stateless", *(["--workers", str(workers)] if workers > 1 else [])]


def with_workers(emu: Emulator, workers: int, calls_per_level: list[int]) -> dict[int, Level]:
    """Each level against a server with ``workers`` processes, CPU and memory summed over them."""
    measured = {}
    with http_server_process(emu.url, *server_args(workers), ready_timeout=120) as (url, pid, _):
        time.sleep(0.5)
        asyncio.run(lean_load(url, 50, 10, dict(LOAD_ARGUMENTS)))  # warm every worker a little
        for calls in calls_per_level:
            log(f"workers: {workers}, {calls} calls")
            measured[calls] = levels.raw_level(emu, url, pid, calls, dict(LOAD_ARGUMENTS), tree=True)
    return measured


def section(ctx: Context) -> Section:
    s = Section("Worker processes behind one port (`serve --stateless --workers N`)")
    latency = 0.2 if ctx.quick else 1.0
    calls_per_level = [10] if ctx.quick else [500, 2000]
    with emulator_process(latency) as emu:
        measured = {workers: with_workers(emu, workers, calls_per_level) for workers in WORKERS}
    s.add(
        f"The same raw-HTTP client and calls as above (L = {latency:g} s), against a stateless server",
        "with one process (`--stateless`) and with two worker processes behind the same port",
        "(`--stateless --workers 2`). CPU and memory are summed over the server's processes (parent",
        "and workers). On this two-core machine the emulator and the client share the cores with the",
        "workers.",
    )
    s.add("")
    table = [[str(w), *levels.row(level)] for w in WORKERS for level in measured[w].values()]
    s.table(["workers", *levels.HEADER], table)
    for calls in calls_per_level:
        one, two = measured[1][calls], measured[2][calls]
        s.rows.append(
            Row(
                f"{calls} concurrent calls, 1 vs 2 workers: wall; CPU per call",
                f"{secs(one.wall)} vs {secs(two.wall)}; {ms(one.cpu_server / calls)} vs "
                f"{ms(two.cpu_server / calls)}",
            )
        )
    return s
