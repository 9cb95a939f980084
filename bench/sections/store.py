"""Section: the shared store. A paid call on PostgreSQL against SQLite (added latency, server CPU per
call), and the throughput of 1, 2 and 3 replicas on one PostgreSQL behind HAProxy.

Needs PostgreSQL's server binaries and HAProxy from the distribution (``tests/servers.py`` starts
them as this process's children, on loopback); without them the section says so and measures
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import jsonrpc
from bench.procs import cpu_seconds, tree_cpu
from bench.progress import log
from bench.rawhttp import failure, lean_load, open_session, post
from bench.report import Context, Row, Section
from bench.servers import Emulator, emulator_process, http_server_process
from bench.stats import median, ms, pct, secs
from tests.loadgen import LOAD_ARGUMENTS
from tests.servers import Balancer, TempPostgres, haproxy_missing, postgres_missing

REPLICAS = (1, 2, 3)


@dataclass
class Plan:
    latency: float  # emulator seconds per job
    sequential: int  # calls one after the other, per store and round
    concurrent: int  # calls at once, per store and round
    rounds: int  # rounds, the two stores interleaved in each
    scaling: int  # calls at once through the balancer, per replica count


def plan(ctx: Context) -> Plan:
    if ctx.quick:
        return Plan(latency=0.05, sequential=5, concurrent=10, rounds=1, scaling=20)
    return Plan(latency=0.05, sequential=40, concurrent=200, rounds=3, scaling=600)


@dataclass
class StoreRuns:
    """What one store cost over every round."""

    name: str
    latencies: list[float] = field(default_factory=list)  # sequential calls, seconds each
    sequential_cpu: list[float] = field(default_factory=list)  # server CPU per sequential call
    concurrent_cpu: list[float] = field(default_factory=list)  # server CPU per concurrent call
    concurrent_p50: list[float] = field(default_factory=list)
    database_cpu: list[float] = field(default_factory=list)  # PostgreSQL's CPU per call (both kinds)
    errors: list[str] = field(default_factory=list)


@dataclass
class Scaled:
    replicas: int
    calls: int
    completed: int
    wall: float
    p50: float
    cpu_replicas: float
    cpu_database: float
    cpu_balancer: float
    cpu_emulator: float
    cpu_client: float
    first_error: str = ""


async def sequential(url: str, calls: int, arguments: dict[str, Any]) -> tuple[list[float], list[str]]:
    """``calls`` generate_image calls one after the other on one session; each one's latency."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    session = await open_session(host, int(port))
    latencies, errors = [], []
    for n in range(calls):
        sent = time.perf_counter()
        _, _, data = await post(
            host, int(port), jsonrpc.tool_call(n + 1, "generate_image", arguments), session
        )
        latencies.append(time.perf_counter() - sent)
        if (error := failure(data)) is not None:
            errors.append(error)
    return latencies, errors


def one_round(runs: StoreRuns, url: str, pid: int, pg: TempPostgres, p: Plan) -> None:
    arguments = dict(LOAD_ARGUMENTS)
    before, db_before = cpu_seconds(pid), _db_cpu(pg)
    latencies, errors = asyncio.run(sequential(url, p.sequential, arguments))
    runs.latencies += latencies
    runs.errors += errors
    runs.sequential_cpu.append((cpu_seconds(pid) - before) / p.sequential)
    before = cpu_seconds(pid)
    load = asyncio.run(lean_load(url, p.concurrent, max(1, p.concurrent // 5), arguments))
    runs.concurrent_cpu.append((cpu_seconds(pid) - before) / p.concurrent)
    runs.concurrent_p50.append(median(load.latencies))
    runs.errors += load.errors
    runs.database_cpu.append((_db_cpu(pg) - db_before) / (p.sequential + p.concurrent))


def _db_cpu(pg: TempPostgres) -> float:
    return tree_cpu(pg.proc.pid) if pg.proc is not None else 0.0


def compare_stores(emu: Emulator, pg: TempPostgres, p: Plan, tmp: str) -> list[StoreRuns]:
    """One server on SQLite (a file in a fresh state folder), one on PostgreSQL, rounds interleaved."""
    sqlite, postgres = StoreRuns("SQLite (file)"), StoreRuns("PostgreSQL")
    state = Path(tmp) / "store-bench-state"
    with (
        http_server_process(emu.url, "--stateless", ATLAS_MCP_STATE_DIR=str(state)) as (
            lite_url,
            lite_pid,
            _,
        ),
        http_server_process(emu.url, "--stateless", ATLAS_MCP_DATABASE_URL=pg.new_database()) as (
            pg_url,
            pg_pid,
            _,
        ),
    ):
        for url in (lite_url, pg_url):  # warm both (imports, pools, the model catalogue)
            asyncio.run(lean_load(url, 10, 2, dict(LOAD_ARGUMENTS)))
        for n in range(p.rounds):
            order = [(sqlite, lite_url, lite_pid), (postgres, pg_url, pg_pid)]
            for runs, url, pid in order if n % 2 == 0 else reversed(order):
                log(f"store: {runs.name}, round {n + 1}")
                emu.reset()
                one_round(runs, url, pid, pg, p)
    return [sqlite, postgres]


def scale(emu: Emulator, pg: TempPostgres, replicas: int, calls: int) -> Scaled:
    """``calls`` at once through HAProxy in front of ``replicas`` servers on one PostgreSQL."""
    url_db = pg.new_database()
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(http_server_process(emu.url, "--stateless", ATLAS_MCP_DATABASE_URL=url_db))
            for _ in range(replicas)
        ]
        ports = [int(url.rsplit(":", 1)[1]) for url, _, _ in started]
        lb = stack.enter_context(Balancer(ports, sticky=False))
        asyncio.run(lean_load(lb.url, 10 * replicas, replicas, dict(LOAD_ARGUMENTS)))  # warm each one
        emu.reset()
        pids = [pid for _, pid, _ in started]
        assert lb.proc is not None and pg.proc is not None
        before = [sum(cpu_seconds(pid) for pid in pids), _db_cpu(pg), cpu_seconds(lb.proc.pid),
                  cpu_seconds(emu.pid), time.process_time()]  # fmt: skip
        run = asyncio.run(lean_load(lb.url, calls, max(1, calls // 5), dict(LOAD_ARGUMENTS)))
        after = [sum(cpu_seconds(pid) for pid in pids), _db_cpu(pg), cpu_seconds(lb.proc.pid),
                 cpu_seconds(emu.pid), time.process_time()]  # fmt: skip
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return Scaled(replicas, calls, run.completed, run.wall, median(run.latencies), *spent,
                  first_error=run.errors[0] if run.errors else "")  # fmt: skip


def section(ctx: Context) -> Section:
    s = Section("The shared store: PostgreSQL against SQLite, and 1, 2 and 3 replicas behind HAProxy")
    missing = postgres_missing() or haproxy_missing()
    if missing:
        s.add(f"Not measured on this machine: {missing}.")
        s.rows.append(
            Row("The store: PostgreSQL vs SQLite, replicas behind HAProxy", f"not measured ({missing})")
        )
        return s
    p = plan(ctx)
    with emulator_process(p.latency) as emu, TempPostgres() as pg:
        stores = compare_stores(emu, pg, p, ctx.tmp)
        scaled = []
        for replicas in REPLICAS:
            log(f"store: {replicas} replica(s) behind HAProxy, {p.scaling} calls")
            scaled.append(scale(emu, pg, replicas, p.scaling))
    _write_stores(s, p, stores)
    _write_scaling(s, p, scaled)
    return s


def _write_stores(s: Section, p: Plan, stores: list[StoreRuns]) -> None:
    s.add(
        "One `serve --transport http --stateless` process per store, against the emulator (every job",
        f"takes {p.latency:g} s), the two stores' rounds interleaved ({p.rounds} round(s)). Each round:",
        f"{p.sequential} `generate_image` calls one after the other (the latency of a paid call: reserve,",
        f"POST, record the id, wait, settle, history), then {p.concurrent} at once (the raw-HTTP client).",
        "PostgreSQL runs on this machine (a throwaway cluster, fsync off), SQLite is the default file",
        "in a fresh state folder. Server CPU is the server process's own; PostgreSQL's is that of its",
        "processes.",
    )
    s.add("")
    rows = []
    for runs in stores:
        rows.append([
            runs.name,
            ms(median(runs.latencies)),
            ms(pct(runs.latencies, 95)),
            ms(median(runs.sequential_cpu)),
            ms(median(runs.concurrent_p50)),
            ms(median(runs.concurrent_cpu)),
            ms(median(runs.database_cpu)) if runs.name == "PostgreSQL" else "-",
            str(len(runs.errors)),
        ])  # fmt: skip
    s.table(
        [
            "store",
            "p50 one at a time",
            "p95 one at a time",
            "server CPU per call (one at a time)",
            f"p50 of {p.concurrent} at once",
            "server CPU per call (at once)",
            "PostgreSQL CPU per call",
            "failed calls",
        ],  # fmt: skip
        rows,
    )
    lite, pg = stores
    s.rows.append(
        Row(
            "A paid call on PostgreSQL vs SQLite: added median latency; server CPU per call",
            f"{ms(median(pg.latencies) - median(lite.latencies))} "
            f"({ms(median(lite.latencies))} -> {ms(median(pg.latencies))}); "
            f"{ms(median(lite.concurrent_cpu))} -> {ms(median(pg.concurrent_cpu))} "
            f"(+{ms(median(pg.database_cpu))} in PostgreSQL)",
        )
    )


def _write_scaling(s: Section, p: Plan, scaled: list[Scaled]) -> None:
    s.add(
        f"Then {p.scaling} calls at once through HAProxy (round robin) in front of 1, 2 and 3 replicas",
        "sharing one PostgreSQL database, every process on this machine: the replicas, PostgreSQL,",
        "HAProxy, the emulator and this client. CPU seconds per process group over the run.",
    )
    s.add("")
    failures = [f"{x.replicas} replica(s): {x.first_error[:200]}" for x in scaled if x.first_error]
    s.table(
        [
            "replicas",
            "completed",
            "wall",
            "calls/s",
            "p50",
            "replicas CPU",
            "PostgreSQL CPU",
            "HAProxy CPU",
            "emulator CPU",
            "client CPU",
        ],  # fmt: skip
        [
            [
                str(x.replicas),
                f"{x.completed}/{x.calls}",
                secs(x.wall),
                f"{x.completed / x.wall:.0f}",
                ms(x.p50),
                secs(x.cpu_replicas),
                secs(x.cpu_database),
                secs(x.cpu_balancer),
                secs(x.cpu_emulator),
                secs(x.cpu_client),
            ]  # fmt: skip
            for x in scaled
        ],
    )
    if failures:
        s.add("First failure of each run that had one: " + "; ".join(failures))
        s.add("")
    total = [x.cpu_replicas + x.cpu_database + x.cpu_balancer + x.cpu_emulator + x.cpu_client for x in scaled]
    busiest = max(zip(total, scaled, strict=True), key=lambda pair: pair[0] / pair[1].wall)
    s.add(
        "What limits it: every process shares the machine's cores, so the CPU all of them need per call",
        f"is the ceiling (at {busiest[1].replicas} replica(s) the processes together used",
        f"{busiest[0] / busiest[1].wall:.1f} cores on average over the run). More replicas add",
        "concurrency, not cores; past the cores they only share them. On separate machines each replica",
        "brings its own cores, and the shared database is the next limit: one reservation, one id and",
        "one charge transaction per batch of concurrent calls.",
    )
    s.rows.append(
        Row(
            "Throughput through HAProxy with 1, 2, 3 replicas on one PostgreSQL (calls/s)",
            ", ".join(f"{x.completed / x.wall:.0f}" for x in scaled)
            + f" ({scaled[0].calls} calls at once; {len(REPLICAS)} replicas share this machine's cores)",
        )
    )
