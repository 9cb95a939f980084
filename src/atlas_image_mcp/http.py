"""HTTP hosting: streamable HTTP at ``/mcp`` and legacy SSE at ``/sse`` (+ ``/messages/``), one app.

Security, from the outside in:

* :class:`AccessGuard` (pure ASGI, so SSE streams pass through untouched): with
  ``ATLAS_MCP_AUTH_TOKEN`` every MCP request must carry ``Authorization: Bearer <token>``
  (compared in constant time), else 401 with ``WWW-Authenticate``. In per-user-key mode it
  takes ``X-Atlas-Api-Key`` into a context variable; tools read the key from each message's
  own headers, so one user's key never serves another's request.
* The SDK's transport security checks ``Host`` and ``Origin`` (DNS rebinding): loopback names by
  default, plus ``ATLAS_MCP_ALLOWED_HOSTS`` / ``ATLAS_MCP_ALLOWED_ORIGINS`` for a public name.
* Request bodies are capped (enough for the largest base64 upload, no more).
* ``/healthz`` answers 200 with nothing secret, without authentication, for load balancers.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .errors import register_secret
from .runtime import USER_KEY_HEADER, Runtime, request_api_key
from .server import make_server
from .settings import Settings

__all__ = ["AccessGuard", "create_http_app", "is_loopback", "serve_http"]

logger = logging.getLogger(__name__)

MCP_PATHS = ("/mcp", "/sse", "/messages")
_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_security(settings: Settings, host: str) -> TransportSecuritySettings:
    """Host/Origin allow-lists: loopback names always, plus the configured public names."""
    hosts = list(_LOOPBACK_HOSTS) + list(settings.allowed_hosts)
    origins = list(_LOOPBACK_ORIGINS) + list(settings.allowed_origins)
    if not is_loopback(host) and not settings.allowed_hosts:
        logger.warning(
            "serving on %s without ATLAS_MCP_ALLOWED_HOSTS: Host/Origin checks are off; set it to the public "
            "name(s) of this server to turn DNS-rebinding protection on",
            host,
        )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


class AccessGuard:
    """Bearer-token gate for the MCP paths and intake of per-user Atlas keys."""

    def __init__(self, app: ASGIApp, *, token: str | None, user_keys: bool) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self.user_keys = user_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(MCP_PATHS):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self._token is not None and not self._authorized(headers.get("authorization", "")):
            await _unauthorized(send)
            return
        if not self.user_keys:
            await self.app(scope, receive, send)
            return
        key = headers.get(USER_KEY_HEADER, "").strip() or None
        register_secret(key)
        reset = request_api_key.set(key)
        try:
            await self.app(scope, receive, send)
        finally:
            request_api_key.reset(reset)

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        given = value.strip().encode() if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self._token or b"")


async def _unauthorized(send: Send) -> None:
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32001, "message": "Unauthorized: send Authorization: Bearer <ATLAS_MCP_AUTH_TOKEN>"},
        }
    ).encode()
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


async def _healthz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    return JSONResponse({"status": "ok", "version": __version__, "offline": runtime.offline})


def create_http_app(runtime: Runtime, *, host: str = "127.0.0.1", stateless: bool = False) -> Starlette:
    """One Starlette app: ``/mcp`` (streamable HTTP), ``/sse`` + ``/messages/`` (SSE), ``/healthz``."""
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
        sse_path="/sse", message_path="/messages/", transport_security=security, max_request_body_size=body_limit, host=host
    )
    routes: list[BaseRoute] = [Route("/healthz", _healthz, methods=["GET"]), *streamable.routes, *sse.routes]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with streamable.router.lifespan_context(app):
            try:
                yield
            finally:
                await runtime.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = runtime
    app.add_middleware(AccessGuard, token=settings.auth_token, user_keys=settings.user_keys)  # type: ignore[arg-type]
    return app


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
    """Run the HTTP app under uvicorn until SIGINT/SIGTERM (in-flight calls get a few seconds)."""
    refusal = check_exposure(settings, host, allow_unauthenticated)
    if refusal:
        logger.error("%s", refusal)
        return 2
    runtime = Runtime.create(settings, offline=offline, remote=True)
    app = create_http_app(runtime, host=host, stateless=stateless)
    logger.info(
        "atlas-image-mcp %s on http://%s:%d (/mcp streamable HTTP, /sse legacy SSE, /healthz)%s",
        __version__,
        host,
        port,
        " with the offline emulator" if offline else "",
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
        server_header=False,
        log_config=None,
        **uvicorn_options,
    )
    uvicorn.Server(config).run()
    return 0
