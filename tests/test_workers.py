"""``serve --transport http --stateless --workers N``: worker processes behind one port.

One real process tree (the process boundary under test): the parent binds the port and starts the
workers, every call is answered by one of them, and SIGTERM stops them all with status 0. The
refusals need no port at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from atlas_image_mcp.settings import (
    Settings,
    SettingsError,
    WorkerOptions,
    export_for_workers,
    worker_options,
)

from .loadgen import free_port

START_BOUND = 90.0  # each worker is a fresh interpreter that imports everything
EXIT_BOUND = 15.0
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "generate_image", "arguments": {"prompt": "a fox", "return_image": "none"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ATLAS")}, **extra}


def serve(*args: str, **popen: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "atlas_image_mcp", "serve", *args],
        stdout=subprocess.DEVNULL,
        env=clean_env(PYTHONUNBUFFERED="1"),
        **popen,  # type: ignore[call-overload]
    )


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--transport", "http", "--workers", "2"], "--workers needs --stateless"),
        (["--transport", "stdio", "--workers", "2"], "only to --transport http"),
    ],
)
def test_workers_are_refused_where_sessions_or_stdio_would_break(args: list[str], said: str) -> None:
    proc = serve(*args, "--port", str(free_port()), stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert said in err.decode()


def test_the_parent_hands_its_options_and_one_task_secret_to_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ATLAS_MCP_WORKER", "ATLAS_MCP_TASK_SECRET"):  # put back as they were (absent) after
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    with pytest.raises(SettingsError, match="serve --transport http --stateless --workers"):
        worker_options({})
    export_for_workers(WorkerOptions(host="0.0.0.0", offline=True), Settings())
    assert worker_options() == WorkerOptions(host="0.0.0.0", offline=True)
    shared = os.environ["ATLAS_MCP_TASK_SECRET"]
    assert Settings.from_env().task_secret == shared  # every worker signs task ids with it
    export_for_workers(WorkerOptions(host="127.0.0.1"), Settings.from_env())
    assert os.environ["ATLAS_MCP_TASK_SECRET"] == shared  # a secret already set is kept


def worker_pids(parent: int) -> list[int]:
    pids = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        children = (task / "children").read_text().split()
        for pid in children:
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(int(pid))
    return sorted(pids)


@contextlib.contextmanager
def two_workers(log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    with log.open("wb") as err:
        proc = serve(
            "--transport",
            "http",
            "--stateless",
            "--workers",
            "2",
            "--offline",
            "--port",
            str(port),
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_BOUND
        while len(worker_pids(proc.pid)) < 2 or log.read_text().count("Application startup complete") < 2:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.subprocess
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from /proc")
async def test_two_workers_answer_on_one_port_and_stop_cleanly_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with two_workers(log) as (proc, url):
        workers = worker_pids(proc.pid)
        assert len(workers) == 2
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.get(f"{url}/healthz")).json()["status"] == "ok"
            assert (await http.get(f"{url}/sse")).status_code == 404  # no legacy SSE across workers
            answers = []

            async def one() -> None:
                response = await http.post(f"{url}/mcp", json=CALL, headers=HEADERS)
                answers.append(response.text)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(one)
        assert len(answers) == 8 and all('"status":"completed"' in a for a in answers)
        if sys.platform.startswith("linux"):  # one listening socket per worker: the kernel balances them
            assert listening_sockets(int(url.rsplit(":", 1)[1])) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(EXIT_BOUND) == 0, log.read_text()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes()
    text = log.read_text()
    assert text.count("Finished server process") == 2 and "Traceback" not in text


@pytest.mark.subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="each worker's own socket: Linux")
def test_workers_end_with_their_supervisor_even_when_it_is_killed(tmp_path: Path) -> None:
    """A worker left behind would keep its own socket on the port, beside a server started again."""
    with two_workers(tmp_path / "serve.log") as (proc, url):
        workers = worker_pids(proc.pid)
        proc.kill()
        proc.wait(EXIT_BOUND)
        deadline = time.monotonic() + EXIT_BOUND
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, f"workers still running: {workers}"
            time.sleep(0.1)
        assert listening_sockets(int(url.rsplit(":", 1)[1])) == 0


def alive(pid: int) -> bool:
    try:
        return b"zombie" not in Path(f"/proc/{pid}/status").read_bytes()
    except OSError:
        return False


def listening_sockets(port: int) -> int:
    """How many sockets of this machine listen on TCP ``port`` (Linux: /proc/net/tcp and tcp6)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                count += 1
    return count
