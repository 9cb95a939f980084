"""HTTP hosting: streamable HTTP at ``/mcp`` and legacy SSE at ``/sse`` (+ ``/messages/``), one app.

Security, from the outside in:

* CORS (only with ``ATLAS_MCP_ALLOWED_ORIGINS``): preflights from those origins are answered, and
  ``Mcp-Session-Id`` is exposed to their scripts.
* :class:`~atlas_image_mcp.auth.front.Front`, outermost: the OAuth well-known documents (404
  without sign-in) and the key-linking page.
* With sign-in (``ATLAS_MCP_OAUTH_ISSUER``), :class:`~atlas_image_mcp.auth.guard.OAuthGuard` takes
  the place of the access guard (access tokens, the specification's 401/403 challenges) and
  :class:`~atlas_image_mcp.auth.guard.ScopeCheck`, behind the body limits, what each token's scopes
  allow (see :mod:`atlas_image_mcp.auth`).
* :class:`AccessGuard` (pure ASGI, so SSE streams pass through untouched) guards every path but
  ``/healthz``: with ``ATLAS_MCP_AUTH_TOKEN`` each request must carry ``Authorization: Bearer
  <token>`` (compared in constant time), else 400 with a JSON-RPC error body that says what to send
  (no 401: it would make clients start an OAuth sign-in). In per-user-key mode
  (``ATLAS_MCP_USER_KEYS=1``) a request must carry a plausible ``X-Atlas-Api-Key`` (or the server
  token), else 400 before any session, stream or state exists;
  MCP sessions are bound to the key (a session opened with one key answers "session not found" to
  any other). A repeated ``Authorization`` or ``X-Atlas-Api-Key`` header is a 400. The tools read
  the key from each message's own headers (``ctx.headers``), so one user's key never serves
  another's request; a key is registered for redaction only when it is used to call Atlas.
* :mod:`atlas_image_mcp.admission`: every message parsed once (a repeated key is a 400) and its
  body capped from that parse (small for ordinary messages, large only for uploads, read in a few
  slots that are held only while reading); sessions and SSE streams counted where the SDK makes
  them, capped per key and in all, and per-user keys Atlas has not accepted held to one each.
* :class:`JsonRpcErrors` turns the transports' plain-text 4xx answers (bad session, body too
  large, bad Host) into JSON-RPC error bodies, so clients always get something they can parse.
* The SDK's transport security checks ``Host`` and ``Origin`` (DNS rebinding): loopback names by
  default, plus ``ATLAS_MCP_ALLOWED_HOSTS`` / ``ATLAS_MCP_ALLOWED_ORIGINS`` for a public name.
* uvicorn (:func:`uvicorn_limits`): a client address holds a bounded number of connections, a
  connection that sends nothing is closed within seconds, a request head must arrive within a few
  seconds and fit in 16 KB, idle keep-alive connections close after 10 s, ``X-Forwarded-For`` is
  believed only from ``ATLAS_MCP_TRUSTED_PROXIES``, and the access log never shows a query.
* ``/healthz`` answers 200 with nothing secret, without authentication, for load balancers
  (liveness). ``/readyz``, also without authentication, answers for this replica: 200 once it
  has started and until it starts stopping, else 503; its body reports the store (engine, where
  without a password, up or down and why) but a store that is down does not fail it, since every
  replica shares that store (docs/replicas.md).
"""

from __future__ import annotations

import errno
import gc
import hmac
import ipaddress
import logging
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from http import HTTPStatus
from typing import Any

import anyio
import uvicorn
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, compat
from .admission import (
    KEY,
    OWNER,
    BodyLimits,
    KeyChecks,
    SessionBook,
    SessionLimits,
    Verdict,
    address_group,
    error_body,
    json_rpc_answer,
)
from .answers import AnswerForms
from .auth.config import oauth_config
from .auth.front import Front
from .auth.guard import OAuthGuard, ScopeCheck
from .auth.linkpage import link_page
from .constants import (
    FIRST_BYTE_SECONDS,
    HEAD_TIMEOUT_SECONDS,
    KEEP_ALIVE_SECONDS,
    MAX_HEADER_BYTES,
    MAX_USER_KEY_CHARS,
    MIN_USER_KEY_CHARS,
    SHUTDOWN_ANSWER_SECONDS,
    SHUTDOWN_GRACE_SECONDS,
    USER_KEY_HEADER,
)
from .errors import AtlasError, AuthenticationError
from .redact import key_digest, redact
from .runtime import Runtime
from .server import make_server, spending_tools, tools_that_may_ask
from .settings import Settings, SettingsError, WorkerOptions, env_name, export_for_workers
from .shared import SessionsInStore

__all__ = [
    "AccessGuard",
    "JsonRpcErrors",
    "check_exposure",
    "create_http_app",
    "is_loopback",
    "serve_http",
    "serve_workers",
    "worker_app",
]

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
#: Each worker listens on its own socket, and the kernel balances them (Linux; BSD and macOS have the
#: option but not the balancing).
_REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
READY_PATH = "/readyz"
#: Paths answered without authentication (probes of load balancers and orchestrators).
_OPEN_PATHS = frozenset({HEALTH_PATH, READY_PATH})
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
            "serving on %s without %s: Host/Origin checks are off; set it to the public "
            "name(s) of this server to turn DNS-rebinding protection on",
            host,
            env_name("allowed_hosts"),
        )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def _key_owner(digest: str) -> AuthenticatedUser:
    """The principal a per-user key stands for (its digest, not the key): the SDK binds sessions to it."""
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
        if scope["type"] not in ("http", "websocket") or scope["path"] in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # no MCP endpoint streams anything for HEAD: say so instead of opening a stream
            allow = [(b"allow", b"GET, POST, DELETE"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 405, "headers": allow})
            await send({"type": "http.response.body", "body": b""})
            return
        raw = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        repeated = {k for k, _ in raw if k in _SINGLE_HEADERS and sum(1 for n, _ in raw if n == k) > 1}
        if repeated and scope["type"] == "http":
            names = ", ".join(sorted(repeated))
            await json_rpc_answer(send, 400, _INVALID_REQUEST, f"Send the {names} header only once.")
            return
        headers = dict(raw)
        authorized = self._token is not None and self._authorized(headers.get("authorization", ""))
        if self._token is not None and not authorized:
            await self._refuse(scope, send, _unauthorized)
            return
        if self.user_keys:
            key = headers.get(USER_KEY_HEADER, "").strip()
            if key and _plausible_key(key):
                digest = key_digest(key)
                scope = dict(scope, user=_key_owner(digest), **{OWNER: digest, KEY: key})
            elif key or not authorized:
                # no state of any kind for a request that brings neither a server token nor a key
                await self._refuse(scope, send, _no_user_key)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, answer: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await answer(send)

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.strip().partition(" ")
        given = value.strip().encode("latin-1") if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self._token or b"")


_SINGLE_HEADERS = frozenset({"authorization", USER_KEY_HEADER})


def _plausible_key(key: str) -> bool:
    """Long enough and short enough for an Atlas key, printable ASCII, no spaces or quotes."""
    return (
        MIN_USER_KEY_CHARS <= len(key) <= MAX_USER_KEY_CHARS
        and key.isascii()
        and key.isprintable()
        and not any(c in key for c in " \"',;\\")
    )


# Without sign-in a refusal is a 400 with a JSON-RPC error that says what to send, with no
# WWW-Authenticate and no "Unauthorized" in it: any 401 makes Claude Code, the MCP Inspector and
# mcp-remote start an OAuth sign-in this server cannot finish (mcp-remote then waits for ever) and
# none of them shows the message; this answer they all show (docs/oauth.md, "With sign-in off").


async def _no_user_key(send: Send) -> None:
    await json_rpc_answer(
        send,
        400,
        _UNAUTHORIZED,
        "This server needs your own Atlas Cloud API key in the X-Atlas-Api-Key header of every request "
        f"({MIN_USER_KEY_CHARS} to {MAX_USER_KEY_CHARS} characters).",
    )


async def _unauthorized(send: Send) -> None:
    message = (
        "This server needs its access token: send the header Authorization: Bearer "
        f"<{env_name('auth_token')}> (the token its operator set) with every request."
    )
    await json_rpc_answer(send, 400, _UNAUTHORIZED, message)


class JsonRpcErrors:
    """Rewrites plain-text error answers (status >= 400) into JSON-RPC error bodies, same status.

    Also contains an error the transport raises *after* its answer went out (the SDK's SSE
    endpoint does so for bad JSON sent to a session whose stream has just closed): the client
    already has its answer, so the connection is not torn down and the error is only logged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS or scope["method"] == "HEAD":
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
                body = error_body(code, redact(text[:500]))
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


async def _readyz(request: Request) -> JSONResponse:
    """This replica's readiness (see the module docstring), and the store's state in the body.

    Where the store is and why it is down (host names, database and user names in a driver's
    words) are shown only to a request from this machine or one that carries the server's token;
    anyone else who can reach the port sees whether it is up.
    """
    runtime: Runtime = request.app.state.runtime
    state = "stopping" if runtime.draining else "ready" if runtime.started else "starting"
    status = runtime.store.status()
    store = (
        status.as_dict()
        if status is not None
        else {"up": False, "reason": runtime.store.failure or "not opened yet"}
    )
    if not _may_see_details(request, runtime.settings.auth_token):
        store = {k: v for k, v in store.items() if k not in ("where", "reason")}
    return JSONResponse(
        {"status": state, "version": __version__, "store": store},
        status_code=200 if state == "ready" else 503,
    )


def _may_see_details(request: Request, token: str | None) -> bool:
    client = request.client
    if client is not None and is_loopback(client.host):
        return True
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    given = value.strip().encode("latin-1", "replace") if scheme.lower() == "bearer" else b""
    return token is not None and hmac.compare_digest(given, token.encode())


def create_http_app(
    runtime: Runtime, *, host: str = "127.0.0.1", stateless: bool = False, legacy_sse: bool = True
) -> Starlette:
    """One Starlette app: ``/mcp`` (streamable HTTP), ``/sse`` + ``/messages/`` (SSE), ``/healthz``.

    ``host`` is the bind address: on a loopback address Host/Origin are checked against loopback
    names (plus ``ATLAS_MCP_ALLOWED_HOSTS``). With ``stateless`` streamable HTTP keeps no session,
    so any replica behind a load balancer can answer any request. ``legacy_sse=False`` leaves SSE
    out (worker processes behind one port: an SSE session lives in one of them).
    """
    settings = runtime.settings
    server = make_server(runtime)
    security = transport_security(settings, host)
    body_limit = settings.max_upload_body_bytes  # BodyLimits keeps ordinary messages far smaller
    streamable = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=stateless,
        transport_security=security,
        max_request_body_size=body_limit,
        session_idle_timeout=settings.session_idle_seconds,
        max_sessions=settings.max_sessions,
        host=host,
    )
    sse = server.sse_app(
        sse_path="/sse",
        message_path="/messages/",
        transport_security=security,
        max_request_body_size=body_limit,
        host=host,
    )
    routes: list[BaseRoute] = [
        Route(HEALTH_PATH, _healthz, methods=["GET"]),
        Route(READY_PATH, _readyz, methods=["GET"]),
        *streamable.routes,
    ]
    if legacy_sse:
        routes += sse.routes

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with streamable.router.lifespan_context(app):
            try:
                await runtime.start()  # the store, its heartbeat and sweeper: before any request
                tune_collector(settings.gc_threshold)
                yield
            finally:
                await runtime.aclose()
                logger.info("shut down: sessions closed, Atlas HTTP client closed")

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.in_flight = in_flight = InFlight()
    signin = runtime.signin
    # with sign-in every owner is a user whose token was verified; else per-user keys are asked about
    check = _key_check(runtime) if settings.user_keys and signin is None else None
    keys = KeyChecks(check, verified_owners=signin is not None)
    book = SessionBook(max_sessions=settings.max_sessions, per_key=settings.max_sessions_per_key, keys=keys)
    if runtime.store.location.shared:  # per key across replicas when they share a store (PostgreSQL)
        idle = settings.session_idle_seconds
        book.share(SessionsInStore(runtime.store, ttl=idle), renew_every=idle / 3)
    if not stateless:
        compat.watch_sessions(
            server.session_manager, may_open=book.may_open, opened=book.opened, closed=book.closed
        )
    app.add_middleware(_CountInFlight, counter=in_flight)
    compat.per_request_json_answers()
    asking = tools_that_may_ask()
    app.add_middleware(
        AnswerForms,
        may_ask=lambda tool: tool in asking and runtime.confirm_above is not None,
        max_sessions=settings.max_sessions,
    )
    app.add_middleware(JsonRpcErrors)
    app.add_middleware(SessionLimits, book=book, stateless=stateless)
    if signin is not None:  # sign-in: what a token's scopes allow, once the body is read
        app.add_middleware(ScopeCheck, config=signin.config, spending=spending_tools())
    app.add_middleware(
        BodyLimits,
        small=settings.max_message_bytes,
        large=body_limit,
        large_timeout=settings.upload_timeout,
        keys=keys,
    )
    if signin is not None:
        app.add_middleware(OAuthGuard, signin=signin, open_paths=tuple(_OPEN_PATHS))
    else:
        app.add_middleware(AccessGuard, token=settings.auth_token, user_keys=settings.user_keys)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=list(_CORS_HEADERS),
            expose_headers=["Mcp-Session-Id", "WWW-Authenticate"],
            max_age=600,
        )
    # outermost: the well-known documents (404 without sign-in) and the key-linking page
    page = link_page(runtime) if signin is not None and signin.accounts is not None else None
    app.add_middleware(Front, config=signin.config if signin else None, link_page=page)
    return app


def _key_check(runtime: Runtime) -> Callable[[str], Awaitable[Verdict]]:
    """How a per-user key is checked with Atlas: one read of the account's balance with that key
    (refused: Atlas answered 401; anything else but an answer is "unknown", never a refusal)."""

    async def check(key: str) -> Verdict:
        try:
            await runtime.client.with_api_key(key).get_balance()
        except AuthenticationError as err:
            return "refused" if err.status_code == 401 else "unknown"
        except AtlasError:
            return "unknown"
        return "accepted"

    return check


#: Request headers a browser client of MCP sends (preflights asking for them are answered).
_CORS_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "last-event-id",
    "mcp-session-id",
    "mcp-protocol-version",
    USER_KEY_HEADER,
)


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


def _finisher(in_flight: InFlight, runtime: Runtime) -> Callable[[uvicorn.Server], Awaitable[None]]:
    """What runs on SIGTERM/SIGINT before the event streams end: stop accepting connections, let the
    calls in flight finish (up to SHUTDOWN_GRACE_SECONDS), then have the calls still waiting for a
    picture answer "processing" with their prediction id (up to SHUTDOWN_ANSWER_SECONDS more).

    By default sse-starlette ends every SSE stream the moment uvicorn starts shutting down, which
    would cut the answer of a tool call that is about to complete. Here that drain is held back
    until no ``POST /mcp`` is in flight; uvicorn's own ``timeout_graceful_shutdown`` then only
    covers what is left (idle streams; a call that is still busy after both periods is cancelled).
    """
    return partial(
        _finish_calls,
        in_flight=in_flight,
        runtime=runtime,
        grace=SHUTDOWN_GRACE_SECONDS,
        answer=SHUTDOWN_ANSWER_SECONDS,
    )


async def _finish_calls(
    server: uvicorn.Server, *, in_flight: InFlight, runtime: Runtime | None, grace: float, answer: float
) -> None:
    async def settle(limit: float) -> None:
        waited, step = 0.0, 0.05
        while in_flight.count and waited < limit and not compat.force_exit_requested(server):
            await anyio.sleep(step)
            waited += step

    compat.stop_listening(server)  # no new connections from here on
    if runtime is not None:
        runtime.draining = True  # /readyz: 503 from now on
    if in_flight.count:
        logger.info("stopping: waiting up to %gs for %d call(s) in flight", grace, in_flight.count)
    await settle(grace)
    if in_flight.count and runtime is not None:
        logger.info("stopping: answering %d call(s) still waiting with their prediction id", in_flight.count)
        runtime.stop_waiting()
        await settle(answer)
    if in_flight.count:
        logger.warning(
            "stopping: cancelling %d call(s) still in flight after %gs", in_flight.count, grace + answer
        )
    compat.drain_sse_now()  # now let sse-starlette end the streams that are left


def check_exposure(settings: Settings, host: str, allow_unauthenticated: bool) -> str | None:
    """Why serving on ``host`` is refused, or None when it is allowed."""
    if is_loopback(host) or settings.auth_token or settings.user_keys or allow_unauthenticated:
        return None
    if settings.oauth_issuer:
        return None
    return (
        f"refusing to serve on {host} with no authentication: anyone who can reach it could spend the Atlas "
        f"key's credit. Set {env_name('auth_token')} (clients then send Authorization: Bearer <token>), or "
        f"{env_name('user_keys')}=1 (each client brings its own key), or {env_name('oauth_issuer')} (people "
        "sign in), or pass --allow-unauthenticated."
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
    if _refused(settings, host, offline, allow_unauthenticated):
        return 2
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
        access_log=_access_log(settings),
        timeout_graceful_shutdown=2,  # for what is left after SHUTDOWN_GRACE_SECONDS (_finisher)
        server_header=False,
        log_config=None,
        **{**uvicorn_limits(settings), **uvicorn_options},
    )
    server = uvicorn.Server(config)
    _quiet_access_log()
    compat.finish_before_shutdown(server, _finisher(app.state.in_flight, runtime))
    compat.hold_sse_drain()
    try:
        with _clean_exit_on_signals(server), listener:
            server.run(sockets=[listener])
    finally:
        compat.release_sse_drain()
    logger.info("atlas-image-mcp stopped")
    return 0


def _refused(settings: Settings, host: str, offline: bool, allow_unauthenticated: bool) -> bool:
    refusal = check_exposure(settings, host, allow_unauthenticated)
    if refusal:
        logger.error("%s", refusal)
        return True
    try:
        signin = oauth_config(settings)
    except SettingsError as err:
        logger.error("%s", err)
        return True
    if signin is not None and not signin.linking and not settings.api_key and not offline:
        logger.warning(
            f"{env_name('oauth_issuer')} without {env_name('api_key')}: people can sign in, but the server "
            f"has no key to pay with; set it, or {env_name('user_keys')}=1 so that each user links their own"
        )
    if settings.user_keys and settings.api_key and not offline:
        logger.warning(
            f"{env_name('user_keys')}=1: {env_name('api_key')} is ignored, every request brings its own key"
        )
    return False


def serve_workers(
    settings: Settings,
    *,
    factory: str,
    workers: int,
    host: str = "127.0.0.1",
    port: int = 8000,
    offline: bool = False,
    allow_unauthenticated: bool = False,
) -> int:
    """Run ``workers`` processes of the stateless app behind one port until SIGINT/SIGTERM.

    On Linux each worker listens on a socket of its own on the same port (``SO_REUSEPORT``) and the
    kernel spreads new connections evenly over them; elsewhere uvicorn binds the port once and the
    workers share that socket (the kernel then gives each connection to whichever worker asks first,
    so the load may be uneven). ``factory`` is the import string of what builds each worker's app
    (:func:`worker_app` with the settings and options this process exported to them). Returns 2
    (nothing bound) when refused.
    """
    if _refused(settings, host, offline, allow_unauthenticated):
        return 2
    export_for_workers(WorkerOptions(host=host, offline=offline), settings)
    logger.info(
        "atlas-image-mcp %s on http://%s:%d with %d worker processes (/mcp stateless streamable HTTP, "
        "/healthz; no legacy SSE)%s",
        __version__,
        host,
        port,
        workers,
        " with the offline emulator" if offline else "",
    )
    if offline:
        logger.warning(
            "--offline with %d workers: each worker has its own emulator, so a prediction started by one "
            "is unknown to the others (get_prediction may not find it); use one worker for that",
            workers,
        )
    # Each worker gets the config by pickling: the protocol travels as its import string, and each
    # worker makes its own from its settings (module ``__getattr__`` below).
    limits = {**uvicorn_limits(settings), "http": f"{__name__}:WORKER_PROTOCOL"}
    options: dict[str, Any] = {
        "factory": True,
        "workers": workers,
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        "access_log": _access_log(settings),
        "timeout_graceful_shutdown": 2,  # for what is left after SHUTDOWN_GRACE_SECONDS (_finisher)
        "server_header": False,
        "log_config": None,
        **limits,
    }
    if _REUSE_PORT:
        try:
            compat.reuse_port_socket(host, port).close()  # the port is free (or only ours): say so now
        except OSError as err:
            logger.error("%s", _cannot_listen(host, port, err))
            return 2
        compat.run_workers(uvicorn.Config(factory, **options), compat.ReusePortListener(host, port, 2048))
    else:  # one socket shared by every worker: they race for its connections
        uvicorn.run(factory, **options)
    logger.info("atlas-image-mcp stopped")
    return 0


def worker_app(settings: Settings, options: WorkerOptions) -> Starlette:
    """The app of one worker process of :func:`serve_workers`, in that process.

    Stateless streamable HTTP only; on SIGTERM it lets its calls in flight finish first, and answers
    those still waiting with their prediction id, as a single server does.
    """
    runtime = Runtime.create(settings, offline=options.offline, remote=True)
    app = create_http_app(runtime, host=options.host, stateless=True, legacy_sse=False)
    _quiet_access_log()
    compat.hold_sse_drain()
    compat.finish_before_every_shutdown(_finisher(app.state.in_flight, runtime))
    return app


def __getattr__(name: str) -> Any:
    """``WORKER_PROTOCOL``: the protocol of :func:`uvicorn_limits` for a worker process of
    :func:`serve_workers`, made from the settings the parent exported (uvicorn imports it by name)."""
    if name == "WORKER_PROTOCOL":
        return connection_protocol(Settings.from_env())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connection_protocol(settings: Settings) -> type[Any]:
    """uvicorn's protocol holding each connection to the limits of :func:`uvicorn_limits`."""
    trusted = [ipaddress.ip_network(n) for n in settings.trusted_proxies]

    def address_of(host: str) -> str | None:
        try:
            ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return address_group(host)
        return None if any(ip in net for net in trusted) else address_group(host)

    guard = compat.ConnectionGuard(
        first_byte_seconds=FIRST_BYTE_SECONDS,
        max_head_bytes=MAX_HEADER_BYTES,
        per_address=settings.max_connections_per_address,
        address_of=address_of,
        too_many=_raw_answer(
            503,
            f"Too many connections from your address ({env_name('max_connections_per_address')}): "
            "close some, then try again.",
        ),
        too_large=_raw_answer(431, f"Request head too large: at most {MAX_HEADER_BYTES // 1024} KB."),
    )
    return compat.head_timeout_protocol(HEAD_TIMEOUT_SECONDS, guard)


def _raw_answer(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON-RPC error body, written by the protocol before it closes."""
    body = error_body(_INVALID_REQUEST if status < 500 else _INTERNAL_ERROR, message)
    phrase = HTTPStatus(status).phrase
    retry = "retry-after: 5\r\n" if status == 503 else ""
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{retry}connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def uvicorn_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn options that bound what a connection may hold (:func:`connection_protocol`): a slow,
    silent or oversized request head is closed, one client address holds a bounded number of
    connections, idle keep-alive connections close after a few seconds, past a few times the
    session cap new requests get 503, and ``X-Forwarded-For`` is believed only from the proxies
    named in ``ATLAS_MCP_TRUSTED_PROXIES``."""
    return {
        "http": connection_protocol(settings),
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "limit_concurrency": 2 * settings.max_sessions + 256,
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies),
    }


class _NoQueryStrings(logging.Filter):
    """uvicorn's access log line without the query string (an SSE session id is a credential)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?...", args[3], args[4])
        return True


def _access_log(settings: Settings) -> bool:
    """uvicorn's line per HTTP request, at DEBUG only: for MCP it says "POST /mcp 200" for every
    message whatever it did, and it cost 3% of a loaded server's CPU (one paid call logs one line of
    its own at INFO, :func:`atlas_image_mcp.notify.notify`)."""
    return settings.log_level == "DEBUG"


def _quiet_access_log() -> None:
    compat.hide_sse_session_ids()
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _NoQueryStrings) for f in access.filters):
        access.addFilter(_NoQueryStrings())


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


def tune_collector(threshold: int) -> None:
    """Collections that fit a server: what start-up made (modules, the app, the runtime) is frozen
    out of every later collection, and the young generation is collected every ``threshold``
    allocations instead of Python's 700 (0: Python's defaults, nothing frozen)."""
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)
