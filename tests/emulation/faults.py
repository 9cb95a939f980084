"""Injected faults: what they are, which requests they hit, and how they are played on the wire.

A :class:`Fault` is armed with ``Emulator.inject(fault, method=..., path=..., times=...)``; the
next matching requests get it instead of (``delay``: before) the normal answer. Faults are played
at the raw ASGI level so that ``reset`` can break a response half-way.

``Fault.reset()`` under a real server (uvicorn) sends the response head with a ``Content-Length``
larger than the body that follows, sends part of the body and returns without finishing: uvicorn
logs "ASGI callable returned without completing response." and closes the connection, so the
client sees ``httpx.RemoteProtocolError``. An in-process transport (``httpx.ASGITransport``,
Starlette's ``TestClient``) cannot drop a connection, so there the app raises
:class:`EmulatedConnectionReset`, a subclass of ``httpx.RemoteProtocolError``: the client sees the
same exception class either way.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

import anyio
import httpx

__all__ = ["EmulatedConnectionReset", "Fault", "FaultQueue", "FAULT_KINDS", "play_fault"]

logger = logging.getLogger(__name__)

FaultKind = Literal["status", "html", "rate_limited", "delay", "invalid_json", "envelope_error", "reset"]
FAULT_KINDS: tuple[str, ...] = (
    "status",
    "html",
    "rate_limited",
    "delay",
    "invalid_json",
    "envelope_error",
    "reset",
)

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_RESET_PARTIAL_BODY = b'{"code":200,"message":"","data":{"id":"'
_RESET_MISSING_BYTES = 1024
# Modules whose ``send`` belongs to a real server that closes the socket when a response is left
# unfinished. Any other caller is treated as in-process and gets an exception instead.
_REAL_SERVER_MODULES = ("uvicorn.", "hypercorn.")

_CLOUDFLARE_PAGE = """<!DOCTYPE html>
<html lang="en-US">
<head>
<title>{code} {phrase} | api.atlascloud.ai | Cloudflare</title>
<meta charset="UTF-8" />
<meta name="robots" content="noindex, nofollow" />
</head>
<body>
<div id="cf-wrapper">
<div id="cf-error-details" class="cf-error-details-wrapper">
<h1><span class="cf-error-type">Error</span> <span class="cf-error-code">{code}</span></h1>
<h2 class="cf-subheadline">{phrase}</h2>
<p>The web server reported a bad gateway error.</p>
<p>Cloudflare Ray ID: <strong>8a1b2c3d4e5f6071</strong> &bull; Performance &amp; security by Cloudflare</p>
</div>
</div>
</body>
</html>
"""


class EmulatedConnectionReset(httpx.RemoteProtocolError):
    """Raised inside the app by ``Fault.reset()`` when it runs in-process (no socket to drop)."""


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


@dataclass(frozen=True)
class Fault:
    """One injectable misbehaviour. Build it with the class methods, not the constructor."""

    kind: FaultKind
    status_code: int = 500
    body: Mapping[str, Any] | str | None = field(default=None, hash=False)
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0

    @classmethod
    def status(
        cls, code: int, body: Mapping[str, Any] | str | None = None, headers: Mapping[str, str] | None = None
    ) -> Fault:
        """Answer with ``code``; default body: ``{"code": code, "msg": <reason phrase>}``."""
        return cls("status", status_code=code, body=body, headers=tuple((headers or {}).items()))

    @classmethod
    def html(cls, code: int = 502) -> Fault:
        """A Cloudflare-style HTML error page."""
        return cls("html", status_code=code)

    @classmethod
    def rate_limited(cls, retry_after: float | None = None) -> Fault:
        """HTTP 429 with an Atlas envelope, plus ``Retry-After`` when given."""
        headers = () if retry_after is None else (("retry-after", f"{retry_after:g}"),)
        return cls("rate_limited", status_code=429, headers=headers)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait ``seconds`` (real time), then answer normally."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return cls("delay", status_code=0, seconds=seconds)

    @classmethod
    def invalid_json(cls) -> Fault:
        """HTTP 200, ``application/json``, body cut short: ``{"code":200,"data":{``."""
        return cls("invalid_json", status_code=200)

    @classmethod
    def envelope_error(cls, code: int = 500, msg: str = "internal error") -> Fault:
        """HTTP 200 carrying an error envelope ``{"code": code, "msg": msg, "data": null}``."""
        return cls("envelope_error", status_code=200, body={"code": code, "msg": msg, "data": None})

    @classmethod
    def reset(cls) -> Fault:
        """Drop the connection mid-response (see the module docstring)."""
        return cls("reset", status_code=200)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary (for the admin endpoint)."""
        return {
            "fault": self.kind,
            "status_code": self.status_code,
            "headers": dict(self.headers),
            "seconds": self.seconds,
        }

    def response(self) -> tuple[int, Headers, bytes]:
        """Status, headers and body of the answer this fault sends (not for delay/reset)."""
        if self.kind == "html":
            page = _CLOUDFLARE_PAGE.format(code=self.status_code, phrase=_phrase(self.status_code))
            return (
                self.status_code,
                _headers("text/html; charset=UTF-8", self.headers, server=True),
                page.encode(),
            )
        if self.kind == "invalid_json":
            return 200, _headers("application/json", self.headers), b'{"code":200,"data":{'
        if self.kind == "rate_limited":
            body = {"code": 429, "msg": "Too many requests, please slow down", "data": None}
            return 429, _headers("application/json", self.headers), _json(body)
        content_type, payload = self._status_body()
        return self.status_code, _headers(content_type, self.headers), payload

    def _status_body(self) -> tuple[str, bytes]:
        body = self.body
        if body is None:
            body = {"code": self.status_code, "msg": _phrase(self.status_code)}
        if isinstance(body, str):
            kind = "text/html" if body.lstrip().startswith("<") else "text/plain"
            return f"{kind}; charset=utf-8", body.encode()
        return "application/json", _json(dict(body))


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _headers(content_type: str, extra: tuple[tuple[str, str], ...], *, server: bool = False) -> Headers:
    overrides = {name.lower() for name, _ in extra}
    headers = [] if "content-type" in overrides else [(b"content-type", content_type.encode())]
    if server:
        headers += [(b"server", b"cloudflare"), (b"cf-ray", b"8a1b2c3d4e5f6071-FRA")]
    headers += [(name.lower().encode(), value.encode()) for name, value in extra]
    return headers


@dataclass
class _Armed:
    fault: Fault
    method: str
    path: str
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        return fnmatch.fnmatchcase(method.upper(), self.method.upper()) and fnmatch.fnmatchcase(
            path, self.path
        )


class FaultQueue:
    """Armed faults in injection order; the first one matching a request is used up first."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault, *, method: str = "*", path: str = "*", times: int = 1) -> None:
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._armed.append(_Armed(fault, method, path, times))

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for armed in self._armed:
                if armed.matches(method, path):
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._armed.remove(armed)
                    return armed.fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {**a.fault.describe(), "method": a.method, "path": a.path, "times": a.remaining}
                for a in self._armed
            ]

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()


async def play_fault(
    fault: Fault,
    send: Send,
    proceed: Callable[[], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Answer a request with ``fault``; ``proceed`` runs the normal app (used by ``delay``)."""
    if fault.kind == "delay":
        await sleep(fault.seconds)
        await proceed()
        return
    if fault.kind == "reset":
        await _reset(send)
        return
    status, headers, body = fault.response()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _reset(send: Send) -> None:
    declared = len(_RESET_PARTIAL_BODY) + _RESET_MISSING_BYTES
    headers = [(b"content-type", b"application/json"), (b"content-length", str(declared).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _RESET_PARTIAL_BODY, "more_body": True})
    if not _is_real_server(send):
        raise EmulatedConnectionReset(
            f"peer closed connection without sending complete message body "
            f"(received {len(_RESET_PARTIAL_BODY)} bytes, expected {declared}) [emulated reset]"
        )
    logger.info("Fault.reset: leaving the response unfinished so the server drops the connection")


def _is_real_server(send: Send) -> bool:
    module = getattr(send, "__module__", None) or ""
    return module.startswith(_REAL_SERVER_MODULES)
