"""What answers before any MCP layer: the well-known documents, and the key-linking page.

:class:`Front` sits outside everything else (CORS, the access guard, the body and session limits),
so that:

* with sign-in on, the protected resource metadata (RFC 9728) is served at both
  ``/.well-known/oauth-protected-resource/mcp`` (the path-suffixed form the challenges name) and
  ``/.well-known/oauth-protected-resource``, to anyone, with ``Access-Control-Allow-Origin: *``
  (browser clients read it from other origins);
* every other ``/.well-known/`` path, and the endpoints an old client looks for on a server that
  is its own authorization server (``/register``, ``/authorize``, ``/token``), answer **404**:
  this server is not an authorization server, and with sign-in off nothing may suggest a client
  try one (a 401 there starts an OAuth dance that can never finish);
* the key-linking page (``/link``) does its own sign-in and answers in HTML, untouched by the
  layers that speak JSON-RPC.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from ..constants import DOCUMENTATION_URL, RESOURCE_PATH
from .config import LINK_PATH, METADATA_PATH, OAuthConfig

__all__ = ["Front", "resource_metadata"]

_AS_PATHS = frozenset({"/register", "/authorize", "/token"})
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"mcp-protocol-version"),
    (b"access-control-max-age", b"600"),
]


def resource_metadata(config: OAuthConfig) -> dict[str, object]:
    """The protected resource metadata document (RFC 9728 section 2)."""
    return {
        "resource": config.resource,
        "authorization_servers": [config.issuer],
        "scopes_supported": list(config.scopes),
        "bearer_methods_supported": ["header"],
        "resource_name": "atlas-image-mcp: pictures with the FLUX models on Atlas Cloud",
        "resource_documentation": DOCUMENTATION_URL,
    }


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start = [(b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


class Front:
    """The outermost layer (see the module docstring). ``config`` None: sign-in is off."""

    def __init__(self, app: ASGIApp, *, config: OAuthConfig | None, link_page: ASGIApp | None = None) -> None:
        self.app = app
        self.link_page = link_page
        self._metadata = json.dumps(resource_metadata(config)).encode() if config is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self._metadata is not None and path in (METADATA_PATH, METADATA_PATH + RESOURCE_PATH):
            await self._serve_metadata(scope, send, self._metadata)
        elif "/.well-known/" in path or path in _AS_PATHS:
            body = json.dumps(
                {"error": "not_found", "error_description": f"Nothing at {path[:100]}."}
            ).encode()
            await _answer(send, 404, body, [(b"content-type", b"application/json")])
        elif self.link_page is not None and (path == LINK_PATH or path.startswith(LINK_PATH + "/")):
            await self.link_page(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    @staticmethod
    async def _serve_metadata(scope: Scope, send: Send, document: bytes) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await _answer(send, 204, b"", _CORS)
        elif method in ("GET", "HEAD"):
            headers = [
                (b"content-type", b"application/json"),
                (b"cache-control", b"public, max-age=3600"),
                *_CORS,
            ]
            start = [(b"content-length", str(len(document)).encode()), *headers]
            await send({"type": "http.response.start", "status": 200, "headers": start})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else document})
        else:
            await _answer(send, 405, b"", [(b"allow", b"GET, HEAD, OPTIONS"), *_CORS])
