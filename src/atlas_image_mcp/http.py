"""HTTP hosting: streamable HTTP at ``/mcp`` and legacy SSE at ``/sse`` (+ ``/messages/``), one app.

Security, from the outside in:

* :class:`AccessGuard` (pure ASGI, so SSE streams pass through untouched) guards every path but
  ``/healthz``: with ``ATLAS_MCP_AUTH_TOKEN`` each request must carry ``Authorization: Bearer
  <token>`` (compared in constant time), else 401 with ``WWW-Authenticate`` and a JSON-RPC error
  body. In per-user-key mode (``ATLAS_MCP_USER_KEYS=1``) it registers the ``X-Atlas-Api-Key`` of
  each request for redaction and binds MCP sessions to it (a session opened with one key answers
  "session not found" to any other). The tools read the key from each message's own headers
  (``ctx.headers``), so one user's key never serves another's request.
* :class:`JsonRpcErrors` turns the transports' plain-text 4xx answers (bad session, body too
  large, bad Host) into JSON-RPC error bodies, so clients always get something they can parse.
* The SDK's transport security checks ``Host`` and ``Origin`` (DNS rebinding): loopback names by
  default, plus ``ATLAS_MCP_ALLOWED_HOSTS`` / ``ATLAS_MCP_ALLOWED_ORIGINS`` for a public name.
* Request bodies are capped (enough for the largest base64 upload, no more).
* ``/healthz`` answers 200 with nothing secret, without authentication, for load balancers.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import uvicorn
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, compat
from .constants import USER_KEY_HEADER
from .redact import register_secret
from .runtime import Runtime
from .server import make_server
from .settings import Settings

__all__ = ["AccessGuard", "JsonRpcErrors", "check_exposure", "create_http_app", "is_loopback", "serve_http"]

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
_PARSE_ERROR, _INVALID_REQUEST, _INTERNAL_ERROR, _UNAUTHORIZED = -32700, -32600, -32603, -32001


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _with_any_port(names: tuple[str, ...]) -> list[str]:
    """``mcp.example.com`` also matches ``mcp.example.com:8000`` (a name given with a port stays exact)."""
    out: list[str] = []
    for name in names:
        out.append(name)
        if not name.rsplit("]", 1)[-1].count(":"):
            out.append(f"{name}:*")
    return out


def transport_security(settings: Settings, host: str) -> TransportSecuritySettings:
    """Host/Origin allow-lists: loopback names always, plus the configured public names."""
    hosts = _LOOPBACK_HOSTS + _with_any_port(settings.allowed_hosts)
    origins = _LOOPBACK_ORIGINS + list(settings.allowed_origins)
    if not is_loopback(host) and not settings.allowed_hosts:
        logger.warning(
            "serving on %s without ATLAS_MCP_ALLOWED_HOSTS: Host/Origin checks are off; set it to the public "
            "name(s) of this server to turn DNS-rebinding protection on",
            host,
        )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def _key_owner(key: str) -> AuthenticatedUser:
    """The principal a per-user key stands for (a digest, never the key), so the SDK binds sessions to it."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    return AuthenticatedUser(
        AccessToken(token=f"sha256:{digest}", client_id=f"atlas-key-{digest[:32]}", scopes=[])
    )


class AccessGuard:
    """Bearer-token gate for everything but ``/healthz``, and intake of per-user Atlas keys."""

    def __init__(self, app: ASGIApp, *, token: str | None, user_keys: bool) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self.user_keys = user_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self._token is not None and not self._authorized(headers.get("authorization", "")):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await _unauthorized(send)
            return
        if self.user_keys:
            key = headers.get(USER_KEY_HEADER, "").strip()
            if key:
                register_secret(key)  # redacted from every log line and message from now on
                scope = dict(scope, user=_key_owner(key))
        await self.app(scope, receive, send)

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.strip().partition(" ")
        given = value.strip().encode("latin-1") if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self._token or b"")


def _error_body(code: int, message: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()


async def _unauthorized(send: Send) -> None:
    body = _error_body(_UNAUTHORIZED, "Unauthorized: send Authorization: Bearer <ATLAS_MCP_AUTH_TOKEN>")
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="atlas-image-mcp"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class JsonRpcErrors:
    """Rewrites plain-text error answers (status >= 400) into JSON-RPC error bodies, same status.

    Also contains an error the transport raises *after* its answer went out (the SDK's SSE
    endpoint does so for bad JSON sent to a session whose stream has just closed): the client
    already has its answer, so the connection is not torn down and the error is only logged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == HEALTH_PATH or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []
        answered = False

        async def rewrite(message: Message) -> None:
            nonlocal held, answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            if message["type"] == "http.response.start":
                ctype = next((v for k, v in message.get("headers", []) if k.lower() == b"content-type"), b"")
                if message["status"] >= 400 and not ctype.lower().startswith(b"application/json"):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                status = held["status"]
                text = b"".join(chunks).decode("utf-8", "replace").strip() or f"HTTP {status}"
                code = (
                    _PARSE_ERROR
                    if "parse" in text.lower()
                    else _INTERNAL_ERROR
                    if status >= 500
                    else _INVALID_REQUEST
                )
                body = _error_body(code, text[:500])
                headers = [
                    (k, v)
                    for k, v in held.get("headers", [])
                    if k.lower() not in (b"content-type", b"content-length")
                ]
                headers += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                held = None
                return
            await send(message)

        try:
            await self.app(scope, receive, rewrite)
        except Exception as exc:
            if not answered:
                raise
            logger.info(
                "%s %s: error after the answer was sent: %s",
                scope["method"],
                scope["path"],
                type(exc).__name__,
            )


async def _healthz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    return JSONResponse({"status": "ok", "version": __version__, "offline": runtime.offline})


def create_http_app(runtime: Runtime, *, host: str = "127.0.0.1", stateless: bool = False) -> Starlette:
    """One Starlette app: ``/mcp`` (streamable HTTP), ``/sse`` + ``/messages/`` (SSE), ``/healthz``.

    ``host`` is the bind address: on a loopback address Host/Origin are checked against loopback
    names (plus ``ATLAS_MCP_ALLOWED_HOSTS``). With ``stateless`` streamable HTTP keeps no session,
    so any replica behind a load balancer can answer any request.
    """
    settings = runtime.settings
    server = make_server(runtime)
    security = transport_security(settings, host)
    body_limit = settings.max_upload_bytes * 4 // 3 + 256 * 1024
    streamable = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=stateless,
        transport_security=security,
        max_request_body_size=body_limit,
        host=host,
    )
    sse = server.sse_app(
        sse_path="/sse",
        message_path="/messages/",
        transport_security=security,
        max_request_body_size=body_limit,
        host=host,
    )
    routes: list[BaseRoute] = [Route(HEALTH_PATH, _healthz, methods=["GET"]), *streamable.routes, *sse.routes]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with streamable.router.lifespan_context(app):
            try:
                yield
            finally:
                await runtime.aclose()
                logger.info("shut down: sessions closed, Atlas HTTP client closed")

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.in_flight = in_flight = InFlight()
    app.add_middleware(_CountInFlight, counter=in_flight)
    app.add_middleware(JsonRpcErrors)
    app.add_middleware(AccessGuard, token=settings.auth_token, user_keys=settings.user_keys)
    return app


class InFlight:
    """How many ``POST /mcp`` requests (tool calls among them) are being answered right now."""

    def __init__(self) -> None:
        self.count = 0


class _CountInFlight:
    """Keeps :class:`InFlight` up to date, so a shutdown can let the calls in flight finish first."""

    def __init__(self, app: ASGIApp, *, counter: InFlight) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope["path"].startswith("/mcp"):
            await self.app(scope, receive, send)
            return
        self.counter.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.counter.count -= 1


GRACE_SECONDS = 4.0  # SIGTERM: how long calls in flight may take to finish (then 2 s for the rest)


def _finish_calls_before_draining(
    server: uvicorn.Server, in_flight: InFlight, grace: float = GRACE_SECONDS
) -> None:
    """On SIGTERM/SIGINT: stop accepting connections, let the calls in flight finish (up to
    ``grace`` seconds), and only then end the event streams that are left.

    By default sse-starlette ends every SSE stream the moment uvicorn starts shutting down, which
    would cut the answer of a tool call that is about to complete. Here that drain is held back
    until no ``POST /mcp`` is in flight; uvicorn's own ``timeout_graceful_shutdown`` then only
    covers what is left (idle streams; a call that outlived the grace period is cancelled).
    """

    async def wait(server: uvicorn.Server) -> None:
        compat.stop_listening(server)  # no new connections from here on
        waited, step = 0.0, 0.05
        if in_flight.count:
            logger.info("stopping: waiting up to %gs for %d call(s) in flight", grace, in_flight.count)
        while in_flight.count and waited < grace and not compat.force_exit_requested(server):
            await anyio.sleep(step)
            waited += step
        if in_flight.count:
            logger.warning(
                "stopping: cancelling %d call(s) still in flight after %gs", in_flight.count, grace
            )
        compat.drain_sse_now()  # now let sse-starlette end the streams that are left

    compat.finish_before_shutdown(server, wait)


def check_exposure(settings: Settings, host: str, allow_unauthenticated: bool) -> str | None:
    """Why serving on ``host`` is refused, or None when it is allowed."""
    if is_loopback(host) or settings.auth_token or settings.user_keys or allow_unauthenticated:
        return None
    return (
        f"refusing to serve on {host} with no authentication: anyone who can reach it could spend the Atlas "
        "key's credit. Set ATLAS_MCP_AUTH_TOKEN (clients then send Authorization: Bearer <token>), or "
        "ATLAS_MCP_USER_KEYS=1 (each client brings its own key), or pass --allow-unauthenticated."
    )


def serve_http(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    offline: bool = False,
    stateless: bool = False,
    allow_unauthenticated: bool = False,
    **uvicorn_options: Any,
) -> int:
    """Run the HTTP app under uvicorn until SIGINT/SIGTERM; 2 (nothing bound) when refused or when the
    address cannot be bound (a busy port), with the reason logged before anything claims to run."""
    refusal = check_exposure(settings, host, allow_unauthenticated)
    if refusal:
        logger.error("%s", refusal)
        return 2
    if settings.user_keys and settings.api_key and not offline:
        logger.warning(
            "ATLAS_MCP_USER_KEYS=1: ATLASCLOUD_API_KEY is ignored, every request brings its own key"
        )
    try:
        listener = _listen(host, port)
    except OSError as err:
        logger.error("%s", _cannot_listen(host, port, err))
        return 2
    port = int(listener.getsockname()[1])  # the real one when --port 0 asked for any free port
    runtime = Runtime.create(settings, offline=offline, remote=True)
    app = create_http_app(runtime, host=host, stateless=stateless)
    logger.info(
        "atlas-image-mcp %s on http://%s:%d (/mcp streamable HTTP%s, /sse legacy SSE, /healthz)%s",
        __version__,
        host,
        port,
        ", stateless" if stateless else "",
        " with the offline emulator" if offline else "",
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=2,  # for what is left after GRACE_SECONDS (_finish_calls_before_draining)
        server_header=False,
        log_config=None,
        **uvicorn_options,
    )
    server = uvicorn.Server(config)
    _finish_calls_before_draining(server, app.state.in_flight)
    compat.hold_sse_drain()
    try:
        with _clean_exit_on_signals(server), listener:
            server.run(sockets=[listener])
    finally:
        compat.release_sse_drain()
    logger.info("atlas-image-mcp stopped")
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says the server is running (uvicorn listens on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _cannot_listen(host: str, port: int, err: OSError) -> str:
    reason = err.strerror or str(err)
    if err.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {host}:{port}: the port is already in use (perhaps by another "
            "atlas-image-mcp). Stop that program, or choose another port with --port."
        )
    if err.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges)."
    return f"cannot listen on {host}:{port}: {reason}. Check --host (an address of this machine) and --port."


@contextmanager
def _clean_exit_on_signals(server: uvicorn.Server) -> Iterator[None]:
    """Make SIGTERM/SIGINT end ``server.run()`` with a normal return (exit status 0).

    uvicorn shuts down gracefully on these signals, then raises the signal again once its own
    handlers are removed, so the process would die of it (status -15 for SIGTERM) after a clean
    shutdown. With these handlers underneath, that re-raised signal only asks the (already
    stopped) server to exit; one arriving before uvicorn takes over stops it as well.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
