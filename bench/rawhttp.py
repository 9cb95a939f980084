"""A minimal MCP client over raw HTTP/1.1 (asyncio streams), to tell the server's own cost from the
MCP SDK client's: the same calls as ``tests.loadgen.run_load``, without pydantic, httpx or schema
validation, one connection per call."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from bench import jsonrpc

Headers = dict[str, str]


@dataclass
class ClientRun:
    """What the client saw of N calls fired at once."""

    wall: float = 0.0  # first call sent to last answer
    completed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def post(host: str, port: int, body: dict[str, Any], headers: Headers) -> tuple[int, Headers, bytes]:
    """POST one JSON-RPC message to /mcp on a new connection; (status, headers, body)."""
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
        response_headers = await _read_headers(reader)
        return status, response_headers, await _read_body(reader, response_headers)
    finally:
        writer.close()


async def _read_headers(reader: asyncio.StreamReader) -> Headers:
    headers: Headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


async def _read_body(reader: asyncio.StreamReader, headers: Headers) -> bytes:
    if headers.get("transfer-encoding") == "chunked":
        chunks = []
        while (size := int((await reader.readline()).strip() or b"0", 16)) > 0:
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        return b"".join(chunks)
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read()


def jsonrpc_answer(data: bytes) -> dict[str, Any] | None:
    """The JSON-RPC answer in a JSON or SSE body (the last ``data:`` line that carries an id)."""
    text = data.decode(errors="replace").strip()
    if text.startswith("{"):
        answer: dict[str, Any] = json.loads(text)
        return answer
    found = None
    for line in text.splitlines():
        if line.startswith("data:"):
            message = json.loads(line[5:])
            if "id" in message and ("result" in message or "error" in message):
                found = message
    return found


async def open_session(host: str, port: int) -> Headers:
    """initialize + notifications/initialized; the headers every call of this session sends."""
    _, headers, _ = await post(host, port, jsonrpc.initialize(0), {})
    session = {"mcp-protocol-version": jsonrpc.PROTOCOL}
    if "mcp-session-id" in headers:  # none when the server is stateless
        session["mcp-session-id"] = headers["mcp-session-id"]
    await post(host, port, jsonrpc.notification(jsonrpc.INITIALIZED), session)
    return session


def failure(data: bytes) -> str | None:
    """None when a ``generate_image`` answer completed, else a short account of what it said."""
    result = (jsonrpc_answer(data) or {}).get("result") or {}
    status = (result.get("structuredContent") or {}).get("status")
    if not result.get("isError") and status == "completed":
        return None
    if not result:
        return data.decode(errors="replace")[:150]
    text = " ".join(str(b.get("text", "")) for b in result.get("content") or [])
    text = text.removeprefix("Error executing tool generate_image: ")
    return f"{status or 'error'}: {text[:150]}"


async def lean_load(url: str, calls: int, sessions: int, arguments: dict[str, Any]) -> ClientRun:
    """``calls`` generate_image calls at once over ``sessions`` sessions (opened before the clock)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    ids = [await open_session(host, int(port)) for _ in range(sessions)]
    run = ClientRun()

    async def one(n: int) -> None:
        sent = time.perf_counter()
        body = jsonrpc.tool_call(n + 1, "generate_image", arguments)
        _, _, data = await post(host, int(port), body, ids[n % sessions])
        run.latencies.append(time.perf_counter() - sent)
        error = failure(data)
        if error is None:
            run.completed += 1
        elif not run.errors:
            run.errors.append(error)

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(calls)))
    run.wall = time.perf_counter() - started
    return run
