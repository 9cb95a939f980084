"""Other processes, seen from /proc (Linux): their environment, memory, CPU time and children."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ATLAS* variable, plus ``extra``; and a state folder of its own
    (the ledger, the history), so that no server measured here writes into the user's, nor into
    another's: all removed when this process ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS", "ATLASCLOUD"))}
    env["ATLAS_MCP_STATE_DIR"] = _state_dir()
    env.update(extra)
    return env


_STATE_DIRS: list[str] = []


def _state_dir() -> str:
    if not _STATE_DIRS:
        atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _STATE_DIRS])
    _STATE_DIRS.append(tempfile.mkdtemp(prefix="atlas-bench-state-"))
    return _STATE_DIRS[-1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (bytes) of a process from /proc/<pid>/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def reset_peak(pid: int) -> bool:
    """Reset VmHWM (``echo 5 > /proc/<pid>/clear_refs``, Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return float("nan")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants (worker processes)."""
    return sum(c for c in (cpu_seconds(p) for p in process_tree(pid)) if not math.isnan(c))


def tree_rss(pid: int) -> int:
    return sum(proc_status(p).get("VmRSS", 0) for p in process_tree(pid))


class RssSampler:
    """Samples VmRSS of ``pid`` every ``interval`` seconds in a thread; ``peak`` is the maximum."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        return proc_status(self.pid).get("VmRSS", 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class TreeRssSampler(RssSampler):
    """Peak of the summed VmRSS of a process and its children (worker processes)."""

    def sample(self) -> int:
        return tree_rss(self.pid)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt a server as Ctrl-C would; kill it if it has not stopped within 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
