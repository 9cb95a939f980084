"""Load generation over streamable HTTP, shared by the test suite and ``bench/``.

Building blocks (no pytest in here, so ``bench/run.py`` can import it as ``tests.loadgen``):

* :func:`start_emulator_process` - the Atlas emulator in its own process on a free port.
* :func:`serve_in_thread` - any ASGI app (the MCP HTTP app) under a real uvicorn in a thread.
* :func:`run_load` - N ``generate_image`` calls (or any tool) in flight at once from S MCP
  client sessions; returns :class:`LoadStats` (wall time, latencies, errors).
* :func:`rss_bytes`, :func:`open_fds`, :class:`RssSampler` - process memory and descriptors
  from ``/proc/self`` (Linux), no psutil needed.

Example (what ``tests/test_load.py`` does with 50 calls, and the benchmark with 200 and 500)::

    with start_emulator_process(latency=1.0) as emulator_url:
        client = AtlasClient(ClientOptions(base_url=emulator_url), api_key=KEY)
        runtime = Runtime.create(settings, remote=True, client=client)
        with serve_in_thread(create_http_app(runtime)) as base:
            stats = run_load_sync(f"{base}/mcp", calls=200, sessions=20, arguments=LOAD_ARGUMENTS)
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = [
    "LOAD_ARGUMENTS",
    "LoadStats",
    "RssSampler",
    "free_port",
    "fd_census",
    "open_fds",
    "rss_bytes",
    "run_load",
    "run_load_sync",
    "serve_in_thread",
    "start_emulator_process",
]

#: The load call: a small picture, nothing inline, nothing saved.
LOAD_ARGUMENTS: dict[str, Any] = {
    "prompt": "a lighthouse at dusk",
    "width": 512,
    "height": 512,
    "return_image": "none",
    "save": False,
}


# --- processes, ports and servers ------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for servers that cannot report the port they bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def start_emulator_process(
    latency: float = 1.0, *, extra_args: tuple[str, ...] = (), startup_timeout: float = 20.0
) -> Iterator[str]:
    """Run the tests' emulator (:data:`tests.emulation.EMULATOR_COMMAND`) in its own process; yield its URL.

    The emulator accepts ``--port 0`` but then reports the bound port only in uvicorn's INFO log,
    which would also turn on a log line per request; so a free port is picked here, the emulator
    runs with ``--log-level warning``, and readiness is polled on ``/api/v1/models``. The process is
    terminated (then killed) on exit.
    """
    import httpx

    from .emulation import EMULATOR_COMMAND

    last_error = "not started"
    for _attempt in range(3):  # another process may take the port between the check and the bind
        port = free_port()
        cmd = [
            *EMULATOR_COMMAND, "--port", str(port), "--latency", str(latency),
            "--log-level", "warning", *extra_args,
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup_timeout
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/api/v1/models", timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError as exc:
                    last_error = f"{type(exc).__name__}"
                time.sleep(0.05)
            else:
                last_error = f"exit code {proc.poll()}" if proc.poll() is not None else "startup timed out"
                continue
            yield url
            return
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    raise RuntimeError(f"the emulator process did not start ({last_error})")


@contextlib.contextmanager
def serve_in_thread(
    app: Any, *, host: str = "127.0.0.1", graceful: float = 2.0, **config: Any
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on ``host:0`` in a daemon thread; yield ``http://host:port``.

    The app's lifespan runs (so the MCP session manager starts). On exit uvicorn is asked to stop
    and gets ``graceful`` seconds for open connections.
    """
    import uvicorn

    options: dict[str, Any] = {
        "host": host,
        "port": 0,
        "log_config": None,
        "log_level": "warning",
        "timeout_graceful_shutdown": graceful,
        "ws": "none",
    }
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=graceful + 5)


# --- process measurements --------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident set size of this process (``VmRSS`` of ``/proc/self/status``), 0 when unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def open_fds() -> int:
    """Open file descriptors of this process (entries of ``/proc/self/fd``), -1 when unknown."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _socket_peers() -> dict[str, int]:
    """Socket inode -> remote TCP port, for every TCP socket on this machine (from ``/proc/net``)."""
    peers: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for line in handle:
                    fields = line.split()
                    peers[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
        except (OSError, StopIteration):
            continue
    return peers


def fd_census(upstream_port: int) -> dict[str, int]:
    """This process's descriptors by kind: ``upstream`` (TCP sockets whose peer is ``upstream_port``),
    ``other_sockets``, and ``not_sockets`` (files, pipes, event fds...).

    Unlike a bare count, this does not move with the timing of other processes: sockets to and from
    the load generator close whenever the kernel and the event loop get to it, but the pool to the
    upstream is bounded by the client's own limit, and nothing else should grow at all.
    """
    peers = _socket_peers()
    census = {"upstream": 0, "other_sockets": 0, "not_sockets": 0}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed while listing (this listing's own descriptor, among others)
        if target.startswith("socket:["):
            inode = target[len("socket:[") : -1]
            census["upstream" if peers.get(inode) == upstream_port else "other_sockets"] += 1
        else:
            census["not_sockets"] += 1
    return census


class RssSampler:
    """Samples :func:`rss_bytes` every ``interval`` seconds in a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, rss_bytes())


# --- the load itself -------------------------------------------------------------------------


@dataclass
class LoadStats:
    """What one :func:`run_load` observed. Latencies are per call, in seconds."""

    calls: int
    sessions: int
    wall_seconds: float = 0.0
    completed: int = 0
    tool_errors: int = 0
    exceptions: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the first few messages, for diagnosis
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.completed == self.calls

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]

    def summary(self) -> dict[str, Any]:
        lat = self.latencies
        return {
            "calls": self.calls,
            "sessions": self.sessions,
            "completed": self.completed,
            "tool_errors": self.tool_errors,
            "exceptions": self.exceptions,
            "wall_seconds": round(self.wall_seconds, 3),
            "p50_seconds": round(self.percentile(50), 3),
            "p95_seconds": round(self.percentile(95), 3),
            "max_seconds": round(max(lat), 3) if lat else 0.0,
            "mean_seconds": round(statistics.fmean(lat), 3) if lat else 0.0,
            "statuses": dict(self.statuses),
        }


async def run_load(
    url: str,
    calls: int,
    sessions: int,
    arguments: Mapping[str, Any] | None = None,
    *,
    tool: str = "generate_image",
    headers: Mapping[str, str] | None = None,
    per_call_timeout: float = 120.0,
    expected_status: str = "completed",
) -> LoadStats:
    """Open ``sessions`` MCP sessions to ``url`` (streamable HTTP), then fire ``calls`` tool calls at once.

    Calls are spread round-robin over the sessions and all start together once every session is
    initialised (session setup is not part of ``wall_seconds``). A call counts as completed when
    it is not an error and its ``structuredContent.status`` equals ``expected_status`` (pass
    ``None`` to accept any non-error result).
    """
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    if calls < 1 or sessions < 1:
        raise ValueError("calls and sessions must be >= 1")
    stats = LoadStats(calls=calls, sessions=sessions)
    args = dict(LOAD_ARGUMENTS if arguments is None else arguments)

    async def one(client: Client) -> None:
        started = time.perf_counter()
        try:
            with anyio.fail_after(per_call_timeout):
                result = await client.call_tool(tool, args)
        except Exception as exc:  # a transport failure is a result of the load, not a crash of it
            stats.exceptions += 1
            if len(stats.errors) < 10:
                stats.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        stats.latencies.append(time.perf_counter() - started)
        structured = result.structured_content or {}
        status = str(structured.get("status", "?"))
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        if result.is_error:
            stats.tool_errors += 1
            if len(stats.errors) < 10:
                text = " ".join(getattr(b, "text", "") for b in result.content)
                stats.errors.append(text[:300])
        elif expected_status is None or status == expected_status:
            stats.completed += 1

    async with contextlib.AsyncExitStack() as stack:
        clients: list[Client] = []
        for _ in range(sessions):
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=dict(headers or {}), timeout=httpx2.Timeout(30.0, read=300.0))
            )
            transport = streamable_http_client(url, http_client=http)
            clients.append(await stack.enter_async_context(Client(transport)))
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(calls):
                tg.start_soon(one, clients[n % sessions])
        stats.wall_seconds = time.perf_counter() - started
    return stats


def run_load_sync(
    url: str, calls: int, sessions: int, arguments: Mapping[str, Any] | None = None, **kw: Any
) -> LoadStats:
    """:func:`run_load` from synchronous code (a fresh event loop)."""
    return anyio.run(lambda: run_load(url, calls, sessions, arguments, **kw))
