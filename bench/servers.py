"""The Atlas emulator and the servers under test, each in its own process on loopback."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.procs import clean_env, stop
from bench.stdio import RawStdio
from tests.emulation import EMULATOR_COMMAND
from tests.loadgen import free_port

KEY = "bench-key-0123456789"
SERVER_COMMAND = [sys.executable, "-m", "atlas_image_mcp"]
DURATION_SEED = 12  # the emulator's draws of per-job durations


@dataclass
class Emulator:
    url: str
    pid: int
    http: httpx.Client = field(repr=False)

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
def emulator_process(
    latency: float = 1.0, durations: str | None = None, api_keys: tuple[str, ...] = ()
) -> Iterator[Emulator]:
    """The emulator with the tests' request log and admin routes (``tests/emulation``): every job takes
    ``latency`` s, or a draw from ``durations`` (seeded with :data:`DURATION_SEED`); it accepts only
    ``api_keys`` when some are given (else any key)."""
    port = free_port()
    cmd = [*EMULATOR_COMMAND, "--port", str(port), "--latency", str(latency)]
    if durations:
        cmd += ["--durations", durations, "--seed", str(DURATION_SEED)]
    for key in api_keys:
        cmd += ["--api-key", key]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=60)
    try:
        wait_ready(http, "/api/v1/models", proc)
        yield Emulator(url=url, pid=proc.pid, http=http)
    finally:
        http.close()
        stop(proc)


@contextlib.contextmanager
def http_server_process(
    upstream_url: str, *args: str, ready_timeout: float = 60.0, **env: str
) -> Iterator[tuple[str, int, Path]]:
    """``atlas-image-mcp serve --transport http [args]`` against ``upstream_url``, with ``env`` added
    to its environment; yields (base URL, pid, stderr log path) once it (and each worker) is up."""
    port = free_port()
    fd, name = tempfile.mkstemp(prefix="atlas-bench-http-", suffix=".log")
    os.close(fd)
    logfile = Path(name)
    # The load sections fire hundreds of connections from this one address, which is not what they
    # measure: the per-address connection limit is lifted unless ``env`` sets it.
    env = {"ATLAS_MCP_MAX_CONNECTIONS_PER_ADDRESS": "100000", **env}
    environment = clean_env(ATLASCLOUD_BASE_URL=upstream_url, ATLASCLOUD_API_KEY=KEY, **env)
    cmd = [*SERVER_COMMAND, "serve", "--transport", "http", "--port", str(port), *args]
    with logfile.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            wait_ready(http, "/healthz", proc, ready_timeout)
        workers = args.count("--workers") and int(args[args.index("--workers") + 1])
        _wait_workers(logfile, workers, time.monotonic() + ready_timeout)
        yield url, proc.pid, logfile
    finally:
        stop(proc)
        logfile.unlink(missing_ok=True)


def _wait_workers(logfile: Path, workers: int, deadline: float) -> None:
    """Until each of ``workers`` worker processes has logged its start-up (none: at once)."""
    while workers and logfile.read_text(errors="replace").count("Application startup complete") < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all {workers} workers started")
        time.sleep(0.1)


def wait_ready(http: httpx.Client, path: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until ``path`` answers 200; fails if the process exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {path} answered")
        with contextlib.suppress(httpx.HTTPError):
            if http.get(path, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not answer within {timeout} s")


def stdio_server(upstream_url: str, output_dir: str, **env: str) -> RawStdio:
    """``python -m atlas_image_mcp`` over stdio against ``upstream_url``, saving to ``output_dir``."""
    environment = clean_env(
        ATLASCLOUD_BASE_URL=upstream_url, ATLASCLOUD_API_KEY=KEY, ATLAS_MCP_OUTPUT_DIR=output_dir, **env
    )
    return RawStdio(SERVER_COMMAND, environment)


#: One process starts at a time: a start-up takes a core for most of a second, which would otherwise
#: land on the calls being measured in the other runs.
STARTING = threading.Lock()


def started_server(upstream_url: str, tmp: str) -> RawStdio:
    """A stdio server that has answered ``tools/list``, started while no other one starts."""
    with STARTING:
        server = stdio_server(upstream_url, tmp)
        try:
            server.handshake()
        except BaseException:
            server.close()
            raise
    return server
