"""The HTTP side of sign-in: :class:`OAuthGuard` (who is calling) and :class:`ScopeCheck` (may they).

Both are pure ASGI, so streams pass through untouched. They answer as the MCP authorization
specification and RFC 6750 say, with a JSON-RPC error body that MCP clients can parse:

* no ``Authorization`` header: **401** ``WWW-Authenticate: Bearer resource_metadata="<metadata
  URL>", scope="images:read images:generate"`` (no error code: nothing was sent, RFC 6750 3.1);
* a token that is not valid here (malformed, another issuer, another audience, expired, not yet
  valid, a signature that does not verify, an algorithm refused): **401** with
  ``error="invalid_token"`` and a plain ``error_description`` (never the token or its claims);
* a request that is malformed as far as credentials go (two ``Authorization`` headers, a token in
  the URL query, a scheme other than Bearer): **400** ``error="invalid_request"``;
* a valid token without the scope the request needs: **403** ``error="insufficient_scope"``,
  ``scope`` naming every scope the request needs, so a client can ask for them and try again
  (the step-up of the 2025-11-25 specification);
* the authorization server cannot be reached to check a token, or the store to find a linked
  key: **503** with ``Retry-After``.

A token the guard accepted becomes the SDK's ``AuthenticatedUser`` in ``scope["user"]`` (the SDK
binds each session to its client, issuer and subject, and answers another principal "session not
found"), the :class:`~.principal.Principal` in ``scope[PRINCIPAL]`` (with the user's linked key
when keys are linked) and the owner the session limits count by; the SDK's
``AuthContextMiddleware`` then makes it the request's ``get_access_token()``, which the sealing
of ``requestState`` binds to. Every request needs ``images:read``; a ``tools/call`` of a tool that
can spend money needs ``images:generate`` too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..admission import OWNER, json_rpc_answer
from ..constants import SCOPE_GENERATE, SCOPE_READ
from ..errors import LedgerError
from .config import OAuthConfig
from .issuer import AuthServerUnavailable
from .principal import PRINCIPAL, Principal
from .service import SignIn
from .verifier import TokenRefused, Verified

__all__ = ["OAuthGuard", "ScopeCheck", "challenge"]

logger = logging.getLogger(__name__)

_UNAUTHORIZED, _INVALID_REQUEST, _INTERNAL_ERROR = -32001, -32600, -32603
_NOT_IN_QUOTES = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750 3: what a quoted value may hold
_MESSAGE_PATHS = ("/mcp", "/messages")


def challenge(
    config: OAuthConfig,
    *,
    error: str | None = None,
    description: str | None = None,
    scope: Iterable[str] = (),
) -> tuple[bytes, bytes]:
    """The ``WWW-Authenticate`` header of a refusal: error, description, metadata URL and scope."""
    params = []
    if error:
        params.append(f'error="{error}"')
    if description:
        params.append(f'error_description="{_NOT_IN_QUOTES.sub(" ", description)}"')
    params.append(f'resource_metadata="{config.metadata_url}"')
    wanted = " ".join(scope)
    if wanted:
        params.append(f'scope="{wanted}"')
    return b"www-authenticate", ("Bearer " + ", ".join(params)).encode("latin-1", "replace")


async def _refuse(send: Send, status: int, message: str, header: tuple[bytes, bytes] | None) -> None:
    code = _UNAUTHORIZED if status in (401, 403) else _INVALID_REQUEST if status == 400 else _INTERNAL_ERROR
    await json_rpc_answer(send, status, code, message, [header] if header else None)


class OAuthGuard:
    """Every request but ``/healthz`` needs a valid access token (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, signin: SignIn, open_paths: tuple[str, ...] = ()) -> None:
        self.app = AuthContextMiddleware(app)
        self.signin = signin
        self.config = signin.config
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # nothing is served over WebSocket
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["method"] == "HEAD":  # no MCP endpoint streams anything for HEAD
            allow = [(b"allow", b"GET, POST, DELETE"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 405, "headers": allow})
            await send({"type": "http.response.body", "body": b""})
            return
        verified = await self._verify(scope, send)
        if verified is None:
            return
        principal = verified.principal
        accounts = self.signin.accounts
        if accounts is not None and scope["method"] == "POST":
            try:
                key = await accounts.key_of(principal.id)
            except LedgerError as exc:
                logger.warning("cannot read linked keys: %s", exc.message)
                await json_rpc_answer(
                    send,
                    503,
                    _INTERNAL_ERROR,
                    "This server cannot reach its database to find your linked Atlas key; try again shortly.",
                    [(b"retry-after", b"5")],
                )
                return
            principal = Principal(
                principal.issuer, principal.subject, principal.client_id, principal.scopes, linked_key=key
            )
        scope = dict(
            scope, user=AuthenticatedUser(verified.token), **{PRINCIPAL: principal, OWNER: principal.id}
        )
        await self.app(scope, receive, send)

    async def _verify(self, scope: Scope, send: Send) -> Verified | None:
        """The request's verified token, or None once the refusal was sent."""
        config = self.config
        given = [v for k, v in scope.get("headers", []) if k.lower() == b"authorization"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if "access_token" in query:
            why = "Send the access token in the Authorization header, never in the URL."
            await _refuse(send, 400, why, challenge(config, error="invalid_request", description=why))
            return None
        if len(given) > 1:
            why = "Send the Authorization header only once."
            await _refuse(send, 400, why, challenge(config, error="invalid_request", description=why))
            return None
        if not given:
            await _refuse(
                send,
                401,
                f"Sign-in required: this server takes access tokens of {config.issuer} for "
                f"{config.resource}, "
                "in an Authorization: Bearer header (the WWW-Authenticate header names the metadata).",
                challenge(config, scope=config.scopes),
            )
            return None
        scheme, _, value = given[0].decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer":
            why = "Send an OAuth access token as Authorization: Bearer <token>."
            await _refuse(send, 400, why, challenge(config, error="invalid_request", description=why))
            return None
        try:
            return await self.signin.verifier.verify(value.strip())
        except TokenRefused as refused:
            header = challenge(
                config, error="invalid_token", description=refused.description, scope=config.scopes
            )
            await _refuse(send, 401, f"{refused.description}: sign in again.", header)
        except AuthServerUnavailable as exc:
            logger.warning("cannot check an access token: %s", exc)
            await json_rpc_answer(
                send,
                503,
                _INTERNAL_ERROR,
                "This server cannot reach its authorization server to check your access token; try again "
                "shortly.",
                [(b"retry-after", b"5")],
            )
        return None


class ScopeCheck:
    """A valid token may do what its scopes allow: ``images:read`` for everything, and
    ``images:generate`` as well for a ``tools/call`` of a tool in ``spending``. Sits behind the body
    limits, so a body it reads is whole and bounded."""

    def __init__(self, app: ASGIApp, *, config: OAuthConfig, spending: frozenset[str]) -> None:
        self.app = app
        self.config = config
        self.spending = spending

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get(PRINCIPAL)
        if scope["type"] != "http" or not isinstance(principal, Principal):
            await self.app(scope, receive, send)
            return
        granted = principal.scopes
        if SCOPE_READ in granted and SCOPE_GENERATE in granted:
            await self.app(scope, receive, send)
            return
        needed = {SCOPE_READ}
        body = b""
        if scope["method"] == "POST" and scope["path"].startswith(_MESSAGE_PATHS):
            body = await _whole_body(receive)
            if self._spends(body):
                needed.add(SCOPE_GENERATE)
        if not needed <= granted:
            wanted = [s for s in self.config.scopes if s in needed]  # all the request needs, in one challenge
            why = (
                "Making or uploading pictures needs the images:generate permission"
                if SCOPE_GENERATE in needed - granted
                else "This server needs the images:read permission"
            )
            header = challenge(self.config, error="insufficient_scope", description=why, scope=wanted)
            await _refuse(send, 403, f"{why}: sign in again and allow it.", header)
            return
        if not body:
            await self.app(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _spends(self, body: bytes) -> bool:
        """Whether the JSON-RPC message(s) in ``body`` call a tool that can spend money."""
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            return False  # not JSON: the transport answers it with a parse error
        messages = parsed if isinstance(parsed, list) else [parsed]
        for message in messages:
            if not isinstance(message, dict) or message.get("method") != "tools/call":
                continue
            params = message.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if isinstance(name, str) and name in self.spending:
                return True
        return False


async def _whole_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
