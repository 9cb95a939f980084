"""The machine a run measured on: hardware, versions, and how loaded it was."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DISTRIBUTIONS = ("mcp", "httpx", "aiohttp", "pillow", "uvicorn", "uvloop", "pydantic", "atlas-image-mcp")


def _cpu() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown"


def _ram() -> str:
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        total = next(line for line in meminfo if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        return "unknown"
    return f"{int(total.split()[1]) / 1024 / 1024:.1f} GiB"


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _node() -> str:
    node = shutil.which("node")
    return (
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else "none"
    )


def machine() -> dict[str, str]:
    """cpu, cores, ram, os, python, the versions of :data:`DISTRIBUTIONS`, node and the date."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "cpu": _cpu(),
        "cores": str(cores),
        "ram": _ram(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    info.update({dist: _version(dist) for dist in DISTRIBUTIONS})
    info["node"] = _node()
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def calibration() -> str:
    """Seconds a fixed pure-Python loop takes here (10 million additions): a yardstick of CPU speed."""
    started = time.perf_counter()
    total = 0
    for n in range(10_000_000):
        total += n
    return f"{time.perf_counter() - started:.2f} s"
