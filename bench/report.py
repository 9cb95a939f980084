"""The report: sections of Markdown, each with its rows for the summary table, and the whole page."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    """One line of the summary: what was measured, against which target."""

    measure: str
    result: str
    target: str = "(reported)"
    met: bool | None = None  # None: reported, no target

    def cells(self) -> list[str]:
        verdict = "" if self.met is None else ("**met**" if self.met else "**missed**")
        return [self.measure, self.result, self.target, verdict]


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def add(self, *text: str) -> None:
        self.lines.append(" ".join(text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        self.lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        self.lines.append("")


@dataclass
class Context:
    """What every section is given: the run's options and a scratch folder."""

    quick: bool  # a few-second run that only shows the benchmark works
    npx: bool  # measure the official server too (through npx)
    profile: bool  # profile the HTTP server with py-spy
    tmp: str
    shared: dict[str, object] = field(default_factory=dict)  # what one section leaves for another


def _preamble(quick: bool, m: dict[str, str]) -> list[str]:
    return [
        "# atlas-image-mcp benchmark" + (" (quick run: timings not meaningful)" if quick else ""),
        "",
        f"Measured {m['date']} by `python bench/run.py{' --quick' if quick else ''}` on: **{m['cpu']}, "
        f"{m['cores']} cores, {m['ram']} RAM**, {m['os']}; Python {m['python']}, mcp {m['mcp']}, httpx "
        f"{m['httpx']}, aiohttp {m['aiohttp']}, uvicorn {m['uvicorn']}, uvloop {m['uvloop']}, Pillow "
        f"{m['pillow']}; Node {m['node']} (for the npx run). Upstream is the bundled Atlas emulator "
        "(`python tests/emulation`: the package's emulator with the tests' request log) on loopback, "
        "in its own process; every server runs in its own process; this script is only the client. "
        "Load average (1, 5, 15 min) at the start: "
        f"{m.get('load_start', '?')}, at the end: {m.get('load_end', '?')}; a pure-Python loop of 10 "
        f"million additions took {m.get('calibration_start', '?')} at the start and "
        f"{m.get('calibration_end', '?')} at the end (~0.2 s on a quiet machine of this kind: a yardstick "
        "for how loaded the machine was).",
        "",
    ]


def _slow_machine(m: dict[str, str]) -> list[str]:
    """A warning when the yardstick ran well over its quiet time, else nothing."""
    yardstick = max(float(m.get(k, "0 s").split()[0]) for k in ("calibration_start", "calibration_end"))
    if yardstick <= 0.3:
        return []
    return [
        "**The machine ran slower than a quiet one** (other work, or its host's): the yardstick "
        f"took up to {yardstick:.2f} s instead of ~0.2 s, so wall times and CPU seconds here are "
        f"inflated by up to about {yardstick / 0.2:.1f} times; compare runs by the yardstick.",
        "",
    ]


def _summary(sections: list[Section]) -> list[str]:
    """Every row of every section, numbered by the section that has its details."""
    return [
        "## Summary",
        "",
        "Every measure of the sections below, with its target where it has one.",
        "",
        "| section | measure | result | target | |",
        "|---|---|---|---|---|",
        *(
            "| " + " | ".join([str(n), *r.cells()]) + " |"
            for n, section in enumerate(sections, start=1)
            for r in section.rows
        ),
        "",
    ]


def render(quick: bool, machine_info: dict[str, str], sections: list[Section]) -> str:
    """The whole report: the machine, the summary, then each section in order."""
    lines = _preamble(quick, machine_info) + _slow_machine(machine_info) + _summary(sections)
    for n, section in enumerate(sections, start=1):
        lines += [f"## {n}. {section.title}", "", *section.lines, ""]
    return "\n".join(lines).rstrip() + "\n"
