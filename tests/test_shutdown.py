"""Shutdown: SIGTERM on the HTTP server, and atomic saves.

A real ``atlas-image-mcp serve --transport http --offline`` process gets SIGTERM while a
generate_image call is in flight. It must stop taking new connections, let the call finish (or
cancel it cleanly once the 5 s grace period is over), close its Atlas HTTP client, exit with
status 0 within ~8 s with a clean log, and leave no partially written picture behind.
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
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from atlas_image_mcp import storage
from atlas_image_mcp.errors import SaveError
from atlas_image_mcp.storage import partial_files, save_atomic, write_atomic

from .loadgen import free_port

EXIT_BOUND = 8.0


@contextlib.contextmanager
def http_server(output_dir: Path, stderr_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ATLAS")},
        "ATLAS_MCP_OUTPUT_DIR": str(output_dir),
        "ATLAS_MCP_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "atlas_image_mcp",
                "serve",
                "--transport",
                "http",
                "--offline",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, stderr_path.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


async def call_in_flight_then_sigterm(
    proc: subprocess.Popen[bytes], url: str, arguments: dict[str, Any]
) -> tuple[Any, list[str]]:
    """Start a call, SIGTERM once it is running; return its outcome, the exit delay, and new-call probes."""
    outcome: dict[str, Any] = {}
    running = anyio.Event()
    probes: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        running.set()

    async def call(client: Client) -> None:
        try:
            with anyio.fail_after(15):
                outcome["result"] = await client.call_tool(
                    "generate_image", arguments, progress_callback=on_progress
                )
        except Exception as exc:  # the server went away under the call: that must end it, not hang it
            outcome["error"] = exc

    stack = contextlib.AsyncExitStack()
    client = await stack.enter_async_context(Client(f"{url}/mcp", mode="legacy"))
    await client.list_tools()  # the client validates results against the output schema: fetch it now
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, client)
            with anyio.fail_after(10):
                await running.wait()
            proc.send_signal(signal.SIGTERM)
            await anyio.sleep(0.5)
            try:  # a new connection after SIGTERM is not served
                response = await anyio.to_thread.run_sync(lambda: httpx.get(f"{url}/healthz", timeout=2))
                probes.append(f"HTTP {response.status_code}")
            except httpx.HTTPError as exc:
                probes.append(type(exc).__name__)
            # exits within the bound (TimeoutExpired otherwise), with status 0
            code = await anyio.to_thread.run_sync(lambda: proc.wait(EXIT_BOUND))
            assert code == 0, f"exit status {code}"
    finally:
        with contextlib.suppress(Exception):  # closing the session talks to a server that is gone
            with anyio.move_on_after(5):
                await stack.aclose()
    return outcome, probes


def assert_clean_log(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "shut down: sessions closed, Atlas HTTP client closed" in stderr, stderr
    assert stderr.rstrip().splitlines()[-1].endswith("atlas-image-mcp stopped"), stderr


def no_partial_files(folder: Path) -> list[Path]:
    return (
        [p for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".")]
        if folder.exists()
        else []
    )


@pytest.mark.subprocess
async def test_sigterm_lets_the_call_in_flight_finish_then_exits_cleanly(tmp_path: Path) -> None:
    out, log = tmp_path / "pictures", tmp_path / "stderr.log"
    with http_server(out, log) as (proc, url):
        outcome, probes = await call_in_flight_then_sigterm(
            proc, url, {"prompt": "a fox [emulator:latency=1.5]", "width": 512, "height": 512, "save": True}
        )
    assert probes and probes[0] in ("ConnectError", "RemoteProtocolError", "ReadError", "HTTP 503"), probes
    result = outcome.get("result")
    assert result is not None and result.is_error is False, outcome
    assert result.structured_content["status"] == "completed"
    saved = Path(result.structured_content["outputs"][0]["path"])
    assert saved.is_file() and saved.stat().st_size > 1000 and saved.parent == out  # noqa: ASYNC240
    assert no_partial_files(out) == []
    stderr = log.read_text()
    assert_clean_log(stderr)
    assert "waiting up to" in stderr and "cancelling" not in stderr


@pytest.mark.subprocess
async def test_sigterm_answers_a_call_that_outlasts_the_grace_period_with_its_prediction_id(
    tmp_path: Path,
) -> None:
    """The job keeps running at Atlas: the client gets "processing" and the id to collect it with."""
    out, log = tmp_path / "pictures", tmp_path / "stderr.log"
    with http_server(out, log) as (proc, url):
        outcome, _probes = await call_in_flight_then_sigterm(
            proc,
            url,
            {"prompt": "a slow fox [emulator:latency=30]", "width": 512, "height": 512, "save": True},
        )
    result = outcome.get("result")
    assert result is not None and result.is_error is False, outcome
    data = result.structured_content
    assert data["status"] == "processing" and data["prediction_id"], data
    assert "get_prediction" in data["next_step"] and "stopping" in data["next_step"]
    assert not out.exists() or list(out.iterdir()) == []
    stderr = log.read_text()
    assert_clean_log(stderr)
    assert "answering 1 call(s) still waiting with their prediction id" in stderr
    assert "cancelling" not in stderr


@pytest.mark.subprocess
async def test_sigterm_on_an_idle_server_exits_at_once(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    with http_server(tmp_path / "pictures", log) as (proc, _url):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(3) == 0  # at once: TimeoutExpired after 3 s
    assert_clean_log(log.read_text())


# --- atomic writes --------------------------------------------------------------------------------


async def test_a_save_writes_the_whole_file_under_its_final_name_only(tmp_path: Path) -> None:
    target = tmp_path / "pics" / "abc-1.jpg"
    saved = await save_atomic(target, b"\xff\xd8" + b"x" * 100_000)
    assert saved == target.resolve() and target.read_bytes().startswith(b"\xff\xd8")
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in target.parent.iterdir()) == ["abc-1.jpg"]


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
async def test_a_failure_mid_write_leaves_no_file_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "abc-1.jpg"

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    if failing == "write":
        real_fdopen = os.fdopen

        def fdopen(fd: int, mode: str) -> Any:
            handle = real_fdopen(fd, mode)

            class Half:
                def __enter__(self) -> Any:
                    return self

                def __exit__(self, *exc: object) -> None:
                    handle.close()

                def write(self, data: bytes) -> None:
                    handle.write(data[: len(data) // 2])  # half of it reaches the disk
                    raise OSError(28, "No space left on device")

            return Half()

        monkeypatch.setattr(storage.os, "fdopen", fdopen)
    else:
        monkeypatch.setattr(storage.os, failing, boom)
    with pytest.raises(SaveError, match="No space left on device") as info:
        await save_atomic(target, b"x" * 10_000)
    assert "ATLAS_MCP_OUTPUT_DIR" in info.value.message
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240
    assert len(partial_files) == 0


async def test_a_cancelled_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interruption (here KeyboardInterrupt inside the writing thread) removes the temporary file."""
    target = tmp_path / "abc-1.jpg"

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"x" * 10_000)
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240


def test_temporary_files_still_being_written_at_exit_are_removed(tmp_path: Path) -> None:
    leftover = tmp_path / ".abc-1.jpg.1234.part"
    leftover.write_bytes(b"half a picture")
    partial_files.add(str(leftover))
    partial_files.remove_all()
    assert not leftover.exists() and len(partial_files) == 0


def test_an_existing_picture_is_replaced_whole_never_truncated(tmp_path: Path) -> None:
    target = tmp_path / "abc-1.jpg"
    target.write_bytes(b"old picture")
    write_atomic(target, b"new picture, longer")
    assert target.read_bytes() == b"new picture, longer"
    assert [p.name for p in tmp_path.iterdir()] == ["abc-1.jpg"]
