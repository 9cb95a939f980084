"""Statistics of measured values, and how the report writes numbers."""

from __future__ import annotations

import math
import statistics


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def secs(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.2f} s"


def mb(nbytes: float) -> str:
    return f"{nbytes / 1024 / 1024:.0f} MB"


def fmt_pair(a: float, b: float) -> str:
    """Two durations in whole milliseconds, ``a / b``."""
    return f"{a * 1000:.0f} ms / {b * 1000:.0f} ms"
