"""Keeping secrets out of every message: known keys, :func:`redact` and :func:`redact_tree`.

The server's own key and bearer token are registered for good. A per-user key of the hosted mode
is removed from everything said while its own request runs (:func:`secret_in_scope`: that user's
answers, notifications and the log lines written for the request), whether or not Atlas knows it.
It is registered for every message of the process only once Atlas has accepted it, never when it
could be ordinary text (a model id, a URI or a URL prefix: anything with ``/`` or ``:``), and the
table keeps the :data:`~atlas_image_mcp.constants.MAX_REMEMBERED_KEYS` most recently used (their
shape is also caught by the ``Bearer``/``apikey-`` patterns below). So a client cannot make an
ordinary word a "secret" (and censor other users' messages), nor fill the table.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .constants import MAX_REMEMBERED_KEYS, MAX_USER_KEY_CHARS, MIN_USER_KEY_CHARS

__all__ = [
    "REDACTED",
    "forget_secret",
    "key_digest",
    "preview",
    "redact",
    "redact_log",
    "redact_tree",
    "redacted_body",
    "register_secret",
    "secret_in_scope",
]

REDACTED = "[redacted]"
_MAX_TEMPORARY_SECRETS = MAX_REMEMBERED_KEYS
_MIN_SECRET_CHARS = 4  # the operator's own key or token: whatever they chose

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
            if known:
                return  # a key seen before: the same set of secrets, so no eviction and no re-sort
            if len(self._secrets) > _MAX_TEMPORARY_SECRETS:
                temporary = [k for k, keep in self._secrets.items() if not keep]
                for old in temporary[: max(0, len(temporary) - _MAX_TEMPORARY_SECRETS)]:
                    del self._secrets[old]
            self._reorder()

    def remove(self, value: str) -> None:
        """Forget a temporary secret (a permanent one stays)."""
        with self._lock:
            if self._secrets.get(value) is False:
                del self._secrets[value]
                self._reorder()

    def _reorder(self) -> None:
        # longest first, so a key that contains another is replaced whole
        self.by_length = tuple(sorted(self._secrets, key=len, reverse=True))


_registry = _Registry()
#: The caller's own key while its request runs (every task the request starts inherits it).
_SCOPED: ContextVar[tuple[str, ...]] = ContextVar("atlas_image_mcp.redact.scoped", default=())
#: What a string that is ordinary text contains (model ids, URIs, URL prefixes): never a shared secret.
_NOT_A_KEY = ("/", ":")


@contextmanager
def secret_in_scope(value: str | None) -> Iterator[None]:
    """Remove ``value`` (the caller's own key) from everything :func:`redact` sees in this block."""
    if not value or len(value) < _MIN_SECRET_CHARS:
        yield
        return
    token = _SCOPED.set((value, *_SCOPED.get()))
    try:
        yield
    finally:
        _SCOPED.reset(token)


def _secrets() -> Iterator[str]:
    yield from _SCOPED.get()
    yield from _registry.by_length


def register_secret(value: str | None, *, permanent: bool = False) -> None:
    """Remember a key so that :func:`redact` removes it from any text, wherever it appears.

    ``permanent``: the operator's own key or token. Any other (a per-user key Atlas has accepted) is
    remembered only when its length is plausible for a key and it cannot be ordinary text (no ``/``
    or ``:``, which model ids, URIs and URL prefixes have), and among the most recent few only.
    """
    if not value:
        return
    if permanent:
        if len(value) >= _MIN_SECRET_CHARS:
            _registry.add(value, True)
    elif MIN_USER_KEY_CHARS <= len(value) <= MAX_USER_KEY_CHARS and not any(c in value for c in _NOT_A_KEY):
        _registry.add(value, False)


def forget_secret(value: str | None) -> None:
    if value:
        _registry.remove(value)


def key_digest(key: str) -> str:
    """What stands for an API key wherever one must be told apart from another: its SHA-256, in hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def redact(text: Any) -> str:
    """``str(text)`` with bearer tokens, ``apikey-...`` values and every registered key removed."""
    out = str(text)
    for secret in _secrets():
        if secret in out:
            out = out.replace(secret, REDACTED)
    out = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", out)
    out = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}", out)
    return _KEYLIKE.sub(REDACTED, out)


_QUERY = re.compile(r"(?<=[\w/])\?[^\s\"'<>]+")


def redact_log(text: Any) -> str:
    """:func:`redact` for a log line, which also never shows a query string (an SSE session id,
    a signed URL's signature)."""
    return _QUERY.sub("?...", redact(text))


def _leaks(text: str) -> bool:
    if any(secret in text for secret in _secrets()):
        return True
    return bool(_BEARER.search(text) or _HEADER.search(text) or _KEYLIKE.search(text))


#: Keys whose string values are binary payloads (base64 pictures): never text, never scanned.
_BINARY_KEYS = frozenset({"blob"})
_BINARY_BLOCKS = frozenset({"image", "audio"})


def _is_binary_block(value: dict[Any, Any]) -> bool:
    kind = value.get("type")  # a JSON Schema's "type" may be a list: not a content block
    return isinstance(kind, str) and kind in _BINARY_BLOCKS


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        binary = _is_binary_block(value)
        for key, item in value.items():
            if key in _BINARY_KEYS or (binary and key == "data"):
                continue
            yield from _texts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _texts(item)


def _rewrite(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        binary = _is_binary_block(value)
        return {
            key: item if key in _BINARY_KEYS or (binary and key == "data") else _rewrite(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_rewrite(item) for item in value]
    return value


def redact_tree(value: Any) -> Any:
    """A JSON-like value (a result on its way out) with every secret removed from every string.

    Base64 payloads (``data`` of image and audio blocks, ``blob`` of resources) are left alone.
    The scan is one pass over the strings; the value is copied only when something matched.
    """
    if not any(_leaks(text) for text in _texts(value)):
        return value
    return _rewrite(value)


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
