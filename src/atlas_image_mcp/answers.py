"""Which answers need an event stream over streamable HTTP; the others get one JSON body.

An event stream costs the server about as much CPU as the rest of a short call (a streaming
response, a writer task and memory streams per request), so a request gets it only when something
may be streamed for it. Everything else is answered with one ``application/json`` body
(:func:`atlas_image_mcp.compat.answer_in_json`). A handshake-era request (2025 revisions) streams
when:

* it carries a progress token (progress notifications are sent while it runs);
* its client may be asked a question during the call: the client declared form elicitation in its
  ``initialize``, and the call is one that may ask (a picture tool while calls above a cost are
  confirmed with the person, :func:`may_ask`);
* its client asked for log messages (``logging/setLevel``); a session that never did gets none for
  the requests answered in JSON.

A 2026-07-28 request needs none of this: the SDK holds its answer back and sends JSON unless a
notification is ready first, and a question rides the answer itself (``input_required``). A legacy
SSE session's answers travel on its own stream.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import compat
from .admission import SHAPE, MessageShape, handshake_era

__all__ = ["AnswerForms"]

_SESSION_HEADER = b"mcp-session-id"


@dataclass
class _Client:
    """What a session's client said that decides whether its answers stream."""

    elicits: bool
    logs: bool = False


class AnswerForms:
    """ASGI: answers ``POST /mcp`` in JSON unless something may be streamed for it (module docstring).

    ``may_ask(tool)`` says whether a call of ``tool`` may ask the person a question. What each
    session's client declared is kept for at most ``max_sessions`` sessions, the least recently used
    first out; a session forgotten here (or opened by another process) streams every answer, so it
    can still be asked, at the cost of the event streams it may not need.
    """

    def __init__(self, app: ASGIApp, *, may_ask: Callable[[str | None], bool], max_sessions: int) -> None:
        self.app = app
        self.may_ask = may_ask
        self.max_sessions = max(1, max_sessions)
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shape: MessageShape | None = scope.get(SHAPE)
        if (
            shape is None
            or scope["type"] != "http"
            or not scope["path"].startswith("/mcp")
            or not handshake_era(scope)
        ):
            await self.app(scope, receive, send)
            return
        session = _session_id(scope)
        if shape.method == "initialize":
            send = self._noting(send, _Client(elicits=shape.elicits))
        elif shape.method == "logging/setLevel" and session is not None and session in self._clients:
            self._clients[session].logs = True
        if self._streams(shape, session):
            await self.app(scope, receive, send)
            return
        with compat.answer_in_json():
            await self.app(scope, receive, send)

    def _streams(self, shape: MessageShape, session: str | None) -> bool:
        if shape.progress:
            return True
        if session is None:  # an initialize, or a stateless server's request: nothing to ask on
            return False
        client = self._clients.get(session)
        if client is None:  # a session this process does not know (or forgot): it streams, as before
            return True
        self._clients.move_to_end(session)
        return client.logs or (client.elicits and self.may_ask(shape.tool))

    def _noting(self, send: Send, client: _Client) -> Send:
        """``send``, noting what the client declared under the session id its answer carries."""

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == _SESSION_HEADER:
                        self._remember(value.decode("latin-1"), client)
            await send(message)

        return noting

    def _remember(self, session: str, client: _Client) -> None:
        self._clients[session] = client
        self._clients.move_to_end(session)
        while len(self._clients) > self.max_sessions:
            self._clients.popitem(last=False)


def _session_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == _SESSION_HEADER:
            return str(value.decode("latin-1"))
    return None
