#!/usr/bin/env python3
"""Benchmark of atlas-image-mcp against the Atlas emulator on loopback; writes bench/RESULTS.md.

    python bench/run.py [--quick] [--output bench/RESULTS.md]

Every server and the emulator run in their own processes; this script is only the client. It
measures (numbers as in issue 6):

1. cold start: spawn the stdio server until ``tools/list`` is answered (raw JSON-RPC over pipes),
   next to the official Node server launched as its README says (``npx -y atlascloud-mcp``);
2. added latency of one ``generate_image`` call over stdio (end to end minus the emulator's
   latency L), split into submit, detection delay, download and thumbnail;
3. polling cost: upstream ``GET /model/prediction/{id}`` requests per prediction;
4. turns per picture (a model of the official server's submit-then-poll flow);
5. concurrency over streamable HTTP (wall time, latency, server CPU and memory), with a py-spy
   profile of the server when py-spy is installed;
6. resident memory idle and under load.

``--quick`` runs a few-second version of all of it (no npx, short latencies, 10 calls): it shows
the benchmark still works and asserts nothing about timings. Only the standard library and the
project's own dependencies are used (``tests/loadgen.py`` drives the HTTP load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import glob
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.loadgen

import anyio  # noqa: E402
import httpx  # noqa: E402

from tests.loadgen import LOAD_ARGUMENTS, run_load  # noqa: E402

KEY = "bench-key-0123456789"
PROTOCOL = "2025-06-18"  # understood by both servers
PROMPT = "a red fox in the snow, golden hour"
SEED = 7  # fixed: the emulator renders a picture once and then serves it like a CDN would
GENERATE_PATH = "/api/v1/model/generateImage"
POLL_GLOB = "/api/v1/model/prediction/*"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_COMMAND = [sys.executable, "-m", "atlas_image_mcp"]


# --- small helpers ------------------------------------------------------------------------------


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

    for dist in ("mcp", "httpx", "pillow", "uvicorn", "pydantic", "atlas-image-mcp"):
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


@dataclass
class Emulator:
    url: str
    pid: int
    http: httpx.Client = field(repr=False)

    def configure(self, latency: float) -> None:
        self.http.post("/_emulator/config", json={"latency": latency}).raise_for_status()

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()

    def requests(self, method: str = "*", path: str = "*") -> tuple[int, list[dict[str, Any]]]:
        body = self.http.get("/_emulator/requests", params={"method": method, "path": path}).json()
        return int(body["count"]), list(body["requests"])

    def count(self, method: str = "*", path: str = "*") -> int:
        return self.requests(method, path)[0]


@contextlib.contextmanager
def emulator_process(latency: float = 1.0) -> Iterator[Emulator]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "atlas_image_mcp.emulator",
        "--port",
        str(port),
        "--latency",
        str(latency),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=30)
    try:
        _wait_ready(http, "/api/v1/models", proc)
        yield Emulator(url=url, pid=proc.pid, http=http)
    finally:
        http.close()
        _stop(proc)


@contextlib.contextmanager
def http_server_process(emulator_url: str, **env: str) -> Iterator[tuple[str, int, Path]]:
    """``atlas-image-mcp serve --transport http``; yields (base URL, pid, stderr log path)."""
    port = free_port()
    logfile = Path(tempfile.mkstemp(prefix="atlas-bench-http-", suffix=".log")[1])
    environment = clean_env(ATLASCLOUD_BASE_URL=emulator_url, ATLASCLOUD_API_KEY=KEY, **env)
    cmd = [*SERVER_COMMAND, "serve", "--transport", "http", "--port", str(port)]
    with logfile.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            _wait_ready(http, "/healthz", proc)
        yield url, proc.pid, logfile
    finally:
        _stop(proc)


def _wait_ready(http: httpx.Client, path: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
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
            proc.wait(8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def stdio_server(emulator_url: str, output_dir: str, **env: str) -> RawStdio:
    environment = clean_env(
        ATLASCLOUD_BASE_URL=emulator_url, ATLASCLOUD_API_KEY=KEY, ATLAS_MCP_OUTPUT_DIR=output_dir, **env
    )
    return RawStdio([sys.executable, "-m", "atlas_image_mcp"], environment, cwd=tempfile.gettempdir())


# --- 1. cold start -------------------------------------------------------------------------------


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


@dataclass
class CallTiming:
    total: float  # end to end, seconds
    added: float  # total - L
    submit: float  # tools/call sent -> generate POST arrived at the emulator
    detect: float  # completion -> arrival of the poll that saw it
    detect_to_download: float  # that poll -> the download request
    download_to_result: float  # download request -> result back at the client
    polls: int
    prediction_id: str


def prime_picture_cache(emu: Emulator, width: int = 1024, height: int = 1024) -> None:
    """Have the emulator render the benchmark picture once (its renders are cached, like a CDN file)."""
    body = {
        "model": "black-forest-labs/flux-schnell",
        "prompt": PROMPT,
        "seed": SEED,
        "size": f"{width}*{height}",
        "enable_sync_mode": True,
    }
    answer = emu.http.post(
        "/api/v1/model/generateImage", json=body, headers={"Authorization": f"Bearer {KEY}"}
    ).json()
    for url in answer["data"].get("outputs") or []:
        emu.http.get(url).raise_for_status()


def generate_call(
    server: RawStdio, arguments: dict[str, Any], token: int
) -> tuple[dict[str, Any], float, float]:
    sent = time.monotonic()
    answer, arrived = server.request(
        "tools/call", {"name": "generate_image", "arguments": arguments, "_meta": {"progressToken": token}}
    )
    if "error" in answer or answer["result"].get("isError"):
        raise RuntimeError(f"generate_image failed: {json.dumps(answer)[:500]}")
    return answer["result"], sent, arrived


def analyse_call(
    emu: Emulator, result: dict[str, Any], sent: float, arrived: float, latency: float
) -> CallTiming:
    structured = result.get("structuredContent") or {}
    pid = structured["prediction_id"]
    _, posts = emu.requests("POST", GENERATE_PATH)
    submitted = posts[-1]["at"]
    _, polls = emu.requests("GET", f"/api/v1/model/prediction/{pid}")
    _, downloads = emu.requests("GET", f"/outputs/{pid}/*")
    done = submitted + latency
    seen = [p["at"] for p in polls if p["at"] >= done]
    detected = seen[0] if seen else float("nan")
    download = downloads[0]["at"] if downloads else float("nan")
    return CallTiming(
        total=arrived - sent,
        added=arrived - sent - latency,
        submit=submitted - sent,
        detect=detected - done,
        detect_to_download=download - detected,
        download_to_result=arrived - download,
        polls=len(polls),
        prediction_id=pid,
    )


def latency_run(emu: Emulator, latency: float, calls: int, output_dir: str) -> dict[str, Any]:
    """A fresh stdio server; call 0 is its first prediction (cold), calls 1..n are measured."""
    emu.configure(latency)
    emu.reset()
    prime_picture_cache(emu)
    arguments = {"prompt": PROMPT, "seed": SEED}  # defaults: 1024x1024, thumbnail inline, saved
    timings: list[CallTiming] = []
    with stdio_server(emu.url, output_dir) as server:
        server.handshake()
        time.sleep(0.2)
        idle_rss = proc_status(server.proc.pid).get("VmRSS", 0)
        for n in range(calls + 1):
            result, sent, arrived = generate_call(server, arguments, n)
            timings.append(analyse_call(emu, result, sent, arrived, latency))
        # the floor: one MCP round trip (a dry run sends nothing upstream) + one upstream round trip
        mcp_rtts = []
        for _ in range(max(5, calls)):
            sent = time.monotonic()
            server.request(
                "tools/call", {"name": "generate_image", "arguments": {"prompt": PROMPT, "dry_run": True}}
            )
            mcp_rtts.append(time.monotonic() - sent)
    upstream = []
    with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        pid = timings[-1].prediction_id
        for _ in range(max(5, calls)):
            sent = time.monotonic()
            http.get(f"/api/v1/model/prediction/{pid}").raise_for_status()
            upstream.append(time.monotonic() - sent)
    return {
        "latency": latency,
        "cold": timings[0],
        "warm": timings[1:],
        "mcp_rtt": median(mcp_rtts),
        "upstream_rtt": median(upstream[1:]),
        "idle_rss": idle_rss,
    }


def thumbnail_cost(emu: Emulator, output_dir: str, rounds: int) -> dict[str, float]:
    """In-process cost of what the server does after the download: inspect, thumbnail, save."""
    import base64

    from atlas_image_mcp.render import inline_images, inspect_image
    from atlas_image_mcp.storage import write_atomic

    prime_picture_cache(emu)
    body = {
        "model": "black-forest-labs/flux-schnell",
        "prompt": PROMPT,
        "seed": SEED,
        "enable_sync_mode": True,
    }
    answer = emu.http.post(GENERATE_PATH, json=body, headers={"Authorization": f"Bearer {KEY}"}).json()
    url = answer["data"]["outputs"][0]
    downloads, inspects, thumbs, saves = [], [], [], []
    with httpx.Client() as http:
        http.get(url)
        for n in range(rounds):
            t0 = time.perf_counter()
            data = http.get(url).content
            t1 = time.perf_counter()
            picture = inspect_image(data, "image/jpeg")
            t2 = time.perf_counter()
            blocks, _ = inline_images([picture], "thumbnail")
            base64.b64decode(blocks[0].data)
            t3 = time.perf_counter()
            write_atomic(Path(output_dir) / f"bench-{n}.jpg", data)
            t4 = time.perf_counter()
            downloads.append(t1 - t0)
            inspects.append(t2 - t1)
            thumbs.append(t3 - t2)
            saves.append(t4 - t3)
    return {
        "download": median(downloads),
        "inspect": median(inspects),
        "thumbnail": median(thumbs),
        "save": median(saves),
        "bytes": float(len(data)),
    }


def polls_only_run(emu: Emulator, latency: float, calls: int, output_dir: str) -> dict[str, Any]:
    """Polls per prediction at a long latency: a fresh server's first prediction, then the next ones."""
    emu.configure(latency)
    emu.reset()
    arguments = {
        "prompt": PROMPT,
        "seed": SEED,
        "width": 512,
        "height": 512,
        "return_image": "none",
        "save": False,
    }
    timings = []
    with stdio_server(emu.url, output_dir) as server:
        server.handshake()
        for n in range(calls + 1):
            result, sent, arrived = generate_call(server, arguments, n)
            if (result.get("structuredContent") or {}).get("status") != "completed":
                raise RuntimeError(f"L={latency}: the call did not complete within the wait bound")
            timings.append(analyse_call(emu, result, sent, arrived, latency))
    return {"latency": latency, "cold": timings[0], "warm": timings[1:]}


# --- 5 and 6. concurrency and memory over streamable HTTP ----------------------------------------


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
        session = {"mcp-session-id": headers["mcp-session-id"], "mcp-protocol-version": PROTOCOL}
        await _http_call(host, int(port), {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        ids.append(session)
    latencies: list[float] = []
    completed = 0

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

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(calls)))
    return {"wall": time.perf_counter() - started, "completed": completed, "latencies": latencies}


def load_level(emu: Emulator, url: str, pid: int, calls: int, arguments: dict[str, Any]) -> dict[str, Any]:
    emu.reset()
    peak_reset = reset_peak(pid)
    before = proc_status(pid)
    cpu_server, cpu_emu, cpu_self = cpu_seconds(pid), cpu_seconds(emu.pid), time.process_time()
    with RssSampler(pid) as sampler:
        stats = anyio.run(lambda: run_load(f"{url}/mcp", calls, sessions_for(calls), arguments))
    after = proc_status(pid)
    peak = max(sampler.peak, after.get("VmHWM", 0) if peak_reset else 0)
    polls = emu.count("GET", POLL_GLOB)
    return {
        "calls": calls,
        "sessions": sessions_for(calls),
        "completed": stats.completed,
        "errors": stats.tool_errors + stats.exceptions,
        "first_error": stats.errors[0] if stats.errors else "",
        "wall": stats.wall_seconds,
        "p50": stats.percentile(50),
        "p95": stats.percentile(95),
        "max": max(stats.latencies) if stats.latencies else float("nan"),
        "polls_per_prediction": polls / max(1, calls),
        "rss_before": before.get("VmRSS", 0),
        "rss_peak": peak,
        "rss_after": after.get("VmRSS", 0),
        "cpu_server": cpu_seconds(pid) - cpu_server,
        "cpu_emulator": cpu_seconds(emu.pid) - cpu_emu,
        "cpu_loadgen": time.process_time() - cpu_self,
    }


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
    "httpx": "HTTP client to Atlas (httpx, httpcore)",
    "httpcore": "HTTP client to Atlas (httpx, httpcore)",
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


def lean_level(emu: Emulator, url: str, pid: int, calls: int, arguments: dict[str, Any]) -> dict[str, Any]:
    """One level driven by :func:`lean_load` (the server's own capacity, little client CPU)."""
    emu.reset()
    peak_reset = reset_peak(pid)
    cpu_server, cpu_emu, cpu_self = cpu_seconds(pid), cpu_seconds(emu.pid), time.process_time()
    with RssSampler(pid) as sampler:
        stats = asyncio.run(lean_load(url, calls, sessions_for(calls), arguments))
    after = proc_status(pid)
    lat = stats["latencies"]
    return {
        "calls": calls,
        "sessions": sessions_for(calls),
        "completed": stats["completed"],
        "errors": calls - stats["completed"],
        "first_error": "" if stats["completed"] == calls else "not completed",
        "wall": stats["wall"],
        "p50": median(lat),
        "p95": pct(lat, 95),
        "max": max(lat) if lat else float("nan"),
        "polls_per_prediction": emu.count("GET", POLL_GLOB) / max(1, calls),
        "rss_before": 0,
        "rss_peak": max(sampler.peak, after.get("VmHWM", 0) if peak_reset else 0),
        "rss_after": after.get("VmRSS", 0),
        "cpu_server": cpu_seconds(pid) - cpu_server,
        "cpu_emulator": cpu_seconds(emu.pid) - cpu_emu,
        "cpu_loadgen": time.process_time() - cpu_self,
    }


def repeated(run: Any, times: int) -> dict[str, Any]:
    """Run a load level ``times`` times; the run with the median wall time, with every wall time attached."""
    rows = []
    for n in range(times):
        rows.append(run(n))
        time.sleep(0.3)
    rows.sort(key=lambda r: r["wall"])
    chosen = dict(rows[len(rows) // 2])
    chosen["walls"] = [r["wall"] for r in rows]
    return chosen


def concurrency_runs(
    emu: Emulator,
    levels: list[int],
    thumb_levels: list[int],
    lean_levels: list[int],
    profile: bool,
    latency: float = 1.0,
    repeats: int = 1,
) -> dict[str, Any]:
    emu.configure(latency)
    emu.reset()
    out: dict[str, Any] = {"levels": [], "thumbnail": [], "lean": [], "profiles": {}, "latency": latency}
    with http_server_process(emu.url) as (url, pid, logfile):
        time.sleep(0.5)
        out["rss_idle_start"] = proc_status(pid).get("VmRSS", 0)
        anyio.run(
            lambda: run_load(f"{url}/mcp", 1, 1, dict(LOAD_ARGUMENTS))
        )  # warm-up (imports, first session)
        out["rss_idle_warm"] = proc_status(pid).get("VmRSS", 0)
        for calls in levels:
            log(f"concurrency: {calls} calls (return_image none)")
            spy = Path(tempfile.gettempdir()) / f"atlas-bench-none-{calls}.txt"
            top = calls == max(levels)

            def none_run(n: int, calls: int = calls, top: bool = top, spy: Path = spy) -> dict[str, Any]:
                with py_spy(pid, spy) if profile and top and n == 0 else contextlib.nullcontext():
                    return load_level(emu, url, pid, calls, dict(LOAD_ARGUMENTS))

            out["levels"].append(repeated(none_run, repeats if top else 1))
            if profile and top:
                out["profiles"][f"{calls} calls, return_image none"] = summarise_profile(spy)
            time.sleep(0.3)
        prime_picture_cache(emu, 512, 512)
        thumb_args = {**LOAD_ARGUMENTS, "return_image": "thumbnail", "seed": SEED}
        for calls in thumb_levels:
            log(f"concurrency: {calls} calls (return_image thumbnail)")
            spy = Path(tempfile.gettempdir()) / f"atlas-bench-thumb-{calls}.txt"
            top = calls == max(thumb_levels)

            def thumb_run(n: int, calls: int = calls, top: bool = top, spy: Path = spy) -> dict[str, Any]:
                with py_spy(pid, spy) if profile and top and n == 0 else contextlib.nullcontext():
                    return load_level(emu, url, pid, calls, thumb_args)

            out["thumbnail"].append(repeated(thumb_run, repeats if top else 1))
            if profile and top:
                out["profiles"][f"{calls} calls, return_image thumbnail"] = summarise_profile(spy)
            time.sleep(0.3)
        for calls in lean_levels:
            log(f"concurrency: {calls} calls (return_image none, raw-HTTP client)")
            spy = Path(tempfile.gettempdir()) / f"atlas-bench-lean-{calls}.txt"
            top = calls == max(lean_levels)

            def lean_run(n: int, calls: int = calls, top: bool = top, spy: Path = spy) -> dict[str, Any]:
                with py_spy(pid, spy) if profile and top and n == 0 else contextlib.nullcontext():
                    return lean_level(emu, url, pid, calls, dict(LOAD_ARGUMENTS))

            out["lean"].append(repeated(lean_run, repeats if top else 1))
            if profile and top:
                out["profiles"][f"{calls} calls, return_image none, raw-HTTP client"] = summarise_profile(spy)
            time.sleep(0.3)
        time.sleep(1.0)
        out["rss_idle_end"] = proc_status(pid).get("VmRSS", 0)
    return out


# --- 4. turns per picture ------------------------------------------------------------------------


def turns(latency: float, wait_bound: float = 45.0) -> dict[str, Any]:
    """Tool calls from prompt to picture: ours (one while L < the wait bound) vs submit-then-poll."""
    ours = 1 if latency < wait_bound else 1 + math.ceil((latency - wait_bound) / 30.0)
    official = {}
    for period in (3.0, 10.0, 30.0):
        polls = max(1, math.ceil(latency / period))
        official[period] = {"calls": 1 + polls, "picture_after": polls * period}
    return {"latency": latency, "ours": ours, "official": official}


# --- the report ----------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def render_report(data: dict[str, Any], quick: bool) -> str:
    m = data["machine"]
    lines: list[str] = []
    add = lines.append
    add("# atlas-image-mcp benchmark" + (" (quick run: timings not meaningful)" if quick else ""))
    add("")
    add(
        f"Measured {m['date']} by `python bench/run.py{' --quick' if quick else ''}` on: **{m['cpu']}, "
        f"{m['cores']} cores, "
        f"{m['ram']} RAM**, {m['os']}; Python {m['python']}, mcp {m['mcp']}, httpx {m['httpx']}, Pillow "
        f"{m['pillow']}, "
        f"uvicorn {m['uvicorn']}; Node {m['node']} (for the npx run). Upstream is the bundled Atlas emulator "
        "(`python -m atlas_image_mcp.emulator`) on loopback, in its own process; every server runs in its "
        "own "
        "process; this script is only the client. Load average (1, 5, 15 min) at the start: "
        f"{m.get('load_start', '?')}, at the end: {m.get('load_end', '?')}; a pure-Python loop of 10 million "
        f"additions took {m.get('calibration_start', '?')} at the start and {m.get('calibration_end', '?')} "
        "at the "
        "end (a yardstick for comparing machines)."
        + (
            ""
            if quick
            else " Load timings on this machine vary by up to about +-30% from run to run; the largest "
            "load levels are run three times and the median run is shown."
        )
    )
    add("")
    summary = data.get("summary_rows", [])
    if summary:
        add("## Summary")
        add("")
        add("| measure | result | target (issue 6) | |")
        add("|---|---|---|---|")
        for row in summary:
            add("| " + " | ".join(row) + " |")
        add("")
    lines.extend(data.get("sections", []))
    return "\n".join(lines).rstrip() + "\n"


def build_sections(data: dict[str, Any], quick: bool) -> None:
    """Turn the measurements into the summary rows and the report's sections (kept in ``data``)."""
    rows: list[list[str]] = []
    sections: list[str] = []
    s = sections.append

    # 1. cold start
    cs = data["cold_start"]
    ours_name = next(n for n in cs["times"] if n.startswith("atlas-image-mcp"))
    npx_name = next((n for n in cs["times"] if "npx -y" in n), None)
    ours = median(cs["times"][ours_name])
    s("## 1. Cold start (spawn to the `tools/list` answer)")
    s("")
    s(
        "Raw JSON-RPC over the child's pipes: `initialize`, `notifications/initialized`, `tools/list`; time "
        "from "
        f"spawn to the `tools/list` response. {'One warm-up each, then ' if not quick else ''}"
        f"{len(cs['times'][ours_name])} runs, interleaved. "
        "npx was run once before timing (not timed) so the runs measure a launch from npx's cache, not a "
        "download; "
        "npx still resolves the package against the registry on each launch, as it does for users. "
        "The official server starts without a key (it reads it per call); it got a dummy one."
    )
    s("")
    s("| server | median | min | max |")
    s("|---|---|---|---|")
    for name, values in cs["times"].items():
        s(f"| {name} | {ms(median(values))} | {ms(min(values))} | {ms(max(values))} |")
    s("")
    if npx_name:
        theirs = median(cs["times"][npx_name])
        s(f"Ratio ours / npx: **{ours / theirs:.2f}** ({ms(ours)} vs {ms(theirs)}).")
        rows.append(
            [
                "Cold start to `tools/list` (median)",
                f"{ms(ours)} vs npx {ms(theirs)} (ratio {ours / theirs:.2f})",
                "no slower than `npx -y atlascloud-mcp`",
                verdict(ours <= theirs),
            ]
        )
    else:
        rows.append(
            ["Cold start to `tools/list` (median)", ms(ours), "no slower than npx", "n/a (npx not run)"]
        )
    for note in cs["notes"]:
        s(f"- {note}")
    s("")
    if data.get("imports"):
        total = sum(v for _, v in data["imports"])
        s(
            "Where the stdio start-up's imports go (`python -X importtime -m atlas_image_mcp`, self time "
            "summed per "
            f"package, {ms(total)} in all; importtime itself inflates these):"
        )
        s("")
        s("| package | import time |")
        s("|---|---|")
        for name, value in data["imports"]:
            s(f"| {name} | {ms(value)} |")
        s("")

    # 2. added latency
    s("## 2. Added latency of one `generate_image` call (stdio)")
    s("")
    s(
        "A fresh `python -m atlas_image_mcp` stdio subprocess (`ATLASCLOUD_BASE_URL` = the emulator "
        "process), driven "
        "with raw JSON-RPC, default arguments (1024x1024 flux-schnell, thumbnail inline, picture saved to a "
        "temp "
        "folder; `ATLAS_MCP_WAIT_SECONDS` default 45). Added = end to end minus L. Call 0 is the process's "
        "first "
        "prediction (nothing learned yet); the statistics are over the calls after it. Split from the "
        "emulator's "
        "request log (same monotonic clock): *submit* = call sent to the generate POST arriving upstream; "
        "*detection* = completion (POST + L) to the arrival of the first poll after it; *poll to download* = "
        "that "
        "poll to the download request; *download to result* = download, inspect, thumbnail, save, result "
        "back to the client. The floor is one MCP round trip (a `dry_run` call, nothing upstream) plus one "
        "upstream "
        "round trip (a GET to the emulator)."
    )
    s("")
    s(
        "| L | calls | added median | added p95 | submit | detection median / p95 / max | poll to download | "
        "download to result | polls per prediction | floor | median above floor |"
    )
    s("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in data["latency"]:
        warm: list[CallTiming] = run["warm"]
        added = [t.added for t in warm]
        det = [t.detect for t in warm]
        floor = run["mcp_rtt"] + run["upstream_rtt"]
        s(
            f"| {run['latency']:g} s | {len(warm)} | {ms(median(added))} | {ms(pct(added, 95))} | "
            f"{ms(median([t.submit for t in warm]))} | {ms(median(det))} / {ms(pct(det, 95))} / "
            f"{ms(max(det))} | "
            f"{ms(median([t.detect_to_download for t in warm]))} | "
            f"{ms(median([t.download_to_result for t in warm]))} | "
            f"{median([t.polls for t in warm]):g} | {ms(floor)} | {ms(median(added) - floor)} |"
        )
    for run in data["latency"]:
        c: CallTiming = run["cold"]
        s(
            f"| {run['latency']:g} s, call 0 | 1 | {ms(c.added)} | | {ms(c.submit)} | {ms(c.detect)} | "
            f"{ms(c.detect_to_download)} | {ms(c.download_to_result)} | {c.polls} | | |"
        )
    s("")
    tc = data.get("thumbnail_cost")
    if tc:
        s(
            f"What *download to result* is made of, measured in process on the same {tc['bytes'] / 1024:.0f} "
            "KB JPEG "
            f"(medians): download {ms(tc['download'])}, `inspect_image` {ms(tc['inspect'])}, thumbnail "
            "(decode with "
            f"JPEG draft, resize, encode, base64) {ms(tc['thumbnail'])}, atomic save with fsync "
            f"{ms(tc['save'])}."
        )
        s("")
    by_l = {run["latency"]: run for run in data["latency"]}
    first = data["latency"][0]
    added1 = median([t.added for t in first["warm"]])
    rows.append(
        [
            f"Added latency at L = {first['latency']:g} s (median / p95)",
            f"{ms(added1)} / {ms(pct([t.added for t in first['warm']], 95))}",
            "median <= 50 ms at L = 1 s",
            verdict(added1 <= 0.050) if 1.0 in by_l else "n/a",
        ]
    )
    for run in data["latency"][1:]:
        a = [t.added for t in run["warm"]]
        rows.append(
            [
                f"Added latency at L = {run['latency']:g} s (median / p95)",
                f"{ms(median(a))} / {ms(pct(a, 95))}",
                "(reported)",
                "",
            ]
        )

    # 3. polling cost
    s("## 3. Polling cost (upstream `GET /model/prediction/{id}` per prediction)")
    s("")
    s(
        "Counted in the emulator's request log. *First* = the first prediction of a fresh server process, "
        "which "
        "knows nothing about the model yet; *later* = the following predictions of the same model in that "
        "process."
    )
    s("")
    s(
        "| L | polls, first prediction | polls, later (median, max) | detection delay, first | detection "
        "delay, later (median, max) |"
    )
    s("|---|---|---|---|---|")
    poll_runs = list(data["latency"]) + list(data.get("long", []))
    for run in poll_runs:
        warm = run["warm"]
        pw = [t.polls for t in warm]
        dw = [t.detect for t in warm]
        s(
            f"| {run['latency']:g} s | {run['cold'].polls} | {median(pw):g}, {max(pw)} | "
            f"{ms(run['cold'].detect)} | "
            f"{ms(median(dw))}, {ms(max(dw))} |"
        )
    s("")
    long_runs = [r for r in poll_runs if r["latency"] >= 30]
    if long_runs:
        r = long_runs[0]
        worst = max(t.polls for t in r["warm"])
        rows.append(
            [
                f"Upstream polls, {r['latency']:g} s prediction",
                f"first {r['cold'].polls}, later max {worst}",
                "at most 12",
                verdict(worst <= 12) + ("" if r["cold"].polls <= 12 else " (later); first: missed"),
            ]
        )
    fast = [t for r in poll_runs if r["latency"] <= 5 for t in [r["cold"], *r["warm"]]]
    if fast:
        worst_fast = max(t.detect for t in fast)
        rows.append(
            [
                "Detection delay, predictions <= 5 s (worst, incl. first)",
                ms(worst_fast),
                "within 250 ms",
                verdict(worst_fast <= 0.250),
            ]
        )

    # 4. turns
    t5 = data["turns"]
    s(f"## 4. Turns per picture (L = {t5['latency']:g} s)")
    s("")
    s(
        "Tool calls an assistant makes from the prompt to a visible picture. This server: `generate_image` "
        "waits "
        "(up to `ATLAS_MCP_WAIT_SECONDS` = 45 s) and returns the picture inline: **one call** while L < 45 "
        "s. The "
        'official server returns a prediction id at once ("Use `atlas_get_prediction` with this ID ... Image '
        'generation usually takes 10-30 seconds"), with no inline image (a URL in markdown). Model (an '
        "assumption, "
        "not a measurement): the assistant calls `atlas_get_prediction` every T seconds until it is done, so "
        "it "
        "makes 1 + ceil(L / T) calls and sees the picture after ceil(L / T) x T seconds; T = 10 and 30 s are "
        "the "
        "documented cadence, T = 3 s stands for re-polling on every model turn."
    )
    s("")
    s("| server | tool calls | picture visible after |")
    s("|---|---|---|")
    s(f"| atlas-image-mcp | {t5['ours']} | L + {ms(added1)} added (section 2) |")
    for period, row in t5["official"].items():
        s(f"| atlascloud-mcp, polling every {period:g} s | {row['calls']} | {row['picture_after']:g} s |")
    s("")
    rows.append(
        [
            f"Tool calls per picture, L = {t5['latency']:g} s",
            f"1 (official: {t5['official'][10.0]['calls']} at T = 10-30 s, {t5['official'][3.0]['calls']} at "
            "T = 3 s)",
            "(reported)",
            "",
        ]
    )

    # 5. concurrency
    cc = data["concurrency"]
    s(f"## 5. Concurrency over streamable HTTP (L = {cc['latency']:g} s)")
    s("")
    s(
        "`atlas-image-mcp serve --transport http` in its own process (`ATLASCLOUD_BASE_URL` = the emulator "
        "process, "
        "default INFO logging to a file), driven by `tests/loadgen.py` `run_load` from this process: N "
        '`generate_image` calls fired at once (512x512, `return_image: "none"`, `save: false`) over '
        "max(1, min(N / 5, 100)) MCP sessions opened beforehand (session set-up is not timed). Wall = first "
        "call "
        "sent to last result received. Peak memory = max of VmRSS sampled every 10 ms and VmHWM (reset "
        "before each "
        "level) of the server process. CPU = seconds of CPU each process used during the level (2 cores "
        "shared by "
        "the three processes)."
    )
    s("")
    header = (
        "| calls | sessions | completed | wall | p50 | p95 | polls per prediction | server peak RSS | "
        "CPU server / emulator / load generator |"
    )
    s(header)
    s("|---|---|---|---|---|---|---|---|---|")
    for row in cc["levels"]:
        s(_load_row(row))
    s("")
    if cc["thumbnail"]:
        s(
            'The same with `return_image: "thumbnail"` (each picture downloaded, decoded, shrunk to 512 px, '
            "encoded "
            "and sent inline; a fixed seed, so the emulator renders the 512x512 picture once and serves it "
            "like a "
            "CDN; saving still off):"
        )
        s("")
        s(header)
        s("|---|---|---|---|---|---|---|---|---|")
        for row in cc["thumbnail"]:
            s(_load_row(row))
        s("")
    if cc.get("lean"):
        s(
            'The server\'s own capacity: the same `return_image: "none"` calls from a minimal MCP client in '
            "this "
            "script (`lean_load`: raw HTTP/1.1 on asyncio streams, one connection per call, no SDK, no "
            "schema "
            "validation), so that the load generator's CPU does not share the two cores with the server:"
        )
        s("")
        s(header)
        s("|---|---|---|---|---|---|---|---|---|")
        for row in cc["lean"]:
            s(_load_row(row))
        s("")
    for title, prof in cc.get("profiles", {}).items():
        if not prof or not prof.get("total"):
            continue
        s(
            f"Where the server's CPU goes, {title} (py-spy, 200 Hz, {prof['total']} samples of busy threads, "
            "by the "
            "innermost library frame):"
        )
        s("")
        s("| part | share |")
        s("|---|---|")
        for name, n in prof["buckets"]:
            s(f"| {name} | {100 * n / prof['total']:.0f}% |")
        s("")
        s(
            "Top innermost functions: "
            + "; ".join(f"`{f}` {100 * n / prof['total']:.0f}%" for f, n in prof["functions"][:6])
        )
        s("")
    top = max(cc["levels"], key=lambda r: r["calls"])
    lean_top = max(cc.get("lean") or [top], key=lambda r: r["calls"])
    rows.append(
        [
            f"{top['calls']} concurrent generations, L = {cc['latency']:g} s, wall",
            f"{secs(top['wall'])} with tests/loadgen.py ({top['completed']}/{top['calls']} completed); "
            f"{secs(lean_top['wall'])} with a raw-HTTP client",
            "within 3 s",
            verdict(top["wall"] <= 3.0 and top["completed"] == top["calls"])
            if top["calls"] >= 500
            else "n/a",
        ]
    )
    rows.append(
        [
            f"Peak server memory, {top['calls']} concurrent",
            mb(top["rss_peak"]),
            "under 250 MB",
            verdict(top["rss_peak"] < 250 * 1024 * 1024) if top["calls"] >= 500 else "n/a",
        ]
    )
    if cc["thumbnail"]:
        tt = max(cc["thumbnail"], key=lambda r: r["calls"])
        rows.append(
            [
                f"{tt['calls']} concurrent with thumbnails: wall, peak memory",
                f"{secs(tt['wall'])}, {mb(tt['rss_peak'])}",
                "(reported)",
                "",
            ]
        )

    # 6. memory
    s("## 6. Memory (resident set of the server process)")
    s("")
    load200 = next(
        (r for r in cc["levels"] if r["calls"] == 200), max(cc["levels"], key=lambda r: r["calls"])
    )
    s("| state | RSS |")
    s("|---|---|")
    s(f"| stdio server, idle after `tools/list` | {mb(data['stdio_idle_rss'])} |")
    s(f"| HTTP server, idle after start | {mb(cc['rss_idle_start'])} |")
    s(f"| HTTP server, idle after one call | {mb(cc['rss_idle_warm'])} |")
    s(f"| HTTP server, peak under {load200['calls']} concurrent calls | {mb(load200['rss_peak'])} |")
    s(f"| HTTP server, idle after all the load above | {mb(cc['rss_idle_end'])} |")
    s("")
    rows.append(
        [
            "Memory idle (stdio / HTTP) and under 200 calls",
            f"{mb(data['stdio_idle_rss'])} / {mb(cc['rss_idle_start'])}, "
            f"{mb(load200['rss_peak'])} at {load200['calls']} calls",
            "(reported)",
            "",
        ]
    )
    data["summary_rows"] = rows
    data["sections"] = sections


def _load_row(row: dict[str, Any]) -> str:
    done = f"{row['completed']}/{row['calls']}" + (f" ({row['first_error'][:60]})" if row["errors"] else "")
    walls = row.get("walls") or []
    wall = secs(row["wall"]) + (f" (runs: {', '.join(f'{w:.2f}' for w in walls)})" if len(walls) > 1 else "")
    return (
        f"| {row['calls']} | {row['sessions']} | {done} | {wall} | {secs(row['p50'])} | "
        f"{secs(row['p95'])} | {row['polls_per_prediction']:.1f} | {mb(row['rss_peak'])} | "
        f"{row['cpu_server']:.1f} / {row['cpu_emulator']:.1f} / {row['cpu_loadgen']:.1f} s |"
    )


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a few-second run that only shows the benchmark works"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="report file (default bench/RESULTS.md; with --quick a scratch file, keeping the committed one)",
    )
    parser.add_argument("--no-npx", action="store_true", help="skip the official server's cold start")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.output is None:  # --quick never overwrites the committed report
        quick_dir = Path(tempfile.mkdtemp(prefix="atlas-bench-quick-")) if quick else None
        args.output = quick_dir / "RESULTS.md" if quick_dir else ROOT / "bench" / "RESULTS.md"
    started = time.monotonic()
    data: dict[str, Any] = {"machine": machine()}
    data["machine"]["load_start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    data["machine"]["calibration_start"] = calibration()

    log("cold start")
    data["cold_start"] = cold_start(
        2 if quick else 10, with_npx=not (quick or args.no_npx), warm_up=not quick
    )
    data["imports"] = [] if quick else import_profile()

    with tempfile.TemporaryDirectory(prefix="atlas-bench-") as tmp, emulator_process(1.0) as emu:
        latencies = [0.2] if quick else [1.0, 5.0]
        data["latency"] = []
        for latency in latencies:
            log(f"added latency, L = {latency:g} s")
            data["latency"].append(latency_run(emu, latency, 3 if quick else 20, tmp))
        data["thumbnail_cost"] = thumbnail_cost(emu, tmp, 3 if quick else 20)
        data["long"] = []
        if not quick:
            log("polling cost, L = 30 s")
            data["long"].append(polls_only_run(emu, 30.0, 2, tmp))
        data["turns"] = turns(5.0)
        data["stdio_idle_rss"] = data["latency"][0]["idle_rss"]
        levels = [10] if quick else [1, 10, 50, 100, 200, 500]
        thumb_levels = [] if quick else [200, 500]
        lean_levels = [10] if quick else [200, 500]
        data["concurrency"] = concurrency_runs(
            emu,
            levels,
            thumb_levels,
            lean_levels,
            profile=not (quick or args.no_profile),
            latency=0.2 if quick else 1.0,
            repeats=1 if quick else 3,
        )
    data["machine"]["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    data["machine"]["calibration_end"] = calibration()

    build_sections(data, quick)
    report = render_report(data, quick)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    log(f"wrote {args.output} in {time.monotonic() - started:.0f} s")
    if quick:
        sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
