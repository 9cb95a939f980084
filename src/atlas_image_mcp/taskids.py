"""Task ids that carry their own state, bound to the caller and signed.

A picture job handed to an MCP task lives at Atlas (its prediction), so its task needs nothing
else to outlive the process that started it: the task id *is* the state (the tool, when it was
created, and what the tool needs to finish the job: the prediction id and the caller's choices),
with an HMAC tag over that state and the caller's identity::

    t1.<base64url(JSON state)>.<base64url(HMAC-SHA256(secret, "t1." + state + NUL + owner)[:16])>

So any process that has the same secret can resolve the id (after a restart, or on another
replica), and an id presented by another caller (another Atlas key) does not verify: it is "not
found", exactly like an id that was never issued. The state is readable by whoever holds the id
(the caller it belongs to); it holds no secret.

Which secret (:func:`task_id_secret`): ``ATLAS_MCP_TASK_SECRET`` when set. Without it, a hosted
server signs with a random key made at start-up (ids then die with the process: set the secret,
the same on every replica, to keep them); over stdio, where there is one user, ids are bound to
the Atlas key but signed with a fixed key, so they survive a restart of the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from .constants import MAX_TASK_ID_CHARS
from .redact import register_secret
from .settings import Settings, env_name

__all__ = ["TaskIds", "task_id_secret"]

logger = logging.getLogger(__name__)

_VERSION = "t1"
_TAG_BYTES = 16  # 128 bits: unguessable, and short enough for an Mcp-Name header
_LOCAL_SECRET = b"atlas-image-mcp/local-task-ids/v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TaskIds:
    """Mint and read self-contained task ids with one secret."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("a task id secret must not be empty")
        self._key = hashlib.sha256(secret).digest()

    def mint(self, state: Mapping[str, Any], owner: str) -> str:
        """The id for ``state`` (JSON-serialisable), valid only when read with the same ``owner``."""
        body = _b64(json.dumps(state, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        task_id = f"{_VERSION}.{body}.{_b64(self._tag(body, owner))}"
        if len(task_id) > MAX_TASK_ID_CHARS:
            raise ValueError(f"task state too large for an id ({len(task_id)} characters)")
        return task_id

    def read(self, task_id: str, owner: str) -> dict[str, Any] | None:
        """The state in ``task_id``, or None when it is malformed, forged, or another owner's."""
        if not isinstance(task_id, str) or len(task_id) > MAX_TASK_ID_CHARS:
            return None
        parts = task_id.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            return None
        _, body, tag = parts
        try:
            given = _unb64(tag)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(given, self._tag(body, owner)):
            return None
        try:
            state = json.loads(_unb64(body))
        except (binascii.Error, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return None
        return state if isinstance(state, dict) else None

    def _tag(self, body: str, owner: str) -> bytes:
        message = f"{_VERSION}.{body}".encode("ascii") + b"\0" + owner.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]


def task_id_secret(settings: Settings, *, remote: bool) -> bytes:
    """The key task ids are signed with (see the module docstring for the three cases)."""
    if settings.task_secret:
        register_secret(settings.task_secret, permanent=True)  # never in a message, whatever happens
        return settings.task_secret.encode("utf-8")
    if not remote:
        return _LOCAL_SECRET
    logger.info(
        f"{env_name('task_secret')} is not set: task ids are signed with a key made at start-up, so a task "
        "cannot be read after a restart or on another replica (set it, the same on every replica, "
        "to allow that)"
    )
    return secrets.token_bytes(32)
