"""The request log: every API request as it arrived, recorded before any fault is applied.

:func:`gate` is the raw-ASGI front door of the app (the emulator's middleware): it reads the
body, records the request, takes the first matching armed fault and either plays it or hands the
request (with its body replayed) to the emulator's routes. ``/_emulator/*`` admin calls bypass
both log and faults and go to the admin app.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .faults import play_fault

if TYPE_CHECKING:
    from .harness import Emulator

__all__ = ["ADMIN_PREFIX", "RecordedRequest", "count_matching", "gate", "matching"]

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/_emulator"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it. Header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any | None
    at: float
    body: bytes = field(default=b"", repr=False)

    @classmethod
    def from_scope(cls, scope: Scope, body: bytes, at: float) -> RecordedRequest:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        return cls(
            method=scope["method"].upper(),
            path=scope["path"],
            query=query,
            headers=headers,
            json=_parse_json(headers.get("content-type"), body),
            at=at,
            body=body,
        )

    def matches(self, method: str = "*", path: str = "*") -> bool:
        return fnmatch.fnmatchcase(self.method, method.upper()) and fnmatch.fnmatchcase(self.path, path)

    def to_public_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy without credentials or the raw body (for the admin endpoint)."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": {k: v for k, v in self.headers.items() if k not in _SECRET_HEADERS},
            "json": self.json,
            "at": self.at,
            "body_size": len(self.body),
        }


def _parse_json(content_type: str | None, body: bytes) -> Any | None:
    if not body or (content_type is not None and "json" not in content_type.lower()):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def matching(
    requests: Iterable[RecordedRequest], method: str = "*", path: str = "*"
) -> list[RecordedRequest]:
    return [r for r in requests if r.matches(method, path)]


def count_matching(requests: Iterable[RecordedRequest], method: str = "*", path: str = "*") -> int:
    return sum(1 for r in requests if r.matches(method, path))


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def gate(
    emulator: Emulator, scope: Scope, receive: Receive, send: Send, app: ASGIApp, admin: ASGIApp
) -> None:
    """Record the request, then play an armed fault or pass it on to ``app`` (admin calls to ``admin``)."""
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    if scope["path"].startswith(ADMIN_PREFIX):
        await admin(scope, receive, send)
        return
    body = await _read_body(receive)
    request = RecordedRequest.from_scope(scope, body, emulator.clock())
    emulator.record(request)
    replayed = _replay(body, receive)
    fault = emulator.take_fault(request.method, request.path)
    if fault is None:
        await app(scope, replayed, send)
        return
    logger.info("fault %s on %s %s", fault.kind, request.method, request.path)
    await play_fault(fault, send, lambda: app(scope, replayed, send), emulator.sleep)
