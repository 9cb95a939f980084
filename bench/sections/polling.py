"""Section: polling. Detection, added latency and polls per job, for real job-time distributions."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from atlas_image_mcp.polling import PollSchedule
from bench.jobs import ARGUMENTS, Call, Job, analyse_jobs, generate_call
from bench.report import Context, Row, Section
from bench.servers import DURATION_SEED, emulator_process, started_server
from bench.stats import fmt_pair, mean, median, ms, pct

DISTRIBUTIONS = [
    ("constant 1 s", "constant:1"),
    ("constant 5 s", "constant:5"),
    ("uniform 1-8 s", "uniform:1,8"),
    ("log-normal, median 3 s, sigma 0.5", "lognormal:3,0.5"),
    ("two-mode: 80% ~2 s, 20% ~20 s", "two-mode:2,20,0.8"),
]
QUICK_DISTRIBUTIONS = [("constant 0.4 s", "constant:0.4"), ("uniform 0.3-1.2 s", "uniform:0.3,1.2")]
FAST_JOB = 10.0  # the line between absolute and relative detection targets

HEADER = [
    "durations",
    "run",
    "jobs (<= 10 s / longer)",
    "added median / p95",
    "detection median / p95 / max",
    "detection > 10 s, p95 of duration",
    "polls ours: median / mean",
    "fixed 300 ms: median / mean",
    "submit / after detection (medians)",
]


def warm_run(spec: str, calls: int, tmp: str) -> list[Job]:
    """One process: call 0 is its first prediction (fresh), calls 1..n have history (warm)."""
    with emulator_process(durations=spec) as emu:
        server = started_server(emu.url, tmp)
        with server:
            done = [generate_call(server, dict(ARGUMENTS), n, fresh=n == 0) for n in range(calls + 1)]
        return analyse_jobs(emu, done)


def fresh_run(spec: str, count: int, tmp: str) -> list[Job]:
    """``count`` fresh processes, one prediction each: the first call, with nothing learned."""
    with emulator_process(durations=spec) as emu:
        done: list[Call] = []
        for n in range(count):
            with started_server(emu.url, tmp) as server:
                done.append(generate_call(server, dict(ARGUMENTS), n, fresh=True))
        return analyse_jobs(emu, done)


@dataclass
class RunStats:
    """One run's jobs, summed up; latencies and detection over the jobs up to :data:`FAST_JOB`."""

    short: int
    long: int
    added_med: float
    added_p95: float
    det_med: float
    det_p95: float
    det_max: float
    long_rel_p95: float  # detection of the longer jobs, as a share of their duration
    polls_med: float
    polls_mean: float
    fixed_med: float
    fixed_mean: float
    submit_med: float
    tail_med: float


def run_stats(jobs: list[Job]) -> RunStats:
    short = [j for j in jobs if j.duration <= FAST_JOB]
    long = [j for j in jobs if j.duration > FAST_JOB]
    polls, fixed = [float(j.polls) for j in jobs], [float(j.fixed) for j in jobs]
    return RunStats(
        short=len(short),
        long=len(long),
        added_med=median([j.added for j in short]),
        added_p95=pct([j.added for j in short], 95),
        det_med=median([j.detect for j in short]),
        det_p95=pct([j.detect for j in short], 95),
        det_max=max((j.detect for j in short), default=float("nan")),
        long_rel_p95=pct([j.detect / j.duration for j in long], 95),
        polls_med=median(polls),
        polls_mean=mean(polls),
        fixed_med=median(fixed),
        fixed_mean=mean(fixed),
        submit_med=median([j.submit for j in short]),
        tail_med=median([j.tail for j in short]),
    )


def _cells(name: str, label: str, st: RunStats) -> list[str]:
    return [
        name,
        label,
        f"{st.short} / {st.long}",
        fmt_pair(st.added_med, st.added_p95),
        f"{ms(st.det_med)} / {ms(st.det_p95)} / {ms(st.det_max)}",
        f"{100 * st.long_rel_p95:.1f}%" if st.long else "",
        f"{st.polls_med:g} / {st.polls_mean:.1f}",
        f"{st.fixed_med:g} / {st.fixed_mean:.1f}",
        fmt_pair(st.submit_med, st.tail_med),
    ]


def _rows(name: str, f: RunStats, w: RunStats) -> list[Row]:
    """The targets of one distribution, fresh and warm."""
    rows = [
        Row(
            f"Detection p95, jobs <= 10 s, {name} (fresh / warm)",
            fmt_pair(f.det_p95, w.det_p95),
            "<= 300 ms",
            f.det_p95 <= 0.300 and w.det_p95 <= 0.300,
        ),
        Row(
            f"Added latency median, jobs <= 10 s, {name} (fresh / warm)",
            fmt_pair(f.added_med, w.added_med),
            "<= 200 ms",
            f.added_med <= 0.200 and w.added_med <= 0.200,
        ),
    ]
    if f.long or w.long:
        worst = max(x for x in (f.long_rel_p95, w.long_rel_p95) if not math.isnan(x))
        rows.append(
            Row(
                f"Detection p95, jobs > 10 s, {name}",
                f"{100 * worst:.1f}% of the duration",
                "<= 10% of the duration",
                worst <= 0.10,
            )
        )
    return [*rows, _polls_row(name, f, w)]


def _polls_row(name: str, f: RunStats, w: RunStats) -> Row:
    ok = all(st.polls_mean <= st.fixed_mean + 1e-9 and st.polls_med <= st.fixed_med for st in (f, w))
    return Row(
        f"Polls per job, {name}: ours vs fixed 300 ms (median, mean; fresh / warm)",
        f"{f.polls_med:g} vs {f.fixed_med:g}, {f.polls_mean:.1f} vs {f.fixed_mean:.1f} / "
        f"{w.polls_med:g} vs {w.fixed_med:g}, {w.polls_mean:.1f} vs {w.fixed_mean:.1f}",
        "no more than fixed 300 ms",
        ok,
    )


def schedule_polls(seconds: float = 30.0) -> tuple[int, int]:
    """Polls the schedule itself makes for a job of ``seconds``, cold and once learned (no process,
    no clock)."""

    def polls(schedule: PollSchedule) -> int:
        plan, now, n = schedule.plan("m"), 0.0, 0
        while True:
            now += plan.next_delay(now)
            n += 1
            if now >= seconds - 1e-9:
                return n

    cold, warm = PollSchedule(), PollSchedule()
    for _ in range(5):
        warm.observe("m", seconds)
    return polls(cold), polls(warm)


def schedule_notes(c30: int, w30: int) -> list[str]:
    """What the schedule itself promises."""
    return [
        "The schedule (`PollSchedule`, pure tests in tests/test_polling.py): every gap is at most 0.3 s",
        "for the first 10 s of a wait and at most 10% of the time waited after, cold or learned, first",
        "call included, so a job of d seconds is seen at most 0.3 s after it completes when d <= 10 s and",
        "at most 10% of d later beyond (plus the poll's own travel). Cold it is the fixed 300 ms grid;",
        "learning only shifts that grid's phase when recent durations cluster (a 1 s model: polls at 0.1,",
        "0.4, 0.7, 1.0 s, seen at once, 4 polls like the fixed grid) and puts polls on recent durations",
        f"past 10 s. A 30 s job takes {c30} polls cold and {w30} once learned (fixed 300 ms: 100).",
        "",
    ]


def _method(s: Section, warm_calls: int, fresh_count: int) -> None:
    s.add(
        "The emulator draws each job's duration from the distribution with a fixed seed",
        f"(`--durations ... --seed {DURATION_SEED}`). *Warm*: one stdio server process makes",
        f"{warm_calls + 1} `generate_image` calls in a row (default arguments: 1024x1024, thumbnail inline,",
        f"saved); calls 1-{warm_calls} are measured, with what the process learned from the ones before.",
        f"*Fresh*: {fresh_count} new processes make one call each, plus call 0 of the warm run (nothing",
        "learned). Each distribution runs in its own emulator and processes, all distributions at once.",
        "From the emulator's request log (same monotonic clock): *detection* = completion to the",
        "arrival of the poll that saw it; *added* = end to end minus the job's own duration (so it",
        "includes the submit, the detection, the download, the thumbnail and the save; *submit* = call",
        "sent to the generation POST's arrival, *after detection* = that poll to the answer). One process",
        "starts at a time, so that a start-up does not land on the calls measured in the other runs.",
        "Targets apply to jobs up to 10 s; longer jobs are held to 10% of their duration. *Fixed 300 ms*",
        "= the polls a plain fixed 300 ms schedule makes for the same job: ceil(duration / 0.3).",
    )
    s.add("")


def measure(
    dists: list[tuple[str, str]], warm_calls: int, fresh_count: int, tmp: str
) -> dict[str, tuple[RunStats, RunStats]]:
    """Every distribution at once, each in its own emulator: (fresh, warm) stats per distribution."""
    with ThreadPoolExecutor(max_workers=2 * len(dists)) as pool:
        warm = {name: pool.submit(warm_run, spec, warm_calls, tmp) for name, spec in dists}
        fresh = {name: pool.submit(fresh_run, spec, fresh_count, tmp) for name, spec in dists}
        results = {name: (warm[name].result(), fresh[name].result()) for name, _ in dists}
    return {
        name: (
            run_stats([j for j in warm_jobs if j.fresh] + fresh_jobs),
            run_stats([j for j in warm_jobs if not j.fresh]),
        )
        for name, (warm_jobs, fresh_jobs) in results.items()
    }


def section(ctx: Context) -> Section:
    s = Section("Polling: detection, added latency and polls per job, for real job-time distributions")
    warm_calls, fresh_count = (3, 2) if ctx.quick else (30, 20)
    stats = measure(QUICK_DISTRIBUTIONS if ctx.quick else DISTRIBUTIONS, warm_calls, fresh_count, ctx.tmp)
    _method(s, warm_calls, fresh_count)
    table = []
    for name, (fresh, warm) in stats.items():
        table += [_cells(name, "fresh", fresh), _cells(name, "warm", warm)]
        s.rows += _rows(name, fresh, warm)
    s.table(HEADER, table)
    first = next(iter(stats))
    w1 = stats[first][1]
    s.rows.append(
        Row(
            f"Added latency, {first}, warm (median / p95)",
            fmt_pair(w1.added_med, w1.added_p95),
            "median <= 50 ms at L = 1 s",
            w1.added_med <= 0.050 if not ctx.quick else None,
        )
    )
    c30, w30 = schedule_polls(30.0)
    s.lines += schedule_notes(c30, w30)
    s.rows.append(
        Row(
            "Upstream polls for a 30 s prediction (first / once learned), from the schedule",
            f"{c30} / {w30} (fixed 300 ms: 100)",
            "at most 12: superseded by the detection target (a job that departs from history is still "
            "seen within 0.3 s up to 10 s, so the first 10 s take 33 polls)",
        )
    )
    return s
