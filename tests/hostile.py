"""A hostile stand-in for Atlas: a small raw ASGI app that answers whatever a test tells it to.

It accepts the generation POST and answers every poll with one prediction whose ``outputs`` (and
any other field) the test sets, and it serves any path the test routes, in any way an attacker
might: a redirect, a body dripped a byte at a time, an endless stream, a picture bomb, a
truncated JPEG. Every request it gets is recorded, so a test can state causal facts ("the
internal service was never contacted", "exactly one POST was sent").

    hostile = Hostile()
    hostile.prediction(outputs=[f"{base}/out/1.png"])
    hostile.route("/out/1.png", Answer(200, png(), "image/png"))
    with serve_in_thread(hostile.app) as base: ...

Used by ``tests/test_trust.py`` and ``bench/hostile.py``. Loopback only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel

__all__ = ["PID", "Answer", "Drip", "Endless", "Hostile", "Redirect", "Seen", "Stage"]

PID = "0123456789abcdef0123456789abcdef"
GENERATE = "/api/v1/model/generateImage"
POLL_PREFIX = "/api/v1/model/prediction/"

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Answer:
    """A plain answer."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()

    async def play(self, send: Send) -> None:
        headers = [
            (b"content-type", self.content_type.encode()),
            (b"content-length", str(len(self.body)).encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_answer(data: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, json.dumps(data).encode(), "application/json", headers)


@dataclass(frozen=True)
class Redirect:
    """``status`` to ``location``."""

    location: str
    status: int = 302

    async def play(self, send: Send) -> None:
        await Answer(self.status, b"", "text/plain", (("location", self.location),)).play(send)


@dataclass(frozen=True)
class Drip:
    """The head at once, then ``body`` one byte every ``every`` seconds (a slow-loris answer)."""

    body: bytes
    every: float = 1.0
    content_type: str = "application/json"

    async def play(self, send: Send) -> None:
        headers = [
            (b"content-type", self.content_type.encode()),
            (b"content-length", str(len(self.body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(len(self.body)):
            await send({"type": "http.response.body", "body": self.body[i : i + 1], "more_body": True})
            await anyio.sleep(self.every)
        await send({"type": "http.response.body", "body": b""})


@dataclass
class Endless:
    """``chunk`` after ``chunk`` with no length, up to ``limit`` bytes; counts what it sent."""

    chunk: bytes = b"\0" * 65536
    limit: int = 1 << 40
    content_type: str = "image/png"
    sent: int = 0

    async def play(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", self.content_type.encode())],
            }
        )
        while self.sent < self.limit:
            self.sent += len(self.chunk)
            await send({"type": "http.response.body", "body": self.chunk, "more_body": True})
            # a server's send returns at once once the peer is gone: without this the loop would
            # spin a core, never letting the server see the disconnect or shut down
            await anyio.lowlevel.checkpoint()
        await send({"type": "http.response.body", "body": b""})


@dataclass(frozen=True)
class Seen:
    """One request the hostile server got."""

    method: str
    path: str
    query: str
    headers: dict[str, str]


@dataclass
class Hostile:
    """The hostile server's script and its request log (see the module docstring)."""

    data: dict[str, Any] = field(default_factory=lambda: {"id": PID, "status": "completed", "outputs": []})
    submit: Any = None  #: overrides the answer to the generation POST
    poll: Any = None  #: overrides the answer to every poll
    routes: dict[str, Any] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prediction(self, **fields: Any) -> None:
        """Set fields of the prediction every answer carries (``outputs``, ``status``, ``model``...)."""
        self.data.update(fields)

    def route(self, path: str, answer: Any) -> None:
        self.routes[path] = answer

    def count(self, method: str, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.method == method and r.path.startswith(prefix))

    @property
    def app(self) -> Hostile:
        """The ASGI app (this object: an instance with an async ``__call__`` is read as ASGI 3)."""
        return self

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        seen = Seen(scope["method"], scope["path"], scope.get("query_string", b"").decode(), headers)
        with self._lock:
            self.requests.append(seen)
        while (await receive()).get("more_body", False):
            pass
        async with anyio.create_task_group() as answering:

            async def stop_when_the_client_is_gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                answering.cancel_scope.cancel()

            answering.start_soon(stop_when_the_client_is_gone)
            await self._answer(seen).play(send)
            answering.cancel_scope.cancel()

    def _answer(self, seen: Seen) -> Any:
        envelope = {"code": 200, "message": "", "data": self.data}
        if seen.method == "POST" and seen.path == GENERATE:
            return self.submit or json_answer(envelope)
        if seen.method == "GET" and seen.path.startswith(POLL_PREFIX):
            return self.poll or json_answer(envelope)
        return self.routes.get(seen.path) or Answer(404, b"not here", "text/plain")


class Stage:
    """One server for many tests: every request goes to the :class:`Hostile` now on stage.

    Stopping a uvicorn server takes about 0.2 s; a test module can serve one stage and put a fresh
    ``Hostile`` (its script and its request log) on it for each test instead.
    """

    def __init__(self) -> None:
        self.actor = Hostile()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Send) -> None:
        await self.actor(scope, receive, send)
