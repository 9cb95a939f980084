"""How one Atlas API request goes out and its whole answer comes back: the engines under AtlasClient.

:class:`AtlasClient` decides what to send, retries, deadlines and what an answer means; an engine
only sends one :class:`Outgoing` and reads its :class:`Answer`, within a byte cap the client gives.
Two engines:

* :class:`HttpxEngine`: over an ``httpx.AsyncClient`` and whatever transport it has (httpx's own
  over stdio; ``httpx.MockTransport`` and ``httpx.ASGITransport`` around the emulator in tests);
* :class:`~atlas_image_mcp.aiohttp_transport.AiohttpTransport`, used directly by a hosted server:
  straight over aiohttp's pool and C parser, with no httpx request or response objects in between
  (about a quarter of the client's CPU per request: docs/benchmark.md).

What matters for money is the same in both: an error before any byte of the request could leave
is a :class:`SendFailed` with ``sent=False`` (nothing reached Atlas); anything later has
``sent=True`` (it may have been received), and no request is ever sent twice or redirected here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .redact import redact

__all__ = ["Answer", "Engine", "HttpxEngine", "Outgoing", "Reader", "SendFailed", "json_body"]

#: Reads a whole answer within the client's cap: (the declared Content-Length, the body's chunks).
Reader = Callable[[str | None, AsyncIterator[bytes]], Awaitable[bytes]]


@dataclass(frozen=True)
class Outgoing:
    """One attempt of one API request."""

    method: str
    url: str
    headers: dict[str, str]
    json: Any = None
    #: The multipart files, made anew for each attempt: name -> (filename, stream, content type).
    files: Callable[[], dict[str, Any]] | None = None
    #: Seconds to open a connection, and for the whole attempt.
    connect: float = 10.0
    seconds: float = 30.0


@dataclass(frozen=True)
class Answer:
    """An answer read whole: its status, its headers (names in lower case), its body."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class SendFailed(Exception):
    """The request got no whole answer.

    ``kind`` names what failed in httpx's words (``ConnectError``, ``ReadTimeout``...), whichever
    engine sent it, so messages read the same; ``sent``: the request may have reached Atlas;
    ``timeout``: it ran out of time.
    """

    def __init__(self, kind: str, detail: str, *, sent: bool, timeout: bool) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.sent = sent
        self.timeout = timeout


class Engine(Protocol):
    async def exchange(self, outgoing: Outgoing, read: Reader) -> Answer:
        """Send ``outgoing`` once and read its whole answer with ``read``; raise :class:`SendFailed`."""
        ...  # pragma: no cover


def json_body(value: Any) -> bytes:
    """A JSON request body as httpx writes one (compact, UTF-8, no NaN)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class HttpxEngine:
    """Sends through an ``httpx.AsyncClient`` (any httpx transport)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def exchange(self, outgoing: Outgoing, read: Reader) -> Answer:
        try:
            request = self._http.build_request(
                outgoing.method,
                outgoing.url,
                headers=outgoing.headers,
                json=outgoing.json,
                files=outgoing.files() if outgoing.files else None,
                timeout=httpx.Timeout(outgoing.seconds, connect=outgoing.connect),
            )
            response = await self._http.send(request, stream=True)
            try:
                content = await read(response.headers.get("content-length"), response.aiter_bytes())
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise SendFailed(
                type(exc).__name__,
                redact(exc)[:200],
                sent=not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)),
                timeout=True,
            ) from exc
        except httpx.TransportError as exc:
            sent = not isinstance(exc, httpx.ConnectError)
            raise SendFailed(type(exc).__name__, redact(exc)[:200], sent=sent, timeout=False) from exc
        return Answer(response.status_code, response.headers, content)
