"""Linked Atlas keys, encrypted at rest: :class:`KeyVault`.

A key a user links is stored only as the vault sealed it: AES-256-GCM (the ``cryptography``
library) under a key from ``ATLAS_MCP_LINKED_KEY_SECRET``, with a fresh 96-bit nonce each time, and
the owner's principal id as associated data, so a sealed key copied onto another user's row does
not open. The format names its version and which key sealed it::

    v1.<key id: 8 hex digits of SHA-256 of the encryption key>.<base64url(nonce || ciphertext || tag)>

so the secret can be rotated: list the new one first and the old ones after it; every key opens
with the one that sealed it, and :meth:`KeyVault.open` says when a key was sealed with an older one
(the caller seals it again). The store never sees a key in clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KeyVault", "Opened", "VaultError"]

_VERSION = "v1"
_NONCE_BYTES = 12


class VaultError(ValueError):
    """A sealed key that cannot be opened: another user's, altered, or sealed with a key no longer set."""


@dataclass(frozen=True)
class Opened:
    key: str
    #: Sealed with an older encryption key: seal it again with the current one.
    stale: bool


def _key_id(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()[:8]


def _aad(owner: str) -> bytes:
    return b"atlas-image-mcp/linked-key/v1\0" + owner.encode()


class KeyVault:
    def __init__(self, secrets: tuple[bytes, ...]) -> None:
        if not secrets:
            raise ValueError("the vault needs at least one encryption key")
        self._current = _key_id(secrets[0])
        self._ciphers = {_key_id(secret): AESGCM(secret) for secret in secrets}

    def seal(self, key: str, owner: str) -> str:
        """``key`` sealed for ``owner`` (a principal id) with the current encryption key."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, key.encode(), _aad(owner))
        text = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{_VERSION}.{self._current}.{text}"

    def open(self, sealed: str, owner: str) -> Opened:
        version, _, rest = sealed.partition(".")
        key_id, _, text = rest.partition(".")
        cipher = self._ciphers.get(key_id)
        if version != _VERSION or cipher is None:
            raise VaultError("sealed with an encryption key that is not set (or not a sealed key)")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            key = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(owner)).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise VaultError("does not open for this user (altered, or another user's)") from None
        return Opened(key, stale=key_id != self._current)
