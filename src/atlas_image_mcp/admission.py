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
  applies to its sessions). The total protects this process's memory and stays per process; the
  count per key goes through an :class:`OwnerSessions`: this process's own count
  (:class:`CountedHere`), or one shared by every replica (the store's, see
  :class:`atlas_image_mcp.shared.SessionsInStore`), told of each session admitted, still held
  (:meth:`OwnerSessions.renew`, at most every third of the idle time) and gone.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .constants import BODY_TIMEOUT_SECONDS, LARGE_BODIES_AT_ONCE, LARGE_BODY_TOOLS
from .settings import env_name

__all__ = ["BodyLimits", "CountedHere", "OwnerSessions", "SessionLimits", "error_body", "json_rpc_answer"]

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


class OwnerSessions(Protocol):
    """How many sessions each owner (a key) holds open: here, or across replicas."""

    async def admit(self, owner: str, token: str, *, limit: int, here: int) -> int | None:
        """Admit session ``token`` of ``owner`` (None), or refuse it: the sessions it holds.
        ``here``: those it holds in this process."""
        ...

    async def renew(self, tokens: Sequence[str]) -> None:
        """These admitted sessions are still open here."""
        ...

    async def leave(self, tokens: Sequence[str]) -> None:
        """These admitted sessions are gone."""
        ...


class CountedHere:
    """Each owner's sessions counted in this process alone."""

    async def admit(self, owner: str, token: str, *, limit: int, here: int) -> int | None:
        return None if here < limit else here

    async def renew(self, tokens: Sequence[str]) -> None:
        return None

    async def leave(self, tokens: Sequence[str]) -> None:
        return None


@dataclass
class _Session:
    owner: str | None
    in_flight: int = 0
    last_seen: float = 0.0
    #: Its name for the owner count (:class:`OwnerSessions`); "" when it has no owner.
    token: str = ""


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
        owners: OwnerSessions | None = None,
    ) -> None:
        self.app = app
        self.max_sessions = max_sessions
        self.per_key = per_key
        self.idle_seconds = idle_seconds
        self.stateless = stateless
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._streams = 0
        self.owners: OwnerSessions = owners or CountedHere()
        self._renewed = clock()

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

    async def _open_count(self, owner: str | None) -> tuple[int, int]:
        now = self._clock()
        idle = [
            sid
            for sid, session in self._sessions.items()
            if session.in_flight == 0 and now - session.last_seen > self.idle_seconds
        ]
        await self._forget(idle)
        await self._renew()
        mine = sum(1 for s in self._sessions.values() if owner is not None and s.owner == owner)
        return len(self._sessions), mine

    async def _renew(self) -> None:
        """Tell the owner count which sessions are still open here (at most every third of the idle time)."""
        now = self._clock()
        if now - self._renewed > self.idle_seconds / 3:
            self._renewed = now
            await self.owners.renew([s.token for s in self._sessions.values() if s.token])

    async def _forget(self, sids: Sequence[str]) -> None:
        gone = [session.token for sid in sids if (session := self._sessions.pop(sid, None)) and session.token]
        if gone:
            await self.owners.leave(gone)

    async def _admit(self, send: Send, owner: str | None, token: str) -> bool:
        total, mine = await self._open_count(owner)
        if total >= self.max_sessions:
            await json_rpc_answer(
                send,
                503,
                -32603,
                f"Too many open sessions on this server ({env_name('max_sessions')}); try again later.",
                [(b"retry-after", b"30")],
            )
            return False
        held = (
            await self.owners.admit(owner, token, limit=self.per_key, here=mine)
            if owner is not None
            else None
        )
        if held is not None:
            await json_rpc_answer(
                send,
                429,
                -32600,
                f"This key already has {held} open sessions or streams ({env_name('max_sessions_per_key')}): "
                "close one (DELETE /mcp with its Mcp-Session-Id) or let an idle one expire.",
                [(b"retry-after", b"30")],
            )
            return False
        return True

    async def _opening(self, scope: Scope, receive: Receive, send: Send, owner: str | None) -> None:
        token = uuid.uuid4().hex if owner is not None else ""
        if not await self._admit(send, owner, token):
            return
        # placeholder: counts while the opening request runs, so a burst cannot overshoot the cap
        placeholder = f"opening:{id(scope)}"
        self._sessions[placeholder] = _Session(owner, in_flight=1, last_seen=self._clock())
        opened = False

        async def learn(message: Message) -> None:
            nonlocal opened
            if message["type"] == "http.response.start":
                self._sessions.pop(placeholder, None)  # the answer (and the session id, if any) is known now
                sid = _response_header(message, _SESSION_HEADER)
                if sid is not None and 200 <= message["status"] < 300:
                    self._sessions[sid] = _Session(owner, last_seen=self._clock(), token=token)
                    opened = True
            await send(message)

        try:
            await self.app(scope, receive, learn)
        finally:
            self._sessions.pop(placeholder, None)
            if token and not opened:
                await self.owners.leave([token])

    async def _in_session(self, scope: Scope, receive: Receive, send: Send, sid: str) -> None:
        session = self._sessions.get(sid)
        if session is not None:
            session.in_flight += 1
            session.last_seen = self._clock()
        closing = scope["method"] == "DELETE"
        ended = False
        await self._renew()

        async def watch(message: Message) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                status = message["status"]
                ended = status == 404 or (closing and 200 <= status < 300)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if session is not None:
                session.in_flight -= 1
                session.last_seen = self._clock()
            if ended:
                await self._forget([sid])

    async def _sse_stream(self, scope: Scope, receive: Receive, send: Send, owner: str | None) -> None:
        token = uuid.uuid4().hex if owner is not None else ""
        if not await self._admit(send, owner, token):
            return
        stream = f"sse:{id(scope)}"
        self._sessions[stream] = _Session(owner, in_flight=1, last_seen=self._clock(), token=token)
        try:
            await self.app(scope, receive, send)
        finally:
            await self._forget([stream])


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
