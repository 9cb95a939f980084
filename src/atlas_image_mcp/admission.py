"""How much gets in over HTTP: request bodies, and sessions and streams per key and in all.

Two pure ASGI layers, used by :func:`atlas_image_mcp.http.create_http_app` behind the access
guard (so only authenticated requests get this far):

* :class:`BodyLimits` reads each ``POST`` body itself, within a deadline (a body dripped a byte at
  a time is cut off), and caps it: ``ATLAS_MCP_MAX_MESSAGE_KB`` for ordinary JSON-RPC messages,
  the base64 size of ``ATLAS_MCP_MAX_UPLOAD_MB`` only for calls of the tools in
  :data:`~atlas_image_mcp.constants.LARGE_BODY_TOOLS`, and only
  :data:`~atlas_image_mcp.constants.LARGE_BODIES_AT_ONCE` of those at a time. It notes the
  JSON-RPC method for the layer below.
* :class:`SessionLimits` counts the sessions it saw open (streamable HTTP ``initialize`` answers
  carrying an ``Mcp-Session-Id``, and each ``GET /sse`` stream) per key and in all, refuses a
  new one past ``ATLAS_MCP_MAX_SESSIONS_PER_KEY`` (429) or ``ATLAS_MCP_MAX_SESSIONS`` (503), and
  forgets one when it is closed (``DELETE``, a 404 for it, the stream ending) or idle for
  ``ATLAS_MCP_SESSION_IDLE_SECONDS`` with nothing in flight (the SDK's own rule, which it also
  applies to its sessions).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .constants import BODY_TIMEOUT_SECONDS, LARGE_BODIES_AT_ONCE, LARGE_BODY_TOOLS
from .settings import env_name

__all__ = ["BodyLimits", "SessionLimits", "error_body", "json_rpc_answer"]

#: scope keys this module and the access guard share
OWNER = "atlas_image_mcp.owner"
METHOD = "atlas_image_mcp.method"
_PEEK = 64 * 1024
_METHOD = re.compile(rb'"method"\s*:\s*"([A-Za-z0-9_/.\-]{1,64})"')
_TOOL = re.compile(rb'"name"\s*:\s*"([A-Za-z0-9_\-]{1,64})"')
_SESSION_HEADER = b"mcp-session-id"


def error_body(code: int, message: str) -> bytes:
    """A JSON-RPC error with no id: the body of an HTTP error answer that MCP clients can parse."""
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()


async def json_rpc_answer(
    send: Send, status: int, code: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """An HTTP error answer whose body is a JSON-RPC error (what MCP clients can parse)."""
    body = error_body(code, message)
    start_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimits:
    """Reads and caps every POST body before the MCP transports see it (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        small: int,
        large: int,
        large_timeout: float,
        small_timeout: float = BODY_TIMEOUT_SECONDS,
    ) -> None:
        self.app = app
        self.small = small
        self.large = large
        self.small_timeout = small_timeout
        self.large_timeout = large_timeout
        self._large_at_once = anyio.Semaphore(LARGE_BODIES_AT_ONCE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.large:
            await self._refuse(send, self.large)
            return
        body = bytearray()
        with anyio.move_on_after(self.small_timeout) as small_read:
            more = await _read_into(body, receive, self.small)
        if small_read.cancelled_caught:
            await self._too_slow(send)
            return
        if len(body) <= self.small:
            await self._forward(scope, receive, send, body)
            return
        if not _is_large_tool_call(bytes(body[:_PEEK])):
            await self._refuse(send, self.small)
            return
        # a call that may be large: a few at a time, each read within the upload time
        with anyio.move_on_after(self.large_timeout) as large_read:
            async with self._large_at_once:
                if more:
                    await _read_into(body, receive, self.large)
                if len(body) > self.large:
                    await self._refuse(send, self.large)
                    return
                large_read.deadline = float("inf")  # the body is in: the call itself is not timed here
                await self._forward(scope, receive, send, body)
                return
        await self._too_slow(send)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, body: bytearray) -> None:
        method = _METHOD.search(bytes(body[:_PEEK]))
        scope = dict(scope, **{METHOD: method.group(1).decode() if method else None})
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, limit: int) -> None:
        what = env_name("max_message_kb") if limit == self.small else env_name("max_upload_mb")
        await json_rpc_answer(
            send, 413, -32600, f"Request body too large: at most {limit // 1024} KB ({what})."
        )

    async def _too_slow(self, send: Send) -> None:
        await json_rpc_answer(send, 408, -32600, "Request body not received in time.")


async def _read_into(body: bytearray, receive: Receive, limit: int) -> bool:
    """Append the request's body to ``body`` until it is complete or longer than ``limit``.

    Returns whether more of it is still to come.
    """
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return False  # the client went away
        body += message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not more or len(body) > limit:
            return more


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length" and value.isdigit():
            return int(value)
    return None


def _is_large_tool_call(prefix: bytes) -> bool:
    method = _METHOD.search(prefix)
    tool = _TOOL.search(prefix)
    return bool(
        method and method.group(1) == b"tools/call" and tool and tool.group(1).decode() in LARGE_BODY_TOOLS
    )


# --- sessions -----------------------------------------------------------------------------------


@dataclass
class _Session:
    owner: str | None
    in_flight: int = 0
    last_seen: float = 0.0


class SessionLimits:
    """Caps the sessions and SSE streams open per key and in all (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_sessions: int,
        per_key: int,
        idle_seconds: float,
        stateless: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.max_sessions = max_sessions
        self.per_key = per_key
        self.idle_seconds = idle_seconds
        self.stateless = stateless
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._streams = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        owner = scope.get(OWNER)
        if path == "/sse" and method == "GET":
            await self._sse_stream(scope, receive, send, owner)
            return
        if path.startswith("/mcp") and not self.stateless:
            sid = _header(scope, _SESSION_HEADER)
            if sid is not None:
                await self._in_session(scope, receive, send, sid)
                return
            if method == "POST" and scope.get(METHOD) == "initialize":
                await self._opening(scope, receive, send, owner)
                return
        await self.app(scope, receive, send)

    def _open_count(self, owner: str | None) -> tuple[int, int]:
        now = self._clock()
        for sid, session in list(self._sessions.items()):
            if session.in_flight == 0 and now - session.last_seen > self.idle_seconds:
                del self._sessions[sid]
        mine = sum(1 for s in self._sessions.values() if owner is not None and s.owner == owner)
        return len(self._sessions), mine

    async def _admit(self, send: Send, owner: str | None) -> bool:
        total, mine = self._open_count(owner)
        if total >= self.max_sessions:
            await json_rpc_answer(
                send,
                503,
                -32603,
                f"Too many open sessions on this server ({env_name('max_sessions')}); try again later.",
                [(b"retry-after", b"30")],
            )
            return False
        if owner is not None and mine >= self.per_key:
            await json_rpc_answer(
                send,
                429,
                -32600,
                f"This key already has {mine} open sessions or streams ({env_name('max_sessions_per_key')}): "
                "close one (DELETE /mcp with its Mcp-Session-Id) or let an idle one expire.",
                [(b"retry-after", b"30")],
            )
            return False
        return True

    async def _opening(self, scope: Scope, receive: Receive, send: Send, owner: str | None) -> None:
        if not await self._admit(send, owner):
            return
        # placeholder: counts while the opening request runs, so a burst cannot overshoot the cap
        token = f"opening:{id(scope)}"
        self._sessions[token] = _Session(owner, in_flight=1, last_seen=self._clock())

        async def learn(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._sessions.pop(token, None)  # the answer (and the session id, if any) is known now
                sid = _response_header(message, _SESSION_HEADER)
                if sid is not None and 200 <= message["status"] < 300:
                    self._sessions[sid] = _Session(owner, last_seen=self._clock())
            await send(message)

        try:
            await self.app(scope, receive, learn)
        finally:
            self._sessions.pop(token, None)

    async def _in_session(self, scope: Scope, receive: Receive, send: Send, sid: str) -> None:
        session = self._sessions.get(sid)
        if session is not None:
            session.in_flight += 1
            session.last_seen = self._clock()
        closing = scope["method"] == "DELETE"

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 404 or (closing and 200 <= status < 300):
                    self._sessions.pop(sid, None)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if session is not None:
                session.in_flight -= 1
                session.last_seen = self._clock()

    async def _sse_stream(self, scope: Scope, receive: Receive, send: Send, owner: str | None) -> None:
        if not await self._admit(send, owner):
            return
        token = f"sse:{id(scope)}"
        self._sessions[token] = _Session(owner, in_flight=1, last_seen=self._clock())
        try:
            await self.app(scope, receive, send)
        finally:
            self._sessions.pop(token, None)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _response_header(message: Message, name: bytes) -> str | None:
    headers: list[tuple[bytes, bytes]] = message.get("headers", [])
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
