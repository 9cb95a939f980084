"""The JSON-RPC messages of an MCP client's handshake and calls, as both servers understand them."""

from __future__ import annotations

import json
from typing import Any

PROTOCOL = "2025-06-18"  # understood by both servers


def request(rid: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}


def notification(method: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method}


def initialize_params() -> dict[str, Any]:
    """What the client says of itself in ``initialize``: this protocol version, no capabilities."""
    return {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}


def initialize(rid: int) -> dict[str, Any]:
    return request(rid, "initialize", initialize_params())


INITIALIZED = "notifications/initialized"


def line(message: dict[str, Any]) -> bytes:
    """One message as the stdio transport frames it: JSON, then a newline."""
    return json.dumps(message).encode() + b"\n"


def tool_call(rid: int, tool: str, arguments: dict[str, Any], **params: Any) -> dict[str, Any]:
    return request(rid, "tools/call", {"name": tool, "arguments": arguments, **params})
