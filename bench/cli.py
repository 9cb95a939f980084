"""Benchmark of atlas-image-mcp against the Atlas emulator on loopback; writes a Markdown report.

    python bench/run.py [--quick] [--output PATH] [--only SECTION ...] [--no-npx] [--no-profile]

Every server and the emulator run in their own processes; this script is only the client. The
report is a table of sections (:data:`SECTIONS`), each a module of :mod:`bench.sections` whose
``section`` measures one thing and returns a :class:`~bench.report.Section`: its Markdown and its
rows for the summary table, each row a measure with its target when it has one. Three of them also
run on their own (``bench/toolsize.py``, ``bench/hostile.py``, ``bench/isolation.py``).

``--quick`` runs a few-second version of every section (short durations, few calls, no npx,
no profile): it shows the benchmark still works, asserts nothing about timings, and writes to a
temporary file (printed) unless ``--output`` is given, so it never overwrites bench/RESULTS.md.
Only the standard library and the project's own dependencies are needed (``tests/loadgen.py``
drives the SDK load); py-spy (the ``bench`` extra) adds CPU profiles when it is installed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.machine import calibration, load_average, machine
from bench.progress import log
from bench.report import Context, Section, render
from bench.sections import (
    batch,
    cold_start,
    concurrency,
    edit,
    hostile,
    isolation,
    memory,
    polling,
    store,
    tool_list,
    turns,
    workers,
)

ROOT = Path(__file__).resolve().parents[1]

#: The report, in order: (key for --only, the function that measures and writes it).
SECTIONS: list[tuple[str, Callable[[Context], Section]]] = [
    ("cold-start", cold_start.section),
    ("polling", polling.section),
    ("edit", edit.section),
    ("batch", batch.section),
    ("turns", turns.section),
    ("load", concurrency.section),
    ("memory", memory.section),
    ("workers", workers.section),
    ("store", store.section),
    ("tool-list", tool_list.section),
    ("hostile", hostile.section),
    ("isolation", isolation.section),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a short run that only shows the benchmark works"
    )
    parser.add_argument(
        "--output", type=Path, help="where to write (default bench/RESULTS.md; --quick: a temp file)"
    )
    parser.add_argument("--only", nargs="+", choices=[k for k, _ in SECTIONS], help="run these sections only")
    parser.add_argument("--no-npx", action="store_true", help="skip the official server's cold start")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    return parser.parse_args(argv)


def default_output(quick: bool) -> Path:
    if quick:
        return Path(tempfile.gettempdir()) / "atlas-image-mcp-bench-quick.md"
    return ROOT / "bench" / "RESULTS.md"


def measure(args: argparse.Namespace, tmp: str) -> list[Section]:
    """The sections asked for, in the report's order."""
    ctx = Context(
        quick=args.quick,
        npx=not (args.quick or args.no_npx),
        profile=not (args.quick or args.no_profile),
        tmp=tmp,
    )
    sections = []
    for key, section in SECTIONS:
        if args.only and key not in args.only:
            continue
        log(key)
        sections.append(section(ctx))
    return sections


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = args.output or default_output(args.quick)
    started = time.monotonic()
    info = machine()
    info["load_start"] = load_average()
    info["calibration_start"] = calibration()
    with tempfile.TemporaryDirectory(prefix="atlas-bench-") as tmp:
        sections = measure(args, tmp)
    info["load_end"] = load_average()
    info["calibration_end"] = calibration()
    report = render(args.quick, info, sections)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    log(f"wrote {output} in {time.monotonic() - started:.0f} s")
    if args.quick:
        sys.stdout.write(report)
    return 0
