"""Section: worker processes behind one port (``serve --stateless --workers N``), 1 against 2."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from bench import levels
from bench.levels import Level
from bench.procs import cpu_seconds, process_tree
from bench.progress import log
from bench.rawhttp import lean_load
from bench.report import Context, Row, Section
from bench.servers import Emulator, emulator_process, http_server_process
from bench.stats import ms, secs
from tests.loadgen import LOAD_ARGUMENTS

WORKERS = (1, 2)
MAX_SHARE = 0.60  # the busiest of 2 workers, of the workers' CPU at 2,000 calls


def worker_pids(parent: int) -> list[int]:
    """The worker processes under the server's parent (uvicorn starts them with ``spawn_main``)."""
    pids = []
    for pid in process_tree(parent)[1:]:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return pids


def server_args(workers: int) -> list[str]:
    return ["--stateless", *(["--workers", str(workers)] if workers > 1 else [])]


def with_workers(
    emu: Emulator, workers: int, calls_per_level: list[int]
) -> tuple[dict[int, Level], dict[int, list[float]]]:
    """Each level against a server with ``workers`` processes, CPU and memory summed over them; and,
    per level, each worker's share of the workers' CPU (with more than one)."""
    measured, shares = {}, {}
    with http_server_process(emu.url, *server_args(workers), ready_timeout=120) as (url, pid, _):
        time.sleep(0.5)
        asyncio.run(lean_load(url, 50, 10, dict(LOAD_ARGUMENTS)))  # warm every worker a little
        each = worker_pids(pid) if workers > 1 else []
        for calls in calls_per_level:
            log(f"workers: {workers}, {calls} calls")
            before = [cpu_seconds(p) for p in each]
            measured[calls] = levels.raw_level(emu, url, pid, calls, dict(LOAD_ARGUMENTS), tree=True)
            spent = [cpu_seconds(p) - b for p, b in zip(each, before, strict=True)]
            if spent and sum(spent) > 0:
                shares[calls] = sorted((s / sum(spent) for s in spent), reverse=True)
    return measured, shares


def section(ctx: Context) -> Section:
    s = Section("Worker processes behind one port (`serve --stateless --workers N`)")
    latency = 0.2 if ctx.quick else 1.0
    calls_per_level = [10] if ctx.quick else [500, 2000]
    with emulator_process(latency) as emu:
        made = {workers: with_workers(emu, workers, calls_per_level) for workers in WORKERS}
    measured = {workers: levels_of for workers, (levels_of, _) in made.items()}
    shares = made[2][1]
    s.add(
        f"The same raw-HTTP client and calls as above (L = {latency:g} s), against a stateless server",
        "with one process (`--stateless`) and with two worker processes behind the same port",
        "(`--stateless --workers 2`). CPU and memory are summed over the server's processes (parent",
        "and workers). On this two-core machine the emulator and the client share the cores with the",
        "workers. How evenly the two workers share the load: each one's part of the workers' CPU",
        "during the level (a worker's CPU follows the calls it answers); on Linux each worker has a",
        "listening socket of its own and the kernel spreads the connections.",
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
    for calls, parts in shares.items():
        busiest = parts[0]
        last = calls == calls_per_level[-1]
        s.rows.append(
            Row(
                f"{calls} concurrent calls, 2 workers: the busiest worker's share of the workers' CPU",
                " / ".join(f"{part:.0%}" for part in parts),
                f"<= {MAX_SHARE:.0%}" if last else "(reported)",
                busiest <= MAX_SHARE if last else None,
            )
        )
    return s
