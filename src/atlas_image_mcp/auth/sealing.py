"""Small sealed tokens: a JSON object encrypted and authenticated (AES-256-GCM), with an expiry.

A :class:`Sealer` serves one purpose (the key-linking link, the page's sign-in state, its form),
under its own key derived from a secret of the server (HKDF-SHA256 with the purpose as ``info``),
with the purpose also bound as associated data: a token made for one purpose never opens as
another. What is inside can neither be read nor changed by whoever holds the token, so a link may
carry who it is for without showing it. Expired, altered, foreign or oversized tokens all fail the
same way (:class:`SealError`), in constant time as far as the cipher goes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SealError", "Sealer", "derive_key"]

_VERSION = "1"
_NONCE_BYTES = 12
_MAX_TOKEN_CHARS = 4096


class SealError(ValueError):
    """A token that is not one of ours, was changed, has expired, or is for another purpose."""


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` from ``secret`` (HKDF-SHA256): one secret, independent keys."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"atlas-image-mcp/{purpose}".encode()
    ).derive(secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Seals and opens the tokens of one purpose (see the module docstring)."""

    def __init__(self, secret: bytes, purpose: str, *, clock: Callable[[], float] = time.time) -> None:
        self._aead = AESGCM(derive_key(secret, purpose))
        self._aad = f"atlas-image-mcp/{purpose}/v{_VERSION}".encode()
        self._clock = clock

    def seal(self, payload: dict[str, Any], ttl: float) -> str:
        """A URL-safe token holding ``payload`` for ``ttl`` seconds."""
        body = json.dumps({**payload, "exp": int(self._clock() + ttl)}, separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + _b64(nonce + self._aead.encrypt(nonce, body, self._aad))

    def open(self, token: str) -> dict[str, Any]:
        """The payload of a token this sealer made and that has not expired; SealError otherwise."""
        if not (0 < len(token) <= _MAX_TOKEN_CHARS) or not token.startswith(_VERSION):
            raise SealError("not a token of this server")
        try:
            raw = _unb64(token[len(_VERSION) :])
            body = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad)
            payload = json.loads(body)
        except (InvalidTag, ValueError, binascii.Error):
            raise SealError("not a token of this server") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
            raise SealError("not a token of this server")
        if payload["exp"] < self._clock():
            raise SealError("expired")
        return payload
