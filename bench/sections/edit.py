"""Section: one edit's added latency (``edit_image`` of a picture the server made)."""

from __future__ import annotations

from bench.jobs import ARGUMENTS, SEED, Job, analyse_jobs, generate_call
from bench.report import Context, Row, Section
from bench.servers import emulator_process, stdio_server
from bench.stats import fmt_pair, median, pct

MEASURE = "One edit's added latency"


def edits(calls: int, latency: float, tmp: str) -> list[Job]:
    """One picture generated, then edited ``calls + 1`` times; the first edit is left out."""
    with emulator_process(latency) as emu, stdio_server(emu.url, tmp) as server:
        server.handshake()
        picture = generate_call(server, dict(ARGUMENTS), 0).result["structuredContent"]["outputs"][0]["url"]
        edit = {"prompt": "the same fox at night", "image": picture, "seed": SEED}
        done = [
            generate_call(server, dict(edit), n + 1, tool="edit_image", fresh=n == 0)
            for n in range(calls + 1)
        ]
        return [j for j in analyse_jobs(emu, done) if not j.fresh]


def section(ctx: Context) -> Section:
    s = Section("One edit's added latency (`edit_image`, L = 1 s)")
    calls = 2 if ctx.quick else 10
    latency = 0.4 if ctx.quick else 1.0
    try:
        jobs = edits(calls, latency, ctx.tmp)
    except (RuntimeError, KeyError, IndexError) as exc:
        s.add(f"Not measured: {str(exc)[:300]}")
        s.rows.append(Row(MEASURE, "not measured"))
        return s
    added = [j.added for j in jobs]
    s.add(
        f"A stdio server generates one picture, then edits it {calls + 1} times (`image` = its output URL,",
        f"default model and size); the first edit is left out. The emulator takes {latency:g} s per job.",
        "Added = end to end minus the job's duration: submit, detection, the download of the edited",
        "picture, its thumbnail and its save (the source picture is passed by URL, not uploaded).",
    )
    s.add("")
    s.table(
        ["calls", "added median / p95", "detection median / max", "polls per edit (median)"],
        [
            [
                str(len(jobs)),
                fmt_pair(median(added), pct(added, 95)),
                fmt_pair(median([j.detect for j in jobs]), max(j.detect for j in jobs)),
                f"{median([float(j.polls) for j in jobs]):g}",
            ]
        ],
    )
    s.rows.append(Row(f"{MEASURE} (median / p95)", fmt_pair(median(added), pct(added, 95))))
    return s
