"""Where a server's CPU goes: py-spy samples of its process, summed per part (when py-spy, the
``bench`` extra, is installed)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Parts of the server, each with the top-level packages whose frames count for it.
PARTS = {
    "Pillow (thumbnails, in worker threads)": ("PIL",),
    "pydantic (validation, serialisation)": ("pydantic", "pydantic_core"),
    "MCP SDK (sessions, JSON-RPC, streams)": ("mcp", "mcp_types"),
    "HTTP server (uvicorn, starlette, sse)": ("uvicorn", "starlette", "sse_starlette", "httptools"),
    "HTTP client to Atlas (httpx, aiohttp)": ("httpx", "httpcore", "aiohttp", "yarl", "multidict"),
    "event loop (asyncio, anyio)": ("uvloop", "anyio", "asyncio", "selectors"),
    "HTTP/1.1 parsing (h11, both sides)": ("h11",),
    "json": ("json",),
    "logging": ("logging",),
    "atlas_image_mcp (this package)": ("atlas_image_mcp",),
}
PART_OF = {package: part for part, packages in PARTS.items() for package in packages}
OTHER = "other (stdlib, threads)"


@dataclass
class Profile:
    total: int  # samples
    parts: list[tuple[str, int]]  # samples per part, most first
    functions: list[tuple[str, int]]  # the 8 innermost functions seen most


@contextlib.contextmanager
def py_spy(pid: int, out: Path) -> Iterator[None]:
    """Sample ``pid`` with py-spy (raw collapsed stacks) while the block runs, when py-spy is installed."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        yield
        return
    cmd = [exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--output", str(out)]
    proc = subprocess.Popen([*cmd, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def frame_package(frame: str) -> str:
    """The top-level package of a py-spy frame such as ``name (pkg/sub/file.py:12)``."""
    where = frame.rpartition("(")[2]
    path = where.split(":")[0].lstrip("<").replace("\\", "/")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    if "lib/python3" in path:
        path = path.split("lib/python3", 1)[1].split("/", 1)[-1]
    return path.split("/")[0].removesuffix(".py")


def _part(frames: list[str]) -> str:
    """The part of the innermost frame that belongs to a known package."""
    for frame in reversed(frames):
        part = PART_OF.get(frame_package(frame))
        if part:
            return part
    return OTHER


def summarise(path: Path) -> Profile | None:
    """Samples per part and the top innermost functions of py-spy's raw output (None: no profile)."""
    if not path.exists():
        return None
    parts: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        functions[frames[-1] if frames else "?"] += int(count)
        parts[_part(frames)] += int(count)
    return Profile(sum(parts.values()), parts.most_common(), functions.most_common(8))
