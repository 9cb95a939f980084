"""An MCP client over a child's pipes, in raw JSON-RPC (no SDK in between)."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import tempfile
import threading
import time
from typing import Any

from bench import jsonrpc


class RawStdio:
    """Spawn an MCP stdio server (in the temporary folder) and talk newline-delimited JSON-RPC to it.

    A reader thread timestamps each line as it arrives, so reading does not add to the timings.
    """

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.errlog = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errlog,
            env=env,
            cwd=tempfile.gettempdir(),
        )
        self.lines: queue.Queue[tuple[float, bytes | None]] = queue.Queue()
        self.next_id = 0
        self.tools: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line))
        self.lines.put((time.monotonic(), None))

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(jsonrpc.line(message))
        self.proc.stdin.flush()

    def request(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 120.0
    ) -> tuple[dict[str, Any], float]:
        """Send a request; return (response, monotonic time it arrived). Notifications are skipped."""
        self.next_id += 1
        rid = self.next_id
        self.send(jsonrpc.request(rid, method, params))
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
        """initialize + notifications/initialized + tools/list (kept in :attr:`tools`); return when
        tools/list was answered."""
        self._result("initialize", jsonrpc.initialize_params(), timeout)
        self.send(jsonrpc.notification(jsonrpc.INITIALIZED))
        tools, at = self._result("tools/list", {}, timeout)
        self.tools = list(tools.get("tools", []))
        return at

    def _result(self, method: str, params: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float]:
        """A request whose error answer is a failure: its result, and when it arrived."""
        answer, at = self.request(method, params, timeout)
        if "error" in answer:
            raise RuntimeError(f"{method} failed: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result, at

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
