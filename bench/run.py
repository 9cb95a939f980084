#!/usr/bin/env python3
"""Benchmark of atlas-image-mcp against the Atlas emulator on loopback; writes a Markdown report.

    python bench/run.py [--quick] [--output PATH] [--only SECTION ...] [--no-npx] [--no-profile]

Every server and the emulator run in their own processes; this script is only the client. The
report is a table of sections (:data:`SECTIONS`), each a function that measures one thing and
returns a :class:`Section`: its Markdown and its rows for the summary table, each row with the
issue whose target it checks. A section that lives in its own module (``bench/toolsize.py``,
``bench/hostile.py``) exposes ``run() -> dict`` and is shown through :func:`external`: its dict
may carry ``"rows"`` (a list of ``{"measure", "result", "target", "met", "issue"}``) and
``"markdown"`` (text for the section); anything else is shown as a table of its keys and values.

``--quick`` runs a few-second version of every section (short durations, few calls, no npx,
no profile): it shows the benchmark still works, asserts nothing about timings, and writes to a
temporary file (printed) unless ``--output`` is given, so it never overwrites bench/RESULTS.md.
Only the standard library and the project's own dependencies are needed (``tests/loadgen.py``
drives the SDK load); py-spy (the ``bench`` extra) adds CPU profiles when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import glob
import importlib.util
import inspect
import json
import math
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.loadgen, tests.emulation

import anyio  # noqa: E402
import httpx  # noqa: E402

from tests.emulation import EMULATOR_COMMAND  # noqa: E402
from tests.loadgen import LOAD_ARGUMENTS, run_load  # noqa: E402

KEY = "bench-key-0123456789"
PROTOCOL = "2025-06-18"  # understood by both servers
PROMPT = "a red fox in the snow, golden hour"
SEED = 7  # fixed: the emulator renders a picture once and then serves it like a CDN would
DURATION_SEED = 12  # the emulator's draws of per-job durations
GENERATE_PATH = "/api/v1/model/generateImage"
POLL_GLOB = "/api/v1/model/prediction/*"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_COMMAND = [sys.executable, "-m", "atlas_image_mcp"]
FIXED_STEP = 0.3  # the plain fixed schedule polls are compared with (issue 12)


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.0f} ms"  # noqa: PLR0124 (NaN check)


def secs(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds:.2f} s"  # noqa: PLR0124


def mb(nbytes: float) -> str:
    return f"{nbytes / 1024 / 1024:.0f} MB"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ATLAS* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS", "ATLASCLOUD"))}
    env.update(extra)
    return env


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


class RssSampler:
    """Samples VmRSS of ``pid`` every ``interval`` seconds in a thread; ``peak`` is the maximum."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, proc_status(self.pid).get("VmRSS", 0))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --- machine ------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")
        ]
        info["cpu"] = names[0] if names else platform.processor() or "unknown"
    except OSError:
        info["cpu"] = platform.processor() or "unknown"
    info["cores"] = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    try:
        total = next(
            line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
        )
        info["ram"] = f"{int(total.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        info["ram"] = "unknown"
    info["os"] = f"{platform.system()} {platform.release()}"
    info["python"] = platform.python_version()
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mcp", "httpx", "aiohttp", "pillow", "uvicorn", "uvloop", "pydantic", "atlas-image-mcp"):
        try:
            info[dist] = version(dist)
        except PackageNotFoundError:
            info[dist] = "not installed"
    node = shutil.which("node")
    info["node"] = (
        subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else "none"
    )
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def calibration() -> str:
    """Seconds a fixed pure-Python loop takes here (10 million additions): a yardstick of CPU speed."""
    started = time.perf_counter()
    total = 0
    for n in range(10_000_000):
        total += n
    return f"{time.perf_counter() - started:.2f} s"


# --- a raw JSON-RPC client over a child's pipes -------------------------------------------------


class RawStdio:
    """Spawn an MCP stdio server and talk newline-delimited JSON-RPC to it (no SDK in between).

    A reader thread timestamps each line as it arrives, so reading does not add to the timings.
    """

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: str | None = None) -> None:
        self.started = time.monotonic()
        self.errlog = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errlog, env=env, cwd=cwd
        )
        self.lines: queue.Queue[tuple[float, bytes | None]] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line))
        self.lines.put((time.monotonic(), None))

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 120.0
    ) -> tuple[dict[str, Any], float]:
        """Send a request; return (response, monotonic time it arrived). Notifications are skipped."""
        self.next_id += 1
        rid = self.next_id
        self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})
        deadline = time.monotonic() + timeout
        while True:
            try:
                at, line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"{method}: no answer in {timeout} s; stderr: {self.stderr_tail()}"
                ) from None
            if line is None:
                raise RuntimeError(f"the server exited during {method}; stderr: {self.stderr_tail()}")
            message = json.loads(line)
            if message.get("id") == rid and ("result" in message or "error" in message):
                return message, at

    def handshake(self, timeout: float = 120.0) -> float:
        """initialize + notifications/initialized + tools/list; return when tools/list was answered."""
        init, _ = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
            timeout,
        )
        if "error" in init:
            raise RuntimeError(f"initialize failed: {init['error']}")
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools, at = self.request("tools/list", {}, timeout)
        self.tool_count = len(tools.get("result", {}).get("tools", []))
        return at

    def stderr_tail(self) -> str:
        self.errlog.seek(0)
        return self.errlog.read()[-600:].decode(errors="replace")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.errlog.close()

    def __enter__(self) -> RawStdio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the emulator and the HTTP server in their own processes ------------------------------------


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
    return sum(c for c in (cpu_seconds(p) for p in process_tree(pid)) if c == c)  # noqa: PLR0124


def tree_rss(pid: int) -> int:
    return sum(proc_status(p).get("VmRSS", 0) for p in process_tree(pid))


class TreeRssSampler(RssSampler):
    """Peak of the summed VmRSS of a process and its children (worker processes)."""

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)


# --- the emulator and the HTTP server in their own processes ------------------------------------


@dataclass
class Emulator:
    url: str
    pid: int
    http: httpx.Client = field(repr=False)

    def configure(self, **config: Any) -> None:
        self.http.post("/_emulator/config", json=config).raise_for_status()

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()

    def requests(self, method: str = "*", path: str = "*") -> tuple[int, list[dict[str, Any]]]:
        body = self.http.get("/_emulator/requests", params={"method": method, "path": path}).json()
        return int(body["count"]), list(body["requests"])

    def count(self, method: str = "*", path: str = "*") -> int:
        return self.requests(method, path)[0]

    def predictions(self) -> dict[str, dict[str, Any]]:
        body = self.http.get("/_emulator/predictions").json()
        return {row["id"]: row for row in body["predictions"]}


@contextlib.contextmanager
def emulator_process(latency: float = 1.0, durations: str | None = None) -> Iterator[Emulator]:
    port = free_port()
    cmd = [*EMULATOR_COMMAND, "--port", str(port), "--latency", str(latency)]
    if durations:
        cmd += ["--durations", durations, "--seed", str(DURATION_SEED)]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=60)
    try:
        _wait_ready(http, "/api/v1/models", proc)
        yield Emulator(url=url, pid=proc.pid, http=http)
    finally:
        http.close()
        _stop(proc)


@contextlib.contextmanager
def http_server_process(
    emulator_url: str, *args: str, ready_timeout: float = 60.0, **env: str
) -> Iterator[tuple[str, int, Path]]:
    """``atlas-image-mcp serve --transport http [args]``; yields (base URL, pid, stderr log path)."""
    port = free_port()
    fd, name = tempfile.mkstemp(prefix="atlas-bench-http-", suffix=".log")
    os.close(fd)
    logfile = Path(name)
    environment = clean_env(ATLASCLOUD_BASE_URL=emulator_url, ATLASCLOUD_API_KEY=KEY, **env)
    cmd = [*SERVER_COMMAND, "serve", "--transport", "http", "--port", str(port), *args]
    with logfile.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            _wait_ready(http, "/healthz", proc, ready_timeout)
        workers = args.count("--workers") and int(args[args.index("--workers") + 1])
        deadline = time.monotonic() + ready_timeout
        while workers and logfile.read_text(errors="replace").count("Application startup complete") < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all {workers} workers started")
            time.sleep(0.1)
        yield url, proc.pid, logfile
    finally:
        _stop(proc)
        logfile.unlink(missing_ok=True)


def _wait_ready(http: httpx.Client, path: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {path} answered")
        with contextlib.suppress(httpx.HTTPError):
            if http.get(path, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not answer within {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def stdio_server(emulator_url: str, output_dir: str, **env: str) -> RawStdio:
    environment = clean_env(
        ATLASCLOUD_BASE_URL=emulator_url, ATLASCLOUD_API_KEY=KEY, ATLAS_MCP_OUTPUT_DIR=output_dir, **env
    )
    return RawStdio([sys.executable, "-m", "atlas_image_mcp"], environment, cwd=tempfile.gettempdir())


# --- the report's parts ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the summary: what was measured against which issue's target."""

    issue: str
    measure: str
    result: str
    target: str = "(reported)"
    met: bool | None = None  # None: reported, no target

    def cells(self) -> list[str]:
        verdict = "" if self.met is None else ("**met**" if self.met else "**missed**")
        return [self.issue, self.measure, self.result, self.target, verdict]


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
    quick: bool
    args: argparse.Namespace
    tmp: str
    shared: dict[str, Any] = field(default_factory=dict)  # what one section leaves for another


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def fmt_pair(a: float, b: float, unit: Callable[[float], str] = lambda s: f"{s * 1000:.0f} ms") -> str:
    return f"{unit(a)} / {unit(b)}"


# --- cold start (helpers) ---


def npx_package_json() -> Path | None:
    found = sorted(glob.glob(os.path.expanduser("~/.npm/_npx/*/node_modules/atlascloud-mcp/package.json")))
    return Path(found[-1]) if found else None


def cold_start(runs: int, with_npx: bool, warm_up: bool = True) -> dict[str, Any]:
    """Median time from spawn to the tools/list answer, ours and the official server's, interleaved."""
    candidates: dict[str, tuple[list[str], dict[str, str]]] = {
        "atlas-image-mcp (python -m atlas_image_mcp)": (
            [sys.executable, "-m", "atlas_image_mcp"],
            clean_env(),
        ),
    }
    notes: list[str] = []
    npx = shutil.which("npx")
    if with_npx and npx:
        env = clean_env(ATLASCLOUD_API_KEY="dummy-key-for-startup")
        log("pre-fetching atlascloud-mcp with npx (not timed)")
        pre = subprocess.run(
            [npx, "-y", "atlascloud-mcp"], stdin=subprocess.DEVNULL, capture_output=True, timeout=300, env=env
        )
        if pre.returncode == 0:
            candidates["atlascloud-mcp (npx -y atlascloud-mcp)"] = ([npx, "-y", "atlascloud-mcp"], env)
            pkg = npx_package_json()
            if pkg is not None:
                version = json.loads(pkg.read_text()).get("version", "?")
                notes.append(f"atlascloud-mcp {version} from the npx cache")
                entry = pkg.parent / "dist" / "index.js"
                node = shutil.which("node")
                if entry.exists() and node:
                    candidates["atlascloud-mcp (node dist/index.js, no npx)"] = ([node, str(entry)], env)
        else:
            notes.append(
                f"npx pre-fetch failed (exit {pre.returncode}): {pre.stderr.decode(errors='replace')[-300:]}"
            )
    elif with_npx:
        notes.append("npx not found: the official server was not measured")
    if warm_up:
        candidates["python -c 'import mcp.server.mcpserver' (SDK import only, reference)"] = (
            [
                sys.executable,
                "-c",
                "import mcp.server.mcpserver, sys; sys.stdout.write('ready\\n'); sys.stdout.flush()",
            ],
            clean_env(),
        )

    def once(cmd: list[str], env: dict[str, str]) -> float:
        if "-c" in cmd:  # the import reference: spawn until it says it has imported the SDK
            started = time.monotonic()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            proc.stdout.readline()
            ready = time.monotonic() - started
            proc.wait(30)
            return ready
        with RawStdio(cmd, env, cwd=tempfile.gettempdir()) as server:
            answered = server.handshake()
            return answered - server.started

    times: dict[str, list[float]] = {name: [] for name in candidates}
    for cmd, env in candidates.values() if warm_up else ():  # warm-up: page cache, .pyc, npx cache
        once(cmd, env)
    for _ in range(runs):
        for name, (cmd, env) in candidates.items():  # interleaved, so drift hits all alike
            times[name].append(once(cmd, env))
    return {"times": times, "notes": notes}


def import_profile() -> list[tuple[str, float]]:
    """``python -X importtime`` of the stdio path up to tools/list: self time summed per package."""
    env = clean_env()
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "atlas_image_mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    _, err = proc.communicate(b"".join(json.dumps(m).encode() + b"\n" for m in messages), timeout=60)
    groups = {
        "mcp": "MCP SDK (mcp, mcp_types)",
        "mcp_types": "MCP SDK (mcp, mcp_types)",
        "pydantic": "pydantic",
        "pydantic_core": "pydantic",
        "annotated_types": "pydantic",
        "typing_extensions": "pydantic",
        "typing_inspection": "pydantic",
        "httpx": "httpx/httpcore",
        "httpcore": "httpx/httpcore",
        "h11": "httpx/httpcore",
        "certifi": "httpx/httpcore",
        "idna": "httpx/httpcore",
        "sniffio": "httpx/httpcore",
        "anyio": "anyio",
        "starlette": "starlette/uvicorn/sse (imported by the SDK)",
        "uvicorn": "starlette/uvicorn/sse (imported by the SDK)",
        "sse_starlette": "starlette/uvicorn/sse (imported by the SDK)",
        "jwt": "other libraries the SDK imports (auth, opentelemetry, httpx2, multipart)",
        "cryptography": "other libraries the SDK imports (auth, opentelemetry, httpx2, multipart)",
        "opentelemetry": "other libraries the SDK imports (auth, opentelemetry, httpx2, multipart)",
        "httpx2": "other libraries the SDK imports (auth, opentelemetry, httpx2, multipart)",
        "python_multipart": "other libraries the SDK imports (auth, opentelemetry, httpx2, multipart)",
        "multipart": "other libraries the SDK imports (auth, opentelemetry, httpx2, multipart)",
        "click": "httpx's CLI extras when installed (click, pygments, rich)",
        "pygments": "httpx's CLI extras when installed (click, pygments, rich)",
        "rich": "httpx's CLI extras when installed (click, pygments, rich)",
        "atlas_image_mcp": "atlas_image_mcp (this package)",
        "PIL": "Pillow",
    }
    totals: Counter[str] = Counter()
    for line in err.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.split("|")
        try:
            self_us = int(parts[0].split(":")[1])
        except (IndexError, ValueError):
            continue
        top = parts[2].strip().split(".")[0]
        name = groups.get(top)
        if name is None:
            name = "stdlib" if top in sys.stdlib_module_names or top.startswith("_") else "other third party"
        totals[name] += self_us / 1e6
    return totals.most_common()


# --- 2 and 3. added latency and polling cost over stdio -------------------------------------------


# --- the raw-HTTP MCP client ---


def sessions_for(calls: int) -> int:
    return max(1, min(calls // 5, 100))


# A minimal MCP client over raw HTTP/1.1 (asyncio streams), to tell the server's own cost from the
# MCP SDK client's: the same calls as run_load, without pydantic, httpx2 or schema validation.


async def _http_call(
    host: str, port: int, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        payload = json.dumps(body).encode()
        head = [
            "POST /mcp HTTP/1.1",
            f"Host: {host}:{port}",
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
            f"Content-Length: {len(payload)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        response_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
        if response_headers.get("transfer-encoding") == "chunked":
            chunks = []
            while (size := int((await reader.readline()).strip() or b"0", 16)) > 0:
                chunks.append(await reader.readexactly(size))
                await reader.readline()
            data = b"".join(chunks)
        elif "content-length" in response_headers:
            data = await reader.readexactly(int(response_headers["content-length"]))
        else:
            data = await reader.read()
        return status, response_headers, data
    finally:
        writer.close()


def _jsonrpc_result(data: bytes) -> dict[str, Any] | None:
    """The JSON-RPC answer in a JSON or SSE body (the last ``data:`` line that carries an id)."""
    text = data.decode(errors="replace").strip()
    if text.startswith("{"):
        return json.loads(text)
    found = None
    for line in text.splitlines():
        if line.startswith("data:"):
            message = json.loads(line[5:])
            if "id" in message and ("result" in message or "error" in message):
                found = message
    return found


async def lean_load(url: str, calls: int, sessions: int, arguments: dict[str, Any]) -> dict[str, Any]:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    ids: list[dict[str, str]] = []
    for _ in range(sessions):
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "lean", "version": "1"},
            },
        }
        _, headers, _ = await _http_call(host, int(port), init, {})
        session = {"mcp-protocol-version": PROTOCOL}
        if "mcp-session-id" in headers:  # none when the server is stateless
            session["mcp-session-id"] = headers["mcp-session-id"]
        await _http_call(host, int(port), {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        ids.append(session)
    latencies: list[float] = []
    completed = 0
    errors: list[str] = []

    async def one(n: int) -> None:
        nonlocal completed
        sent = time.perf_counter()
        body = {
            "jsonrpc": "2.0",
            "id": n + 1,
            "method": "tools/call",
            "params": {"name": "generate_image", "arguments": arguments},
        }
        _, _, data = await _http_call(host, int(port), body, ids[n % sessions])
        latencies.append(time.perf_counter() - sent)
        answer = _jsonrpc_result(data) or {}
        result = answer.get("result") or {}
        if not result.get("isError") and (result.get("structuredContent") or {}).get("status") == "completed":
            completed += 1
        elif not errors:
            text = " ".join(str(b.get("text", "")) for b in result.get("content") or [])
            status = (result.get("structuredContent") or {}).get("status")
            text = text.removeprefix("Error executing tool generate_image: ")
            errors.append(
                f"{status or 'error'}: {text[:150]}" if result else data.decode(errors="replace")[:150]
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(calls)))
    return {
        "wall": time.perf_counter() - started,
        "completed": completed,
        "latencies": latencies,
        "first_error": errors[0] if errors else "",
    }


# --- py-spy profiles ---


@contextlib.contextmanager
def py_spy(pid: int, out: Path) -> Iterator[None]:
    """Sample ``pid`` with py-spy (raw collapsed stacks) while the block runs, when py-spy is installed."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        yield
        return
    proc = subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


PROFILE_BUCKETS = {
    "PIL": "Pillow (thumbnails, in worker threads)",
    "pydantic": "pydantic (validation, serialisation)",
    "pydantic_core": "pydantic (validation, serialisation)",
    "mcp": "MCP SDK (sessions, JSON-RPC, streams)",
    "mcp_types": "MCP SDK (sessions, JSON-RPC, streams)",
    "uvicorn": "HTTP server (uvicorn, starlette, sse)",
    "starlette": "HTTP server (uvicorn, starlette, sse)",
    "sse_starlette": "HTTP server (uvicorn, starlette, sse)",
    "httpx": "HTTP client to Atlas (httpx, aiohttp)",
    "httpcore": "HTTP client to Atlas (httpx, aiohttp)",
    "aiohttp": "HTTP client to Atlas (httpx, aiohttp)",
    "yarl": "HTTP client to Atlas (httpx, aiohttp)",
    "multidict": "HTTP client to Atlas (httpx, aiohttp)",
    "httptools": "HTTP server (uvicorn, starlette, sse)",
    "uvloop": "event loop (asyncio, anyio)",
    "h11": "HTTP/1.1 parsing (h11, both sides)",
    "anyio": "event loop (asyncio, anyio)",
    "asyncio": "event loop (asyncio, anyio)",
    "selectors": "event loop (asyncio, anyio)",
    "json": "json",
    "logging": "logging",
    "atlas_image_mcp": "atlas_image_mcp (this package)",
}


def _frame_package(frame: str) -> str:
    """The top-level package of a py-spy frame such as ``name (pkg/sub/file.py:12)``."""
    where = frame.rpartition("(")[2]
    path = where.split(":")[0].lstrip("<").replace("\\", "/")
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = (
                path.split(marker, 1)[1].split("/", 1)[-1]
                if marker == "lib/python3"
                else path.split(marker, 1)[1]
            )
    return path.split("/")[0].removesuffix(".py")


def summarise_profile(path: Path) -> dict[str, Any]:
    """Samples per part (by the innermost frame of a known package) and the top innermost functions."""
    if not path.exists():
        return {}
    buckets: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        functions[frames[-1] if frames else "?"] += n
        bucket = "other (stdlib, threads)"
        for frame in reversed(frames):
            name = PROFILE_BUCKETS.get(_frame_package(frame))
            if name:
                bucket = name
                break
        buckets[bucket] += n
    return {"total": total, "buckets": buckets.most_common(), "functions": functions.most_common(8)}


def turns(latency: float, wait_bound: float = 45.0) -> dict[str, Any]:
    """Tool calls from prompt to picture: ours (one while L < the wait bound) vs submit-then-poll."""
    ours = 1 if latency < wait_bound else 1 + math.ceil((latency - wait_bound) / 30.0)
    official = {}
    for period in (3.0, 10.0, 30.0):
        polls = max(1, math.ceil(latency / period))
        official[period] = {"calls": 1 + polls, "picture_after": polls * period}
    return {"latency": latency, "ours": ours, "official": official}


# --- the report ----------------------------------------------------------------------------------


# --- cold start ------------------------------------------------------------------------------------


def compile_package() -> Path:
    """Compile the package's modules to .pyc, as installing its wheel does.

    This machine exports PYTHONDONTWRITEBYTECODE=1, so an editable install would compile every
    module of ours again at each start; a user's ``pip install`` compiles them once.
    """
    import atlas_image_mcp

    package = Path(atlas_image_mcp.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=False, env=clean_env())
    return package


def cold_start_section(ctx: Context) -> Section:
    s = Section("Cold start (spawn to the `tools/list` answer)")
    package = compile_package()
    runs = 2 if ctx.quick else 10
    cs = cold_start(runs, with_npx=not (ctx.quick or ctx.args.no_npx), warm_up=not ctx.quick)
    imports = [] if ctx.quick else import_profile()
    times = cs["times"]
    ours_name = next(n for n in times if n.startswith("atlas-image-mcp"))
    npx_name = next((n for n in times if "npx -y" in n), None)
    local_name = next((n for n in times if "dist/index.js" in n), None)
    ours = median(times[ours_name])
    s.add(
        "Raw JSON-RPC over the child's pipes: `initialize`, `notifications/initialized`, `tools/list`;",
        "time from spawn to the `tools/list` response.",
        f"{'One warm-up each, then ' if not ctx.quick else ''}{len(times[ours_name])} runs, interleaved.",
        "npx was run once before timing (not timed), so the runs measure a launch from npx's cache, not",
        "a download; npx still resolves the package against the registry on each launch, as it does for",
        "users. The official server starts without a key (it reads it per call); it got a dummy one.",
        f"Our modules were compiled to .pyc first (`python -m compileall {package.name}`), as a",
        "`pip install` of the wheel does: this machine exports PYTHONDONTWRITEBYTECODE=1, under which",
        "an editable install would compile them again at every start (what a user never pays).",
    )
    s.add("")
    s.table(
        ["server", "median", "min", "max"],
        [[n, ms(median(v)), ms(min(v)), ms(max(v))] for n, v in times.items()],
    )
    for note in cs["notes"]:
        s.add(f"- {note}")
    if cs["notes"]:
        s.add("")
    if npx_name:
        theirs = median(times[npx_name])
        s.add(f"Ratio ours / npx: **{ours / theirs:.2f}** ({ms(ours)} vs {ms(theirs)}).")
        s.rows.append(
            Row(
                "6, 12",
                "Cold start to `tools/list` (median)",
                f"{ms(ours)} vs npx {ms(theirs)} (ratio {ours / theirs:.2f})",
                "no slower than `npx -y atlascloud-mcp`",
                ours <= theirs,
            )
        )
    else:
        s.rows.append(Row("6, 12", "Cold start to `tools/list` (median)", ms(ours), "no slower than npx"))
    if local_name:
        local = median(times[local_name])
        s.add(
            "Ratio ours / a local install of the official server (`node dist/index.js`):",
            f"**{ours / local:.2f}**.",
        )
        s.rows.append(
            Row(
                "12",
                "Cold start vs the official server installed locally (`node dist/index.js`)",
                f"ratio {ours / local:.2f} ({ms(ours)} vs {ms(local)})",
            )
        )
    s.add("")
    if imports:
        total = sum(v for _, v in imports)
        s.add(
            "Where the stdio start-up's imports go (`python -X importtime -m atlas_image_mcp`, self time",
            f"summed per package, {ms(total)} in all; importtime itself inflates these):",
        )
        s.add("")
        s.table(["package", "import time"], [[n, ms(v)] for n, v in imports])
    return s


# --- polling: detection, added latency and polls, per duration distribution ------------------------

DISTRIBUTIONS = [
    ("constant 1 s", "constant:1"),
    ("constant 5 s", "constant:5"),
    ("uniform 1-8 s", "uniform:1,8"),
    ("log-normal, median 3 s, sigma 0.5", "lognormal:3,0.5"),
    ("two-mode: 80% ~2 s, 20% ~20 s", "two-mode:2,20,0.8"),
]
QUICK_DISTRIBUTIONS = [("constant 0.4 s", "constant:0.4"), ("uniform 0.3-1.2 s", "uniform:0.3,1.2")]
FAST_JOB = 10.0  # the issue's line between absolute and relative detection targets


@dataclass
class Job:
    duration: float  # the emulator's own: submit to completion
    added: float  # end to end minus the duration
    detect: float  # completion to the arrival of the poll that saw it
    polls: int
    fixed: int  # polls a plain fixed 300 ms schedule makes for this duration
    fresh: bool
    submit: float = float("nan")  # call sent -> the generation POST arrived upstream
    tail: float = float("nan")  # the poll that saw it done -> the answer back (download, thumbnail, save)


def generate_call(
    server: RawStdio, arguments: dict[str, Any], token: int, tool: str = "generate_image"
) -> tuple[dict[str, Any], float, float]:
    sent = time.monotonic()
    answer, arrived = server.request(
        "tools/call", {"name": tool, "arguments": arguments, "_meta": {"progressToken": token}}
    )
    if "error" in answer or answer["result"].get("isError"):
        raise RuntimeError(f"{tool} failed: {json.dumps(answer)[:500]}")
    return answer["result"], sent, arrived


def analyse_jobs(emu: Emulator, calls: list[tuple[dict[str, Any], float, float, bool]]) -> list[Job]:
    predictions = emu.predictions()
    jobs = []
    for result, sent, arrived, fresh in calls:
        pid = (result.get("structuredContent") or {})["prediction_id"]
        row = predictions[pid]
        duration = row["done_at"] - row["submitted_at"]
        _, polls = emu.requests("GET", f"/api/v1/model/prediction/{pid}")
        seen = [p["at"] for p in polls if p["at"] >= row["done_at"]]
        jobs.append(
            Job(
                duration=duration,
                added=arrived - sent - duration,
                detect=(seen[0] - row["done_at"]) if seen else float("nan"),
                polls=len(polls),
                fixed=max(1, math.ceil(duration / FIXED_STEP - 1e-9)),
                fresh=fresh,
                submit=row["submitted_at"] - sent,
                tail=(arrived - seen[0]) if seen else float("nan"),
            )
        )
    return jobs


ARGUMENTS = {"prompt": PROMPT, "seed": SEED}  # defaults: 1024x1024 schnell, thumbnail inline, saved


#: One process starts at a time: a start-up takes a core for most of a second, which would otherwise
#: land on the calls being measured in the other runs.
STARTING = threading.Lock()


def started_server(emulator_url: str, tmp: str) -> RawStdio:
    """A stdio server that has answered ``tools/list``, started while no other one starts."""
    with STARTING:
        server = stdio_server(emulator_url, tmp)
        try:
            server.handshake()
        except BaseException:
            server.close()
            raise
    return server


def warm_run(spec: str, calls: int, tmp: str) -> list[Job]:
    """One process: call 0 is its first prediction (fresh), calls 1..n have history (warm)."""
    with emulator_process(durations=spec) as emu:
        server = started_server(emu.url, tmp)
        done = []
        with server:
            for n in range(calls + 1):
                result, sent, arrived = generate_call(server, dict(ARGUMENTS), n)
                done.append((result, sent, arrived, n == 0))
        return analyse_jobs(emu, done)


def fresh_run(spec: str, count: int, tmp: str) -> list[Job]:
    """``count`` fresh processes, one prediction each: the first call, with nothing learned."""
    with emulator_process(durations=spec) as emu:
        done = []
        for n in range(count):
            with started_server(emu.url, tmp) as server:
                result, sent, arrived = generate_call(server, dict(ARGUMENTS), n)
                done.append((result, sent, arrived, True))
        return analyse_jobs(emu, done)


def _stats(jobs: list[Job]) -> dict[str, Any]:
    short = [j for j in jobs if j.duration <= FAST_JOB]
    long = [j for j in jobs if j.duration > FAST_JOB]
    return {
        "n": len(jobs),
        "short": len(short),
        "long": len(long),
        "added_med": median([j.added for j in short]),
        "added_p95": pct([j.added for j in short], 95),
        "det_med": median([j.detect for j in short]),
        "det_p95": pct([j.detect for j in short], 95),
        "det_max": max((j.detect for j in short), default=float("nan")),
        "long_rel_p95": pct([j.detect / j.duration for j in long], 95),
        "polls_med": median([float(j.polls) for j in jobs]),
        "polls_mean": statistics.fmean([j.polls for j in jobs]) if jobs else float("nan"),
        "fixed_med": median([float(j.fixed) for j in jobs]),
        "fixed_mean": statistics.fmean([j.fixed for j in jobs]) if jobs else float("nan"),
        "submit_med": median([j.submit for j in short]),
        "tail_med": median([j.tail for j in short]),
    }


def polling_section(ctx: Context) -> Section:
    s = Section("Polling: detection, added latency and polls per job, for real job-time distributions")
    dists = QUICK_DISTRIBUTIONS if ctx.quick else DISTRIBUTIONS
    warm_calls, fresh_count = (3, 2) if ctx.quick else (30, 20)
    with ThreadPoolExecutor(max_workers=2 * len(dists)) as pool:
        warm = {name: pool.submit(warm_run, spec, warm_calls, ctx.tmp) for name, spec in dists}
        fresh = {name: pool.submit(fresh_run, spec, fresh_count, ctx.tmp) for name, spec in dists}
        results = {name: (warm[name].result(), fresh[name].result()) for name, _ in dists}
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
        "Targets (issue",
        "12) apply to jobs up to 10 s; longer jobs are held to 10% of their duration. *Fixed 300 ms*",
        "= the polls a plain fixed 300 ms schedule makes for the same job: ceil(duration / 0.3).",
    )
    s.add("")
    header = [
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
    table = []
    for name, (warm_jobs, fresh_jobs) in results.items():
        runs = [
            ("fresh", [j for j in warm_jobs if j.fresh] + fresh_jobs),
            ("warm", [j for j in warm_jobs if not j.fresh]),
        ]
        stats = {}
        for label, jobs in runs:
            st = stats[label] = _stats(jobs)
            table.append(
                [
                    name,
                    label,
                    f"{st['short']} / {st['long']}",
                    fmt_pair(st["added_med"], st["added_p95"]),
                    f"{ms(st['det_med'])} / {ms(st['det_p95'])} / {ms(st['det_max'])}",
                    f"{100 * st['long_rel_p95']:.1f}%" if st["long"] else "",
                    f"{st['polls_med']:g} / {st['polls_mean']:.1f}",
                    f"{st['fixed_med']:g} / {st['fixed_mean']:.1f}",
                    fmt_pair(st["submit_med"], st["tail_med"]),
                ]
            )
        f, w = stats["fresh"], stats["warm"]
        s.rows.append(
            Row(
                "12",
                f"Detection p95, jobs <= 10 s, {name} (fresh / warm)",
                fmt_pair(f["det_p95"], w["det_p95"]),
                "<= 300 ms",
                f["det_p95"] <= 0.300 and w["det_p95"] <= 0.300,
            )
        )
        s.rows.append(
            Row(
                "12",
                f"Added latency median, jobs <= 10 s, {name} (fresh / warm)",
                fmt_pair(f["added_med"], w["added_med"]),
                "<= 200 ms",
                f["added_med"] <= 0.200 and w["added_med"] <= 0.200,
            )
        )
        if f["long"] or w["long"]:
            worst = max(x for x in (f["long_rel_p95"], w["long_rel_p95"]) if x == x)  # noqa: PLR0124
            s.rows.append(
                Row(
                    "12",
                    f"Detection p95, jobs > 10 s, {name}",
                    f"{100 * worst:.1f}% of the duration",
                    "<= 10% of the duration",
                    worst <= 0.10,
                )
            )
        ok = all(
            st["polls_mean"] <= st["fixed_mean"] + 1e-9 and st["polls_med"] <= st["fixed_med"]
            for st in (f, w)
        )
        s.rows.append(
            Row(
                "12",
                f"Polls per job, {name}: ours vs fixed 300 ms (median, mean; fresh / warm)",
                f"{f['polls_med']:g} vs {f['fixed_med']:g}, {f['polls_mean']:.1f} vs {f['fixed_mean']:.1f} / "
                f"{w['polls_med']:g} vs {w['fixed_med']:g}, {w['polls_mean']:.1f} vs {w['fixed_mean']:.1f}",
                "no more than fixed 300 ms",
                ok,
            )
        )
        ctx.shared.setdefault("polling", {})[name] = stats
    s.table(header, table)
    first = next(iter(results))
    w1 = ctx.shared["polling"][first]["warm"]
    s.rows.append(
        Row(
            "6",
            f"Added latency, {first}, warm (median / p95)",
            fmt_pair(w1["added_med"], w1["added_p95"]),
            "median <= 50 ms at L = 1 s",
            w1["added_med"] <= 0.050 if not ctx.quick else None,
        )
    )
    s.lines += schedule_notes(ctx)
    c30, w30 = ctx.shared["polls30"]
    s.rows.append(
        Row(
            "6",
            "Upstream polls for a 30 s prediction (first / once learned), from the schedule",
            f"{c30} / {w30} (fixed 300 ms: 100)",
            "at most 12: superseded by issue 12 (a job that departs from history is still seen within "
            "0.3 s up to 10 s, so the first 10 s take 33 polls)",
        )
    )
    return s


def schedule_notes(ctx: Context) -> list[str]:
    """What the schedule itself promises, computed on it (no process, no clock)."""
    from atlas_image_mcp.polling import PollSchedule

    def polls(schedule: PollSchedule, seconds: float) -> int:
        plan, now, n = schedule.plan("m"), 0.0, 0
        while True:
            now += plan.next_delay(now)
            n += 1
            if now >= seconds - 1e-9:
                return n

    cold, warm = PollSchedule(), PollSchedule()
    for _ in range(5):
        warm.observe("m", 30.0)
    c30, w30 = polls(cold, 30.0), polls(warm, 30.0)
    ctx.shared["polls30"] = (c30, w30)
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


# --- one edit's added latency (issue 13) -----------------------------------------------------------


def edit_section(ctx: Context) -> Section:
    s = Section("One edit's added latency (`edit_image`, L = 1 s)")
    calls = 2 if ctx.quick else 10
    latency = 0.4 if ctx.quick else 1.0
    try:
        with emulator_process(latency) as emu, stdio_server(emu.url, ctx.tmp) as server:
            server.handshake()
            result, _, _ = generate_call(server, dict(ARGUMENTS), 0)
            picture = result["structuredContent"]["outputs"][0]["url"]
            done = []
            for n in range(calls + 1):
                edit = {"prompt": "the same fox at night", "image": picture, "seed": SEED}
                done.append((*generate_call(server, edit, n + 1, tool="edit_image"), n == 0))
            jobs = [j for j in analyse_jobs(emu, done) if not j.fresh]
    except (RuntimeError, KeyError, IndexError) as exc:
        s.add(f"Not measured: {str(exc)[:300]}")
        s.rows.append(Row("13", "One edit's added latency", "not measured"))
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
    s.rows.append(
        Row("13", "One edit's added latency (median / p95)", fmt_pair(median(added), pct(added, 95)))
    )
    return s


# --- turns per picture -------------------------------------------------------------------------------


def turns_section(ctx: Context) -> Section:
    t5 = turns(5.0)
    s = Section(f"Turns per picture (L = {t5['latency']:g} s)")
    s.add(
        "Tool calls an assistant makes from the prompt to a visible picture. This server:",
        "`generate_image` waits (up to `ATLAS_MCP_WAIT_SECONDS` = 45 s) and returns the picture inline:",
        '**one call** while L < 45 s. The official server returns a prediction id at once ("Use',
        '`atlas_get_prediction` with this ID ... Image generation usually takes 10-30 seconds"), with',
        "no inline image. Model (an assumption, not a measurement): the assistant calls",
        "`atlas_get_prediction` every T seconds until it is done, so it makes 1 + ceil(L / T) calls and",
        "sees the picture after ceil(L / T) x T seconds; T = 10 and 30 s are the documented cadence,",
        "T = 3 s stands for re-polling on every model turn.",
    )
    s.add("")
    rows = [["atlas-image-mcp", str(t5["ours"]), "L + the added latency above"]]
    rows += [
        [f"atlascloud-mcp, polling every {p:g} s", str(r["calls"]), f"{r['picture_after']:g} s"]
        for p, r in t5["official"].items()
    ]
    s.table(["server", "tool calls", "picture visible after"], rows)
    s.rows.append(
        Row(
            "6",
            f"Tool calls per picture, L = {t5['latency']:g} s",
            f"1 (official: {t5['official'][10.0]['calls']} at T = 10-30 s, "
            f"{t5['official'][3.0]['calls']} at T = 3 s)",
        )
    )
    return s


# --- concurrency, CPU per call and memory over streamable HTTP -------------------------------------


def load_level(emu: Emulator, url: str, pid: int, calls: int, arguments: dict[str, Any]) -> dict[str, Any]:
    """``calls`` generate_image calls at once from the MCP SDK client (tests/loadgen.py)."""
    emu.reset()
    peak_reset = reset_peak(pid)
    cpu_server, cpu_emu, cpu_self = cpu_seconds(pid), cpu_seconds(emu.pid), time.process_time()
    started = time.perf_counter()
    with RssSampler(pid) as sampler:
        try:
            stats = anyio.run(lambda: run_load(f"{url}/mcp", calls, sessions_for(calls), arguments))
        except Exception as exc:  # the SDK client failed as a whole: a result of the level, shown as such
            stats = None
            failure = f"the client failed: {type(exc).__name__}: {exc}"[:200]
    after = proc_status(pid)
    wall = time.perf_counter() - started
    return {
        "calls": calls,
        "sessions": sessions_for(calls),
        "completed": stats.completed if stats else 0,
        "first_error": (stats.errors[0] if stats.errors else "") if stats else failure,
        "wall": stats.wall_seconds if stats else wall,
        "p50": stats.percentile(50) if stats else float("nan"),
        "p95": stats.percentile(95) if stats else float("nan"),
        "polls_per_prediction": emu.count("GET", POLL_GLOB) / max(1, calls),
        "rss_peak": max(sampler.peak, after.get("VmHWM", 0) if peak_reset else 0),
        "cpu_server": cpu_seconds(pid) - cpu_server,
        "cpu_emulator": cpu_seconds(emu.pid) - cpu_emu,
        "cpu_loadgen": time.process_time() - cpu_self,
    }


def lean_level(
    emu: Emulator, url: str, pid: int, calls: int, arguments: dict[str, Any], *, tree: bool = False
) -> dict[str, Any]:
    """One level driven by :func:`lean_load` (the server's own capacity, little client CPU).

    ``tree``: count the CPU and memory of the server's worker processes too.
    """
    emu.reset()
    peak_reset = not tree and reset_peak(pid)
    cpu = tree_cpu if tree else cpu_seconds
    cpu_server, cpu_emu, cpu_self = cpu(pid), cpu_seconds(emu.pid), time.process_time()
    with (TreeRssSampler if tree else RssSampler)(pid) as sampler:
        stats = asyncio.run(lean_load(url, calls, sessions_for(calls), arguments))
    after = proc_status(pid)
    lat = stats["latencies"]
    return {
        "calls": calls,
        "sessions": sessions_for(calls),
        "completed": stats["completed"],
        "first_error": stats["first_error"],
        "wall": stats["wall"],
        "p50": median(lat),
        "p95": pct(lat, 95),
        "polls_per_prediction": emu.count("GET", POLL_GLOB) / max(1, calls),
        "rss_peak": max(sampler.peak, after.get("VmHWM", 0) if peak_reset else 0),
        "cpu_server": cpu(pid) - cpu_server,
        "cpu_emulator": cpu_seconds(emu.pid) - cpu_emu,
        "cpu_loadgen": time.process_time() - cpu_self,
    }


def repeated(run: Callable[[int], dict[str, Any]], times: int) -> dict[str, Any]:
    """Run a load level ``times`` times; the run with the median wall time, every wall time attached."""
    rows = []
    for n in range(times):
        rows.append(run(n))
        time.sleep(0.3)
    rows.sort(key=lambda r: r["wall"])
    chosen = dict(rows[len(rows) // 2])
    chosen["walls"] = [r["wall"] for r in rows]
    chosen["cpus"] = [r["cpu_server"] / r["calls"] for r in rows]
    return chosen


LOAD_HEADER = [
    "calls",
    "sessions",
    "completed",
    "wall",
    "p50",
    "p95",
    "polls per prediction",
    "server peak RSS",
    "server CPU per call",
    "CPU server / emulator / load generator",
]


def load_row(row: dict[str, Any]) -> list[str]:
    done = f"{row['completed']}/{row['calls']}" + (
        f" ({row['first_error'][:60]})" if row["first_error"] else ""
    )
    walls = row.get("walls") or []
    wall = secs(row["wall"]) + (f" (runs: {', '.join(f'{w:.2f}' for w in walls)})" if len(walls) > 1 else "")
    cpus = row.get("cpus") or []
    per_call = ms(row["cpu_server"] / row["calls"]) + (
        f" (runs: {', '.join(f'{c * 1000:.1f}' for c in cpus)})" if len(cpus) > 1 else ""
    )
    return [
        str(row["calls"]),
        str(row["sessions"]),
        done,
        wall,
        secs(row["p50"]),
        secs(row["p95"]),
        f"{row['polls_per_prediction']:.1f}",
        mb(row["rss_peak"]),
        per_call,
        f"{row['cpu_server']:.1f} / {row['cpu_emulator']:.1f} / {row['cpu_loadgen']:.1f} s",
    ]


def load_section(ctx: Context) -> Section:
    latency = 0.2 if ctx.quick else 1.0
    s = Section(f"Concurrency over streamable HTTP (L = {latency:g} s): wall, CPU per call, memory")
    profile = not (ctx.quick or ctx.args.no_profile)
    sdk_levels, lean_levels, thumb_levels = (
        ([10], [10], []) if ctx.quick else ([1, 50, 200, 500], [200, 500], [500])
    )
    repeats = 1 if ctx.quick else 3
    out: dict[str, Any] = {"sdk": [], "lean": [], "thumb": [], "profiles": {}}
    with emulator_process(latency) as emu, http_server_process(emu.url) as (url, pid, _):
        time.sleep(0.5)
        out["rss_idle_start"] = proc_status(pid).get("VmRSS", 0)
        anyio.run(lambda: run_load(f"{url}/mcp", 1, 1, dict(LOAD_ARGUMENTS)))  # imports, first session
        asyncio.run(lean_load(url, 50, 10, dict(LOAD_ARGUMENTS)))  # learn the model's duration
        out["rss_idle_warm"] = proc_status(pid).get("VmRSS", 0)
        for calls in lean_levels:
            log(f"load: {calls} calls, raw-HTTP client")
            top = calls == max(lean_levels)
            spy = Path(ctx.tmp) / f"spy-lean-{calls}.txt"

            def lean_run(n: int, calls: int = calls, top: bool = top, spy: Path = spy) -> dict[str, Any]:
                with py_spy(pid, spy) if profile and top and n == 0 else contextlib.nullcontext():
                    return lean_level(emu, url, pid, calls, dict(LOAD_ARGUMENTS))

            out["lean"].append(repeated(lean_run, repeats if top else 1))
            if profile and top:
                out["profiles"][f"{calls} calls, return_image none, raw-HTTP client"] = summarise_profile(spy)
        for calls in sdk_levels:
            log(f"load: {calls} calls, MCP SDK client")
            out["sdk"].append(load_level(emu, url, pid, calls, dict(LOAD_ARGUMENTS)))
        thumb_args = {**LOAD_ARGUMENTS, "return_image": "thumbnail", "seed": SEED}
        for calls in thumb_levels:
            log(f"load: {calls} calls with thumbnails, raw-HTTP client")
            out["thumb"].append(lean_level(emu, url, pid, calls, thumb_args))
        time.sleep(1.0)
        out["rss_idle_end"] = proc_status(pid).get("VmRSS", 0)
    ctx.shared["load"] = out
    s.add(
        "`atlas-image-mcp serve --transport http` (one process, sessions kept) against the emulator in",
        f"its own process (L = {latency:g} s for every job), N `generate_image` calls fired at once",
        '(512x512, `return_image: "none"`, `save: false`). *Raw-HTTP client*: a minimal MCP client in',
        "this script (raw HTTP/1.1 on asyncio streams, one connection per call, no SDK), so that the",
        "load generator's own CPU stays small next to the server's on two cores; *MCP SDK client*:",
        "`tests/loadgen.py` (`mcp.Client`). Sessions are opened before the clock starts. Wall = first",
        "call sent to last answer. Server CPU = user + system seconds of the server process from",
        "/proc during the level; peak memory = max of VmRSS sampled every 10 ms and VmHWM.",
        "" if ctx.quick else "The 500-call level runs three times; the median run is shown with every run.",
    )
    s.add("")
    s.add("**Raw-HTTP client** (the issue's measurement):")
    s.add("")
    s.table(LOAD_HEADER, [load_row(r) for r in out["lean"]])
    s.add("**MCP SDK client** (`tests/loadgen.py`):")
    s.add("")
    s.table(LOAD_HEADER, [load_row(r) for r in out["sdk"]])
    if out["thumb"]:
        s.add(
            '**With thumbnails** (`return_image: "thumbnail"`: each picture downloaded, decoded, shrunk',
            "and sent inline):",
        )
        s.add("")
        s.table(LOAD_HEADER, [load_row(r) for r in out["thumb"]])
    for title, prof in out["profiles"].items():
        if prof and prof.get("total"):
            s.add(
                f"Where the server's CPU goes, {title} (py-spy, 200 Hz, {prof['total']} samples, by the",
                "innermost frame of a known package; C code of uvloop and httptools shows as its caller):",
            )
            s.add("")
            s.table(["part", "share"], [[n, f"{100 * c / prof['total']:.0f}%"] for n, c in prof["buckets"]])
            s.add(
                "Top innermost functions: "
                + "; ".join(f"`{f}` {100 * n / prof['total']:.0f}%" for f, n in prof["functions"][:6])
            )
            s.add("")
    s.lines += tried_table()
    top = max(out["lean"], key=lambda r: r["calls"])
    big = top["calls"] >= 500
    per_call = top["cpu_server"] / top["calls"]
    s.rows += [
        Row(
            "6, 12",
            f"{top['calls']} concurrent calls, L = {latency:g} s, raw-HTTP client: wall",
            f"{secs(top['wall'])} ({top['completed']}/{top['calls']} completed)",
            "<= 3 s",
            (top["wall"] <= 3.0 and top["completed"] == top["calls"]) if big else None,
        ),
        Row(
            "12",
            f"Server CPU per call, {top['calls']} concurrent",
            ms(per_call),
            "<= 4 ms",
            per_call <= 0.004 if big else None,
        ),
        Row(
            "6, 12",
            f"Peak server memory, {top['calls']} concurrent",
            mb(top["rss_peak"]),
            "< 250 MB",
            top["rss_peak"] < 250 * 1024 * 1024 if big else None,
        ),
    ]
    sdk_top = max(out["sdk"], key=lambda r: r["calls"])
    s.rows.append(
        Row("6", f"{sdk_top['calls']} concurrent calls with the MCP SDK client: wall", secs(sdk_top["wall"]))
    )
    if out["thumb"]:
        t = out["thumb"][0]
        s.rows.append(
            Row(
                "6",
                f"{t['calls']} concurrent with thumbnails: wall, peak memory",
                f"{secs(t['wall'])}, {mb(t['rss_peak'])}",
            )
        )
    return s


# Measured while this version was built (issue 12), on this machine while other test suites ran on
# its two cores: CPU seconds of the server process per call at 500 concurrent calls, each variant
# run three times interleaved with its baseline, normalised by a pure-Python yardstick (1 million
# additions: ~20 ms on a quiet machine) taken around each run. The run above is the end result.
TRIED = [
    (
        "MCP side only (500 dry_run calls, nothing upstream): uvloop vs asyncio (both h11)",
        "2.09 -> 1.71 ms",
        "kept (uvicorn's loop='auto')",
    ),
    (
        "httptools instead of h11 for HTTP/1.1, with uvloop",
        "1.71 -> 1.84 ms (no gain within noise)",
        "dropped: it keeps whitespace around header values, which fails a 2026 conformance check",
    ),
    (
        "Upstream client: aiohttp under the httpx API vs httpx's own transport (500 full calls)",
        "6.11 -> 3.84 ms; walls 9.8-23 s -> 10-11 s under load",
        "kept (atlas_image_mcp.transport)",
    ),
    (
        "Per upstream request, one process, sequential: httpx transport / aiohttp under httpx / aiohttp",
        "1.3 / 0.7 / 0.35 ms (raw, loaded machine)",
        "aiohttp under httpx kept: the API and every test stay",
    ),
    (
        "httpx with 8 vs 64 pooled connections (httpcore rescans every connection per request)",
        "2.2 vs 4.1 ms per request at 64 in flight",
        "superseded by aiohttp's pool",
    ),
    (
        "No progress heartbeat over HTTP without a progress token (500 calls, raw CPU)",
        "8.3-9.1 -> 7.5-8.3 ms",
        "kept",
    ),
    (
        "Fewer pydantic round trips: parse_prediction with model_construct",
        "17 -> 11 us of ~700 us per poll",
        "dropped (not measurable on the call)",
    ),
    (
        "HTTP/2 to Atlas (httpx + h2)",
        "not measured: the emulator speaks HTTP/1.1 only",
        "not adopted: pure-Python h2 costs more CPU per request; connections are reused instead",
    ),
]


def tried_table() -> list[str]:
    lines = [
        "What was tried for CPU per call (issue 12), measured while it was built; numbers are server CPU",
        "per call (or per request) normalised to a quiet machine unless marked raw. See the commits for",
        "each change:",
        "",
        "| change | before -> after | |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in TRIED]
    return [*lines, ""]


def memory_section(ctx: Context) -> Section:
    s = Section("Memory (resident set of the server process)")
    load = ctx.shared.get("load")
    if not load:
        s.add("Not measured: the concurrency section did not run.")
        return s
    level = next((r for r in load["sdk"] if r["calls"] == 200), max(load["sdk"], key=lambda r: r["calls"]))
    rows = [
        ["HTTP server, idle after start", mb(load["rss_idle_start"])],
        ["HTTP server, idle after the first calls", mb(load["rss_idle_warm"])],
        [f"HTTP server, peak under {level['calls']} concurrent calls (SDK client)", mb(level["rss_peak"])],
        ["HTTP server, idle after all the load above", mb(load["rss_idle_end"])],
    ]
    s.table(["state", "RSS"], rows)
    s.rows.append(
        Row(
            "6",
            "Memory idle and under 200 calls",
            f"{mb(load['rss_idle_start'])} idle, {mb(level['rss_peak'])} at {level['calls']} calls",
        )
    )
    return s


# --- worker processes (issue 12) --------------------------------------------------------------------


def workers_section(ctx: Context) -> Section:
    s = Section("Worker processes behind one port (`serve --stateless --workers N`)")
    latency = 0.2 if ctx.quick else 1.0
    levels = [10] if ctx.quick else [500, 2000]
    table = []
    with emulator_process(latency) as emu:
        for workers in (1, 2):
            args = ["--stateless", *(["--workers", str(workers)] if workers > 1 else [])]
            with http_server_process(emu.url, *args, ready_timeout=120) as (url, pid, _):
                time.sleep(0.5)
                asyncio.run(lean_load(url, 50, 10, dict(LOAD_ARGUMENTS)))  # warm every worker a little
                for calls in levels:
                    log(f"workers: {workers}, {calls} calls")
                    row = lean_level(emu, url, pid, calls, dict(LOAD_ARGUMENTS), tree=True)
                    table.append([str(workers), *load_row(row)])
                    ctx.shared.setdefault("workers", {})[(workers, calls)] = row
    s.add(
        f"The same raw-HTTP client and calls as above (L = {latency:g} s), against a stateless server",
        "with one process (`--stateless`) and with two worker processes behind the same port",
        "(`--stateless --workers 2`). CPU and memory are summed over the server's processes (parent",
        "and workers). On this two-core machine the emulator and the client share the cores with the",
        "workers.",
    )
    s.add("")
    s.table(["workers", *LOAD_HEADER], table)
    for calls in levels:
        one, two = ctx.shared["workers"][(1, calls)], ctx.shared["workers"][(2, calls)]
        s.rows.append(
            Row(
                "12",
                f"{calls} concurrent calls, 1 vs 2 workers: wall; CPU per call",
                f"{secs(one['wall'])} vs {secs(two['wall'])}; {ms(one['cpu_server'] / calls)} vs "
                f"{ms(two['cpu_server'] / calls)}",
            )
        )
    return s


# --- sections that live in their own modules --------------------------------------------------------


def external(module: str, title: str, issue: str) -> Callable[[Context], Section]:
    """A section measured by ``bench/<module>.py``'s ``run() -> dict`` (see the module doc)."""

    def section(ctx: Context) -> Section:
        s = Section(title)
        path = ROOT / "bench" / f"{module}.py"
        if not path.exists():
            s.add(f"Not measured here: `bench/{module}.py` (issue {issue}) is not in this tree yet.")
            s.rows.append(Row(issue, title, "not measured"))
            return s
        spec = importlib.util.spec_from_file_location(f"bench_{module}", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        run = mod.run
        result = run(quick=ctx.quick) if "quick" in inspect.signature(run).parameters else run()
        if isinstance(result.get("markdown"), str):
            s.lines += result["markdown"].rstrip().splitlines() + [""]
        rows = result.get("rows")
        if isinstance(rows, list):
            for r in rows:
                s.rows.append(
                    Row(
                        str(r.get("issue", issue)),
                        str(r["measure"]),
                        str(r["result"]),
                        str(r.get("target", "(reported)")),
                        r.get("met"),
                    )
                )
        if "markdown" not in result and not isinstance(rows, list):
            s.table(
                ["measure", "value"],
                [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in result.items()],
            )
            s.rows.append(Row(issue, title, "see its section"))
        return s

    return section


def _load_module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toolsize_section(ctx: Context) -> Section:
    """bench/toolsize.py (issue 11): the size of the ``tools/list`` answer, ours and the official one's."""
    s = Section("Tool list size (`tools/list`, characters of compact JSON)")
    result = _load_module("toolsize").run(with_npx=not (ctx.quick or ctx.args.no_npx))
    ours, theirs, same = result["ours"], result.get("official"), result.get("equivalent")
    rows = [["atlas-image-mcp", str(ours["tools"]), f"{ours['total']:,}", f"{ours['per_tool_average']:,}"]]
    if theirs:
        rows.append(
            [
                "atlascloud-mcp",
                str(theirs["tools"]),
                f"{theirs['total']:,}",
                f"{theirs['per_tool_average']:,}",
            ]
        )
    s.add("Measured by `bench/toolsize.py` (its `--help` has the details).")
    s.add("")
    s.table(["server", "tools", "total", "per tool"], rows)
    if same:
        s.add(
            f"The tools that do the same jobs ({', '.join(same['tools'])}): ours {same['ours']:,}, "
            f"official {same['official']:,} characters."
        )
    for note in result.get("notes") or []:
        s.add(f"- {note}")
    s.rows.append(
        Row(
            "11",
            "`tools/list` size",
            f"{ours['total']:,} characters, {ours['tools']} tools"
            + (f" (official: {theirs['total']:,}, {theirs['tools']} tools)" if theirs else ""),
        )
    )
    if same:
        s.rows.append(
            Row(
                "11",
                "`tools/list` size of the tools doing the same jobs, ours vs official",
                f"{same['ours']:,} vs {same['official']:,}",
            )
        )
    return s


def hostile_section(ctx: Context) -> Section:
    """bench/hostile.py (issue 10): peak memory of the server against a hostile upstream."""
    s = Section("Hostile upstream: peak memory")
    module = _load_module("hostile")
    result = module.run(list(module.CASES)[:1] if ctx.quick else None)
    worst = result.pop("worst")
    s.add("Measured by `bench/hostile.py`: each case a hostile Atlas stand-in, the server's memory sampled.")
    s.add("")
    s.table(
        ["case", "peak", "idle", "seconds", "outcome"],
        [
            [c, f"{r['peak_mb']} MB", f"{r['idle_mb']} MB", f"{r['seconds']} s", str(r["outcome"])[:80]]
            for c, r in result.items()
        ],
    )
    s.rows.append(
        Row(
            "10",
            f"Hostile upstream: worst peak memory ({worst['case']})",
            f"{worst['peak_mb']} MB",
            f"< {worst['target_mb']:g} MB",
            bool(worst["met"]) if not ctx.quick else None,
        )
    )
    return s


#: The report, in order: (key for --only, the function that measures and writes it).
SECTIONS: list[tuple[str, Callable[[Context], Section]]] = [
    ("cold-start", cold_start_section),
    ("polling", polling_section),
    ("edit", edit_section),
    ("turns", turns_section),
    ("load", load_section),
    ("memory", memory_section),
    ("workers", workers_section),
    ("tool-list", toolsize_section),
    ("hostile", hostile_section),
]


# --- the report -------------------------------------------------------------------------------------


def _issue_key(row: Row) -> tuple[int, str]:
    first = row.issue.replace(",", " ").split()[0]
    return (int(first) if first.isdigit() else 999, row.issue)


def render_report(ctx: Context, machine_info: dict[str, str], sections: list[Section]) -> str:
    m = machine_info
    lines = [
        "# atlas-image-mcp benchmark" + (" (quick run: timings not meaningful)" if ctx.quick else ""),
        "",
    ]
    lines.append(
        f"Measured {m['date']} by `python bench/run.py{' --quick' if ctx.quick else ''}` on: **{m['cpu']}, "
        f"{m['cores']} cores, {m['ram']} RAM**, {m['os']}; Python {m['python']}, mcp {m['mcp']}, httpx "
        f"{m['httpx']}, aiohttp {m['aiohttp']}, uvicorn {m['uvicorn']}, uvloop {m['uvloop']}, Pillow "
        f"{m['pillow']}; Node {m['node']} (for the npx run). Upstream is the bundled Atlas emulator "
        "(`python -m atlas_image_mcp.emulator`) on loopback, in its own process; every server runs in its "
        "own process; this script is only the client. Load average (1, 5, 15 min) at the start: "
        f"{m.get('load_start', '?')}, at the end: {m.get('load_end', '?')}; a pure-Python loop of 10 "
        f"million additions took {m.get('calibration_start', '?')} at the start and "
        f"{m.get('calibration_end', '?')} at the end (~0.2 s on a quiet machine of this kind: a yardstick "
        "for how loaded the machine was)."
    )
    lines.append("")
    yardstick = max(float(m.get(k, "0 s").split()[0]) for k in ("calibration_start", "calibration_end"))
    if yardstick > 0.3:
        lines += [
            "**The machine ran slower than a quiet one** (other work, or its host's): the yardstick "
            f"took up to {yardstick:.2f} s instead of ~0.2 s, so wall times and CPU seconds here are "
            f"inflated by up to about {yardstick / 0.2:.1f} times; compare runs by the yardstick.",
            "",
        ]
    rows = sorted((r for s in sections for r in s.rows), key=_issue_key)
    lines += [
        "## Summary",
        "",
        "Every target of every issue this benchmark measures (issues 14-16 set none).",
        "",
    ]
    lines += ["| issue | measure | result | target | |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    lines.append("")
    for n, section in enumerate(sections, start=1):
        lines += [f"## {n}. {section.title}", "", *section.lines, ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    output = args.output or (
        Path(tempfile.gettempdir()) / "atlas-image-mcp-bench-quick.md"
        if args.quick
        else ROOT / "bench" / "RESULTS.md"
    )
    started = time.monotonic()
    info = machine()
    info["load_start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["calibration_start"] = calibration()
    sections = []
    with tempfile.TemporaryDirectory(prefix="atlas-bench-") as tmp:
        ctx = Context(quick=args.quick, args=args, tmp=tmp)
        for key, measure in SECTIONS:
            if args.only and key not in args.only:
                continue
            log(key)
            sections.append(measure(ctx))
    info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["calibration_end"] = calibration()
    report = render_report(ctx, info, sections)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    log(f"wrote {output} in {time.monotonic() - started:.0f} s")
    if args.quick:
        sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
