"""Access tokens, checked: :class:`TokenVerifier` turns a bearer token into a :class:`Verified` user
or refuses it with a plain reason (:class:`TokenRefused`).

**JWT access tokens (RFC 9068).** The header must say ``typ: at+jwt`` (or
``application/at+jwt``) and an asymmetric algorithm (RSA, RSA-PSS, ECDSA, EdDSA: never ``none``,
never a shared-secret HMAC, checked before any key is looked up); the signature must verify with
the issuer's published key of that id, pinned to its algorithm; ``iss`` must be the configured
issuer exactly; ``aud`` must name this server's resource (RFC 8707: a token minted for another
resource is refused); ``exp`` must be in the future and ``nbf``/``iat`` not in it, with
:data:`~atlas_image_mcp.constants.TOKEN_LEEWAY_SECONDS` of clock skew; ``sub`` and ``client_id``
(or ``azp``) must be there. Scopes come from ``scope`` (a space-separated string) or ``scp``.

**Opaque tokens (RFC 7662).** Only when this server has client credentials at the issuer (the
same ones the key-linking page signs in with) is a token that is not a JWT access token (opaque,
or a JWT without the RFC 9068 type, which some servers issue) asked about at the issuer's
introspection endpoint; the answer must be ``active``, name this resource in ``aud``
(an answer without ``aud`` is refused: a token the issuer made for another use is active too),
name the issuer when it names one, and carry ``sub`` and ``client_id``. A positive answer is reused
until the token expires or for :data:`~atlas_image_mcp.constants.INTROSPECTION_CACHE_SECONDS`,
whichever comes first, keyed by a digest of the token.

The token itself is never logged, echoed or sent anywhere but, for introspection, to its issuer.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from mcp.server.auth.provider import AccessToken

from ..constants import (
    INTROSPECTION_CACHE_ENTRIES,
    INTROSPECTION_CACHE_SECONDS,
    MAX_TOKEN_CHARS,
    TOKEN_LEEWAY_SECONDS,
)
from .config import OAuthConfig
from .issuer import AuthorizationServer, UnknownKey
from .principal import Principal

__all__ = ["ASYMMETRIC_ALGORITHMS", "TokenRefused", "TokenVerifier", "Verified"]

logger = logging.getLogger(__name__)

#: The signature algorithms a token may use: public-key ones only.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_JWT_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 section 2.1, b64token
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


class TokenRefused(Exception):
    """The token is not valid here; ``description`` says why in plain words (safe to send back)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class Verified:
    """A token this server accepted: the SDK's view of it, and the user it names."""

    token: AccessToken
    principal: Principal


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list):
            return frozenset(str(item) for item in value if isinstance(item, str))
    return frozenset()


def _audiences(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


class TokenVerifier:
    """Checks bearer tokens for one resource and one issuer (see the module docstring)."""

    def __init__(
        self, config: OAuthConfig, issuer: AuthorizationServer, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.issuer = issuer
        self._clock = clock
        self._introspected: OrderedDict[str, tuple[float, Verified]] = OrderedDict()

    async def verify(self, token: str) -> Verified:
        """The user ``token`` names; TokenRefused (or AuthServerUnavailable) otherwise."""
        if not token or len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
            raise TokenRefused("The access token is malformed")
        if _JWT_SHAPE.fullmatch(token):
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError:
                header = None
            typed = header is not None and str(header.get("typ", "")).lower() in _JWT_TYPES
            if header is not None and (typed or not self.config.introspects):
                return await self._verify_jwt(token, header)
        if self.config.introspects:  # opaque, or a JWT that is not an RFC 9068 access token
            return await self._introspect(token)
        raise TokenRefused("The access token is not a JWT access token this server can check")

    # --- JWT (RFC 9068) --------------------------------------------------------------------------

    async def _verify_jwt(self, token: str, header: dict[str, Any]) -> Verified:
        alg = header.get("alg")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise TokenRefused("The access token is signed with an algorithm this server does not accept")
        if str(header.get("typ", "")).lower() not in _JWT_TYPES:
            raise TokenRefused("The token is not a JWT access token (its typ is not at+jwt)")
        try:  # only to choose the refusal, and to fetch no keys for another issuer's token
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRefused("The access token is malformed") from None
        if not isinstance(unverified, dict) or unverified.get("iss") != self.config.issuer:
            raise TokenRefused("The access token was issued by another authorization server")
        kid = header.get("kid")
        try:
            key = await self.issuer.key(kid if isinstance(kid, str) else None, str(alg))
        except UnknownKey:
            raise TokenRefused(
                "The access token is signed with a key the authorization server does not publish"
            ) from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[str(alg)],
                audience=self.config.resource,
                issuer=self.config.issuer,
                leeway=TOKEN_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"], "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("The access token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("The access token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(
                f"The access token was issued for another resource, not {self.config.resource}"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("The access token was issued by another authorization server") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("The access token signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"The access token has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            logger.info("access token refused: %s", type(exc).__name__)
            raise TokenRefused("The access token is not valid") from None
        client = claims.get("client_id", claims.get("azp"))
        if not isinstance(client, str) or not isinstance(claims.get("sub"), str):
            raise TokenRefused("The access token names no client (client_id) or no user (sub)")
        return self._verified(token, claims, client)

    def _verified(self, token: str, claims: dict[str, Any], client: str) -> Verified:
        scopes = _scopes(claims)
        principal = Principal(
            issuer=self.config.issuer, subject=str(claims["sub"]), client_id=client, scopes=scopes
        )
        expires = claims.get("exp")
        access = AccessToken(
            token=token,
            client_id=client,
            scopes=sorted(scopes),
            expires_at=int(expires) if isinstance(expires, (int, float)) else None,
            resource=self.config.resource,
            subject=principal.subject,
            claims={"iss": self.config.issuer, "sub": principal.subject},
        )
        return Verified(access, principal)

    # --- ID tokens (the key-linking page's own sign-in) -----------------------------------------

    async def id_token(self, token: str, *, client_id: str, nonce: str) -> dict[str, Any]:
        """The claims of an OpenID Connect ID token this server's own sign-in received: signed by the
        issuer with an asymmetric key, ``iss`` the issuer, ``aud`` this server's client, the ``nonce``
        it sent, not expired; TokenRefused otherwise."""
        if not token or len(token) > MAX_TOKEN_CHARS or not _JWT_SHAPE.fullmatch(token):
            raise TokenRefused("The sign-in answered no ID token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("The sign-in answered a malformed ID token") from None
        alg = header.get("alg")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise TokenRefused("The ID token is signed with an algorithm this server does not accept")
        kid = header.get("kid")
        try:
            key = await self.issuer.key(kid if isinstance(kid, str) else None, str(alg))
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[str(alg)],
                audience=client_id,
                issuer=self.config.issuer,
                leeway=TOKEN_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except (UnknownKey, jwt.PyJWTError) as exc:
            raise TokenRefused(f"The ID token is not valid ({type(exc).__name__})") from None
        if claims.get("nonce") != nonce:
            raise TokenRefused("The ID token is not the answer to this sign-in (nonce)")
        if "azp" in claims and claims["azp"] != client_id:
            raise TokenRefused("The ID token was issued to another client (azp)")
        if not isinstance(claims.get("sub"), str):
            raise TokenRefused("The ID token names no user (sub)")
        return claims

    # --- introspection (RFC 7662) ----------------------------------------------------------------

    async def _introspect(self, token: str) -> Verified:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._introspected.get(digest)
        if cached is not None and cached[0] > now:
            self._introspected.move_to_end(digest)
            return cached[1]
        assert self.config.client_id is not None and self.config.client_secret is not None
        answer = await self.issuer.post_form(
            "introspection_endpoint",
            {"token": token, "token_type_hint": "access_token"},
            (self.config.client_id, self.config.client_secret),
        )
        if answer.get("active") is not True:
            raise TokenRefused("The access token is not active (expired, revoked or unknown)")
        if "iss" in answer and answer["iss"] != self.config.issuer:
            raise TokenRefused("The access token was issued by another authorization server")
        if self.config.resource not in _audiences(answer.get("aud")):
            raise TokenRefused(
                f"The access token was issued for another resource, not {self.config.resource}"
            )
        expires = answer.get("exp")
        if isinstance(expires, (int, float)) and expires + TOKEN_LEEWAY_SECONDS < now:
            raise TokenRefused("The access token has expired")
        client = answer.get("client_id")
        if not isinstance(client, str) or not isinstance(answer.get("sub"), str):
            raise TokenRefused("The access token names no client (client_id) or no user (sub)")
        verified = self._verified(token, answer, client)
        keep = now + INTROSPECTION_CACHE_SECONDS
        if isinstance(expires, (int, float)):
            keep = min(keep, float(expires))
        self._introspected[digest] = (keep, verified)
        while len(self._introspected) > INTROSPECTION_CACHE_ENTRIES:
            self._introspected.popitem(last=False)
        return verified
