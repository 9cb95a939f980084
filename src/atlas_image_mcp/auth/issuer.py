"""The authorization server as this server sees it: its metadata, its signing keys, its endpoints.

:class:`AuthorizationServer` knows one issuer, from the settings only (never from a token: ``jku``,
``x5u`` and the like are ignored). Its metadata is discovered the way RFC 8414 and OpenID Connect
Discovery say, first ``/.well-known/oauth-authorization-server`` then
``/.well-known/openid-configuration`` (inserted before the issuer's path, then, for OpenID, after
it), and a document counts only when its ``issuer`` is the configured one exactly.

Everything fetched from it is bounded: a few seconds per request, no redirects followed, at most
:data:`~atlas_image_mcp.constants.AS_DOCUMENT_MAX_BYTES` per answer, at most
:data:`~atlas_image_mcp.constants.JWKS_MAX_KEYS` signing keys. The key set (JWKS) is fetched on the
first need and kept for :data:`~atlas_image_mcp.constants.JWKS_MAX_AGE_SECONDS` (so a key the
server stopped publishing stops being trusted); a token naming a key id the set lacks fetches it
again at once, then at most once per :data:`~atlas_image_mcp.constants.JWKS_MIN_REFRESH_SECONDS`
(anyone can send such a token). A fetch that fails keeps the keys already known (and is tried
again soon). While the server cannot be reached, a request that needs what it lacks gets
:class:`AuthServerUnavailable` (a 503 for the client, not a refused token).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus, urlsplit

import anyio
import httpx
import jwt

from ..constants import (
    AS_DOCUMENT_MAX_BYTES,
    AS_FETCH_TIMEOUT_SECONDS,
    JWKS_MAX_AGE_SECONDS,
    JWKS_MAX_KEYS,
    JWKS_MIN_REFRESH_SECONDS,
)

__all__ = ["AuthServerUnavailable", "AuthorizationServer", "UnknownKey"]

logger = logging.getLogger(__name__)


class AuthServerUnavailable(Exception):
    """The authorization server could not be asked (down, slow, or answering nonsense)."""


class UnknownKey(LookupError):
    """The token names a signing key the authorization server does not publish."""


def discovery_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be, in the order RFC 8414 section 3.1 and OIDC say to try."""
    parts = urlsplit(issuer)
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    urls = [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}/.well-known/openid-configuration{path}",
    ]
    if path:
        urls.append(f"{origin}{path}/.well-known/openid-configuration")
    return urls


class AuthorizationServer:
    """One issuer's metadata, keys and endpoints (see the module docstring)."""

    def __init__(self, issuer: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self._clock = clock
        self._http: httpx.AsyncClient | None = None
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, dict[str, Any]] = {}  # kid -> the public JWK as published
        self._fetched_at: float | None = None
        self._refetches, self._refilled_at = 2.0, clock()
        self._lock = anyio.Lock()

    # --- fetching, bounded ---------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=AS_FETCH_TIMEOUT_SECONDS,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
                headers={"accept": "application/json"},
            )
        return self._http

    async def _json(self, method: str, url: str, **request: Any) -> Any:
        """The JSON answer of one request; AuthServerUnavailable for anything else (4xx of a POST aside)."""
        try:
            with anyio.fail_after(AS_FETCH_TIMEOUT_SECONDS * 2):
                async with self._client().stream(method, url, **request) as answer:
                    body = bytearray()
                    async for chunk in answer.aiter_bytes():
                        body += chunk
                        if len(body) > AS_DOCUMENT_MAX_BYTES:
                            raise AuthServerUnavailable(
                                f"{url} answered more than {AS_DOCUMENT_MAX_BYTES} bytes"
                            )
                    status = answer.status_code
        except (httpx.HTTPError, TimeoutError) as exc:
            raise AuthServerUnavailable(f"{url}: {type(exc).__name__}") from exc
        if status != 200 and not (method == "POST" and 400 <= status < 500):
            raise AuthServerUnavailable(f"{url} answered HTTP {status}")
        try:
            return json.loads(body)
        except ValueError:
            raise AuthServerUnavailable(f"{url} did not answer JSON (HTTP {status})") from None

    async def post_form(
        self, endpoint: str, form: Mapping[str, str], auth: tuple[str, str]
    ) -> dict[str, Any]:
        """POST a form to one of the server's endpoints with HTTP Basic client authentication
        (RFC 6749 section 2.3.1: id and secret form-urlencoded first); the JSON object it answers."""
        url = await self.endpoint(endpoint)
        # RFC 6749 section 2.3.1: the id and the secret are form-urlencoded before Basic encoding
        basic = httpx.BasicAuth(quote_plus(auth[0]), quote_plus(auth[1]))
        found = await self._json("POST", url, data=dict(form), auth=basic)
        if not isinstance(found, dict):
            raise AuthServerUnavailable(f"{url} did not answer a JSON object")
        return found

    # --- metadata ------------------------------------------------------------------------------

    async def metadata(self) -> dict[str, Any]:
        """The issuer's metadata (RFC 8414 / OpenID discovery), fetched once and kept."""
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    self._metadata = await self._discover()
        return self._metadata

    async def _discover(self) -> dict[str, Any]:
        problems = []
        for url in discovery_urls(self.issuer):
            try:
                document = await self._json("GET", url)
            except AuthServerUnavailable as exc:
                problems.append(str(exc))
                continue
            if not isinstance(document, dict) or document.get("issuer") != self.issuer:
                named = document.get("issuer") if isinstance(document, dict) else None
                problems.append(f"{url} names the issuer {str(named)[:200]!r}, not {self.issuer!r}")
                continue
            return document
        raise AuthServerUnavailable("no metadata for the issuer: " + "; ".join(problems))

    async def endpoint(self, name: str) -> str:
        """One of the metadata's endpoint URLs (``token_endpoint``...), which must be http(s)."""
        value = (await self.metadata()).get(name)
        if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
            raise AuthServerUnavailable(f"the authorization server's metadata has no usable {name}")
        return value

    # --- signing keys --------------------------------------------------------------------------

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The public key that signed a token with this ``kid`` (or, without one, the only key for
        ``alg``); UnknownKey when the server does not publish it."""
        stale = self._fetched_at is None or self._clock() - self._fetched_at > JWKS_MAX_AGE_SECONDS
        found = None if stale else self._find(kid, alg)
        if found is not None:
            return found
        async with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > JWKS_MAX_AGE_SECONDS
            found = None if stale else self._find(kid, alg)
            if found is not None:
                return found
            if not stale and not self._may_refetch(now):
                raise UnknownKey("unknown signing key (the key set was fetched moments ago)")
            self._fetched_at = now
            try:
                if self._metadata is None:
                    self._metadata = await self._discover()
                self._keys = await self._fetch_keys()
            except AuthServerUnavailable:
                if not self._keys or self._find(kid, alg) is None:
                    raise
                # the keys known still serve; the set is asked for again soon
                self._fetched_at = now - JWKS_MAX_AGE_SECONDS + JWKS_MIN_REFRESH_SECONDS
        found = self._find(kid, alg)
        if found is None:
            raise UnknownKey("unknown signing key")
        return found

    def _may_refetch(self, now: float) -> bool:
        """A token bucket: two fetches at once, then one per JWKS_MIN_REFRESH_SECONDS. The first
        token signed with a new key fetches the set at once (which also drops keys the server no
        longer publishes); a stream of made-up key ids fetches it once in a while only."""
        self._refetches = min(2.0, self._refetches + (now - self._refilled_at) / JWKS_MIN_REFRESH_SECONDS)
        self._refilled_at = now
        if self._refetches < 1:
            return False
        self._refetches -= 1
        return True

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is not None:
            raw = self._keys.get(kid)
        else:
            fitting = [k for k in self._keys.values() if k.get("alg", alg) == alg]
            raw = fitting[0] if len(fitting) == 1 else None
        if raw is None:
            return None
        try:
            # a key that names its algorithm is that algorithm's only (PyJWT refuses a token of another)
            return jwt.PyJWK(raw, algorithm=raw.get("alg") or alg)
        except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError):
            return None

    async def _fetch_keys(self) -> dict[str, dict[str, Any]]:
        url = await self.endpoint("jwks_uri")
        document = await self._json("GET", url)
        raw_keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw_keys, list):
            raise AuthServerUnavailable(f"{url} is not a JWK set")
        keys: dict[str, dict[str, Any]] = {}
        for n, raw in enumerate(raw_keys[:JWKS_MAX_KEYS]):
            # public signing keys only: never a symmetric one, nor one published with its private part
            if (
                isinstance(raw, dict)
                and raw.get("use", "sig") == "sig"
                and raw.get("kty") in ("RSA", "EC", "OKP")
                and "d" not in raw
            ):
                keys[str(raw.get("kid", f"#{n}"))] = raw
        logger.info("fetched %d signing keys of %s", len(keys), self.issuer)
        return keys

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
