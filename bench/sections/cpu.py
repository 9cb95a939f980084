"""Section: server CPU per call, ours against a bare MCPServer on the same SDK, with and without each
of our levers, in interleaved rounds; and memory at 2,000 calls with and without the collector's."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import jsonrpc, levels
from bench.procs import clean_env, cpu_seconds, stop
from bench.progress import log
from bench.rawhttp import open_session, post
from bench.report import Context, Row, Section
from bench.servers import Emulator, emulator_process, http_server_process, wait_ready
from bench.stats import mb, median
from tests.loadgen import LOAD_ARGUMENTS, free_port

BENCH = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.5

#: Our server with some levers off (bench/variant.py), and the collector's lever (a setting).
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "all levers": ("", {}),
    "no JSON answers": ("json", {}),
    "no collector tuning": ("", {"ATLAS_MCP_GC_THRESHOLD": "0"}),
    "Atlas requests through httpx": ("engine", {}),
    "one store transaction per write": ("batching", {}),
    "no levers": ("json,engine,batching", {"ATLAS_MCP_GC_THRESHOLD": "0"}),
}
BARE = {"bare MCPServer, event stream": [], "bare MCPServer, JSON": ["--json"]}


@dataclass
class Served:
    """One server under load: how to reach it, its process, and the CPU per call of each round."""

    url: str
    pid: int
    ours: bool
    emu: Emulator | None = None  # ours: the emulator it calls (whose log counts its polls)
    cpus: list[float] = field(default_factory=list)
    polls: list[float] = field(default_factory=list)  # ours: upstream polls per prediction, each round
    errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def ours(emu: Emulator, levers: str, env: dict[str, str]) -> Iterator[Served]:
    command = [sys.executable, str(BENCH / "variant.py"), levers, "--"] if levers else None
    with http_server_process(emu.url, command=command, **env) as (url, pid, _):
        yield Served(url, pid, ours=True, emu=emu)


@contextlib.contextmanager
def bare(args: list[str]) -> Iterator[Served]:
    port = free_port()
    cmd = [sys.executable, str(BENCH / "bare.py"), "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            wait_ready(http, "/mcp", proc, 60.0, ok=(200, 400, 405, 406))
        yield Served(url, proc.pid, ours=False)
    finally:
        stop(proc)


async def _echo_load(url: str, calls: int) -> list[str]:
    """``calls`` calls of the bare server's trivial tool at once; the errors seen."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    sessions = [await open_session(host, int(port)) for _ in range(levels.sessions_for(calls))]
    errors: list[str] = []

    async def one(n: int) -> None:
        body = jsonrpc.tool_call(n + 1, "echo", {"text": "hello"})
        _, _, data = await post(host, int(port), body, sessions[n % len(sessions)])
        if b'"result"' not in data or b'"isError":true' in data:
            errors.append(data.decode(errors="replace")[:120])

    await asyncio.gather(*(one(n) for n in range(calls)))
    return errors


def round_of(served: Served, calls: int) -> None:
    """One level of ``calls`` at once against ``served``; its CPU per call is kept."""
    if served.emu is not None:
        level = levels.raw_level(served.emu, served.url, served.pid, calls, dict(LOAD_ARGUMENTS))
        served.cpus.append(level.cpu_server / calls)
        served.polls.append(level.polls_per_prediction)
        if level.first_error:
            served.errors.append(level.first_error)
        return
    before = cpu_seconds(served.pid)
    served.errors += asyncio.run(_echo_load(served.url, calls))
    served.cpus.append((cpu_seconds(served.pid) - before) / calls)


#: Ours with every lever, against an emulator whose jobs end before the first poll: the same call
#: with one poll instead of four (what the upstream requests of a one-second job cost).
ONE_POLL = "all levers, one poll per job"
ONE_POLL_LATENCY = 0.25


def measure(calls: int, rounds: int, latency: float) -> dict[str, Served]:
    """Every server started at once, then ``rounds`` rounds of one level each, interleaved."""
    with (
        emulator_process(latency) as emu,
        emulator_process(ONE_POLL_LATENCY) as quick_emu,
        contextlib.ExitStack() as stack,
    ):
        servers = {name: stack.enter_context(ours(emu, *made)) for name, made in VARIANTS.items()}
        if latency > ONE_POLL_LATENCY:  # the quick run's jobs are shorter already
            servers[ONE_POLL] = stack.enter_context(ours(quick_emu, "", {}))
        servers |= {name: stack.enter_context(bare(args)) for name, args in BARE.items()}
        for served in servers.values():  # first sessions, imports, the model's duration learnt
            round_of(served, min(calls, 50))
            served.cpus.clear()
            served.polls.clear()
        for n in range(rounds):
            for name, served in servers.items():
                log(f"cpu: round {n + 1}/{rounds}, {name}, {calls} calls")
                round_of(served, calls)
                time.sleep(0.3)
    return servers


def memory(calls: int, latency: float) -> dict[str, int]:
    """Peak memory of our server at ``calls`` calls at once, with and without the collector's lever."""
    peaks = {}
    with emulator_process(latency) as emu:
        for name, env in (("all levers", {}), ("no collector tuning", {"ATLAS_MCP_GC_THRESHOLD": "0"})):
            with http_server_process(emu.url, **env) as (url, pid, _):
                levels.raw_level(emu, url, pid, 50, dict(LOAD_ARGUMENTS))
                log(f"cpu: memory, {name}, {calls} calls")
                peaks[name] = levels.raw_level(emu, url, pid, calls, dict(LOAD_ARGUMENTS)).rss_peak
    return peaks


def section(ctx: Context) -> Section:
    s = Section("CPU per call: ours against a bare MCPServer, lever by lever")
    calls, rounds, latency = (20, 1, 0.2) if ctx.quick else (500, 5, 1.0)
    servers = measure(calls, rounds, latency)
    peaks = memory(100 if ctx.quick else 2000, latency)
    s.add(
        f"{calls} calls at once per level from the raw-HTTP client (sessions kept, 2025-06-18), server",
        "CPU from /proc. Ours: full `generate_image` calls (512x512, no picture returned, nothing saved,",
        f"every job L = {latency:g} s at the emulator); the bare MCPServer (`bench/bare.py`, same SDK,",
        "uvicorn, uvloop) answers a trivial tool, with event-stream answers (the SDK's default) or",
        "plain JSON.",
        f"Every server runs at once and the {rounds} rounds go through them in turn, so a slow moment of",
        "the machine falls on all of them; the median round is shown with every round. A lever is",
        "turned off by `bench/variant.py` (or the setting `ATLAS_MCP_GC_THRESHOLD=0` for the collector).",
        *(
            [
                f'"{ONE_POLL}" is the same server against an emulator whose jobs take',
                f"{ONE_POLL_LATENCY:g} s, so that each call polls Atlas once (a job of up to 10 s is polled",
                "every 0.3 s, so that its",
                "end is seen within 0.3 s): the difference is what the upstream polls of longer jobs cost,",
                "which a bare server does not make.",
            ]
            if ONE_POLL in servers
            else []
        ),
    )
    s.add("")
    base = median(servers["bare MCPServer, event stream"].cpus)
    table = []
    for name, served in servers.items():
        cpu = median(served.cpus)
        runs = ", ".join(f"{c * 1000:.2f}" for c in served.cpus)
        error = f" ({served.errors[0][:60]})" if served.errors else ""
        table.append([name, f"{cpu * 1000:.2f} ms (rounds: {runs})", f"{cpu / base:.2f}", error or "none"])
    s.table(["server", "CPU per call", "against the bare event-stream server", "errors"], table)
    best = median(servers["all levers"].cpus)
    ratio = best / base
    s.rows.append(
        Row(
            "Server CPU per full call against a bare MCPServer with event-stream answers",
            f"{best * 1000:.2f} vs {base * 1000:.2f} ms: {ratio:.2f}x",
            f"<= {TARGET_RATIO}x",
            ratio <= TARGET_RATIO,
        )
    )
    if ONE_POLL in servers:
        one_poll = median(servers[ONE_POLL].cpus)
        polls = median(servers["all levers"].polls), median(servers[ONE_POLL].polls)
        s.rows.append(
            Row(
                f"The same call polling Atlas {polls[1]:g} time(s) instead of {polls[0]:g} "
                f"(jobs of {ONE_POLL_LATENCY:g} s, not {latency:g} s)",
                f"{one_poll * 1000:.2f} ms: {one_poll / base:.2f}x the bare server",
            )
        )
    for name in VARIANTS:
        if name != "all levers":
            s.rows.append(
                Row(
                    f"CPU per call with {name} (all levers: 1.00)",
                    f"{median(servers[name].cpus) / median(servers['all levers'].cpus):.2f}",
                )
            )
    grown = peaks["all levers"] / peaks["no collector tuning"] - 1
    s.add(
        f"Peak memory at {2000 if not ctx.quick else 100} calls at once: {mb(peaks['all levers'])} with the",
        f"collector's lever, {mb(peaks['no collector tuning'])} without ({grown:+.0%}).",
    )
    s.add("")
    s.rows.append(
        Row(
            "Memory at 2,000 concurrent calls, with the collector's lever against without",
            f"{mb(peaks['all levers'])} vs {mb(peaks['no collector tuning'])} ({grown:+.0%})",
            "<= +10%",
            grown <= 0.10,
        )
    )
    return s
