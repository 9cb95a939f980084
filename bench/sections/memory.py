"""Section: memory, the resident set of the HTTP server measured by the concurrency section."""

from __future__ import annotations

from bench.report import Context, Row, Section
from bench.sections.concurrency import LoadResults
from bench.stats import mb


def section(ctx: Context) -> Section:
    s = Section("Memory (resident set of the server process)")
    load = ctx.shared.get("load")
    if not isinstance(load, LoadResults):
        s.add("Not measured: the concurrency section did not run.")
        return s
    level = next((r for r in load.sdk if r.calls == 200), max(load.sdk, key=lambda r: r.calls))
    rows = [
        ["HTTP server, idle after start", mb(load.rss_idle_start)],
        ["HTTP server, idle after the first calls", mb(load.rss_idle_warm)],
        [f"HTTP server, peak under {level.calls} concurrent calls (SDK client)", mb(level.rss_peak)],
        ["HTTP server, idle after all the load above", mb(load.rss_idle_end)],
    ]
    s.table(["state", "RSS"], rows)
    s.rows.append(
        Row(
            "Memory idle and under 200 calls",
            f"{mb(load.rss_idle_start)} idle, {mb(level.rss_peak)} at {level.calls} calls",
        )
    )
    return s
