"""Keeping secrets out of every message: a registry of known keys and :func:`redact`.

The server's own key is registered for good; per-user keys of the hosted mode are kept for the
most recent users (their shape is also caught by the ``Bearer``/``apikey-`` patterns below).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

__all__ = ["REDACTED", "forget_secret", "preview", "redact", "redacted_body", "register_secret"]

REDACTED = "[redacted]"
_MAX_TEMPORARY_SECRETS = 4096
_MIN_SECRET_CHARS = 4

# A credential never starts with "<" (a placeholder such as "<token>" in our own help texts) and is not
# an auth-param such as realm="..." (a WWW-Authenticate challenge): those are left as they are.
_NOT_A_CREDENTIAL = r"(?!\[redacted\]|<|realm=)"
_BEARER = re.compile(r"(?i)\b(bearer)\s+" + _NOT_A_CREDENTIAL + r"[^\s\"',;]+")
_KEYLIKE = re.compile(r"\bapikey-[A-Za-z0-9_\-]{4,}")
_HEADER = re.compile(
    r"(?i)(x-atlas-api-key|authorization)([\"']?\s*[:=]\s*[\"']?)"  # the header name and separator
    r"((?:bearer|basic|token)\s+)?"  # an optional scheme, kept
    r"(?!\[redacted\]|<|(?:bearer|basic|token)\s)[^\s\"',;]+"  # the credential
)


class _Registry:
    """Known secrets, permanent or temporary (evicted oldest first), and their longest-first order."""

    def __init__(self) -> None:
        self._secrets: dict[str, bool] = {}  # value -> permanent, in least-recently-registered order
        self.by_length: tuple[str, ...] = ()  # read by every redact(); rebuilt only on change
        self._lock = threading.Lock()

    def add(self, value: str, permanent: bool) -> None:
        with self._lock:
            known = value in self._secrets
            self._secrets[value] = permanent or self._secrets.pop(value, False)  # re-inserted last: LRU
            if known and len(self._secrets) <= _MAX_TEMPORARY_SECRETS:
                return  # the common case (a key seen before): no scan, no re-sort
            if len(self._secrets) > _MAX_TEMPORARY_SECRETS:
                temporary = [k for k, keep in self._secrets.items() if not keep]
                for old in temporary[: max(0, len(temporary) - _MAX_TEMPORARY_SECRETS)]:
                    del self._secrets[old]
            self._reorder()

    def remove(self, value: str) -> None:
        with self._lock:
            self._secrets.pop(value, None)
            self._reorder()

    def _reorder(self) -> None:
        # longest first, so a key that contains another is replaced whole
        self.by_length = tuple(sorted(self._secrets, key=len, reverse=True))


_registry = _Registry()


def register_secret(value: str | None, *, permanent: bool = False) -> None:
    """Remember a key so that :func:`redact` removes it from any text, wherever it appears."""
    if value and len(value) >= _MIN_SECRET_CHARS:
        _registry.add(value, permanent)


def forget_secret(value: str | None) -> None:
    if value:
        _registry.remove(value)


def redact(text: Any) -> str:
    """``str(text)`` with bearer tokens, ``apikey-...`` values and every registered key removed."""
    out = str(text)
    for secret in _registry.by_length:
        if secret in out:
            out = out.replace(secret, REDACTED)
    out = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", out)
    out = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}", out)
    return _KEYLIKE.sub(REDACTED, out)


def redacted_body(body: Any) -> Any:
    """A copy of an upstream body with any key removed (upstream errors sometimes echo the request)."""
    if body is None or isinstance(body, (int, float, bool)):
        return body
    if isinstance(body, str):
        return redact(body)
    try:
        return json.loads(redact(json.dumps(body)))
    except (TypeError, ValueError):
        return redact(repr(body))


def preview(body: Any, limit: int = 300) -> str:
    """One redacted line of at most ``limit`` characters."""
    text = redact(body if isinstance(body, str) else repr(body))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
