"""Serving the HTTP app for tests: a real uvicorn on 127.0.0.1 (port 0) in a thread, and MCP clients for it.

    with serve_app(create_http_app(runtime)) as base:      # base = "http://127.0.0.1:PORT"
        async with mcp_client(base, "streamable-http", headers={...}) as client:
            ...

The server thread runs its own event loop; readiness is signalled by uvicorn's own startup (no
polling, no sleeps) and shutdown is bounded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

START_TIMEOUT = 15.0
#: The console script of the installed package, beside the interpreter running the tests: what a
#: newcomer runs tests with need not be on PATH (a venv that is not activated).
ENTRY_POINT = Path(sys.executable).with_name("atlas-image-mcp")
STOP_TIMEOUT = 10.0
TRANSPORTS = ("stdio", "streamable-http", "sse")
#: What a raw streamable-HTTP client sends: the headers of every POST, and its first message.
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}


class _Server(uvicorn.Server):
    """uvicorn with a ``ready`` event set once the socket listens (or startup failed)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


@contextmanager
def serve_app(app: Any, port: int = 0) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 with a free port (or ``port``); yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        loop="asyncio",
        timeout_graceful_shutdown=2,
        server_header=False,
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        if not server.ready.wait(START_TIMEOUT) or not server.started:
            raise RuntimeError("the test server did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():  # pragma: no cover - a hang is a test failure, not a silent leak
            server.force_exit = True
            thread.join(STOP_TIMEOUT)
            raise RuntimeError("the test server did not stop")


def mcp_transport(base: str, transport: str, headers: Mapping[str, str] | None = None) -> Any:
    """An SDK client transport to ``base`` (``streamable-http`` -> ``/mcp``, ``sse`` -> ``/sse``)."""
    if transport == "sse":
        return sse_client(f"{base}/sse", headers=dict(headers or {}), timeout=10, sse_read_timeout=60)
    if transport == "streamable-http":
        http = httpx2.AsyncClient(headers=dict(headers or {}), timeout=httpx2.Timeout(10, read=60))
        return _owned(streamable_http_client(f"{base}/mcp", http_client=http), http)
    raise ValueError(transport)


@asynccontextmanager
async def _owned(transport: Any, http: httpx2.AsyncClient) -> AsyncIterator[Any]:
    async with http, transport as streams:
        yield streams


@asynccontextmanager
async def mcp_client(
    base: str, transport: str, headers: Mapping[str, str] | None = None, **options: Any
) -> AsyncIterator[Client]:
    options.setdefault("read_timeout_seconds", 30)
    async with Client(mcp_transport(base, transport, headers), **options) as client:
        yield client


_RAW_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def rpc_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a streamable-HTTP answer (plain JSON, or the last SSE event)."""
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")][-1]
    return dict(json.loads(text))


class RawSession:
    """A handshake-era streamable-HTTP session in raw JSON-RPC, for shapes the SDK client refuses
    (such as the 2025-11-25 ``{"task": ...}`` answer to a task-augmented ``tools/call``)."""

    def __init__(self, http: httpx.AsyncClient, url: str, headers: Mapping[str, str] | None = None) -> None:
        self.http, self.url, self.headers, self.next_id = http, url, {**_RAW_HEADERS, **(headers or {})}, 0

    async def open(
        self, version: str = "2025-11-25", capabilities: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``initialize`` at ``version`` (then ``notifications/initialized``); the initialize result."""
        hello = {
            "protocolVersion": version,
            "capabilities": dict(capabilities or {}),
            "clientInfo": {"name": "raw", "version": "1"},
        }
        response = await self.http.post(
            self.url, headers=self.headers, json=self._message("initialize", hello)
        )
        self.headers.update(
            {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": version}
        )
        await self.http.post(
            self.url, headers=self.headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"}
        )
        return dict(rpc_body(response)["result"])

    def _message(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        return {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """The JSON-RPC response to ``method`` (with ``result`` or ``error``)."""
        response = await self.http.post(self.url, headers=self.headers, json=self._message(method, params))
        return rpc_body(response)

    async def call_answering(
        self, answer: Callable[[dict[str, Any]], dict[str, Any]], method: str, **params: Any
    ) -> dict[str, Any]:
        """Like :meth:`call`, answering each request the server sends on the call's stream with ``answer``
        (its params -> the result), as a client with that capability does."""
        message = self._message(method, params)
        async with self.http.stream("POST", self.url, headers=self.headers, json=message) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if "method" in event and "id" in event:  # a request from the server
                    reply = {"jsonrpc": "2.0", "id": event["id"], "result": answer(event.get("params") or {})}
                    await self.http.post(self.url, headers=self.headers, json=reply)
                elif event.get("id") == message["id"]:
                    return dict(event)
        raise AssertionError("the call's stream ended without its answer")


def stdio_params(env: Mapping[str, str], *args: str) -> StdioServerParameters:
    """The server as a subprocess of this interpreter: ``python -m atlas_image_mcp *args``."""
    return StdioServerParameters(command=sys.executable, args=["-m", "atlas_image_mcp", *args], env=dict(env))


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test process environment without ATLAS* variables, HOME in ``tmp_path``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS", "ATLASCLOUD"))}
    env["HOME"] = str(tmp_path / "home")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(
    argv: Sequence[str], env: Mapping[str, str], port: int, *, timeout: float = START_TIMEOUT
) -> Iterator[subprocess.Popen[str]]:
    """Start ``argv`` (an HTTP server on 127.0.0.1:``port``), wait for /healthz, stop it afterwards."""
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.communicate(timeout=STOP_TIMEOUT)


def wait_healthy(base: str, proc: subprocess.Popen[str], timeout: float) -> None:
    """Poll ``/healthz`` until it answers 200 (each attempt bounded; the whole wait bounded)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate(timeout=STOP_TIMEOUT)
            raise AssertionError(f"server exited with {proc.returncode} before answering /healthz:\n{err}")
        try:
            response = httpx.get(f"{base}/healthz", timeout=1.0)
        except httpx.TransportError as exc:  # not listening yet
            last = exc
            time.sleep(0.05)
            continue
        if response.status_code == 200:
            return
        last = response
        time.sleep(0.05)
    raise AssertionError(f"{base}/healthz did not answer 200 within {timeout}s (last: {last!r})")
