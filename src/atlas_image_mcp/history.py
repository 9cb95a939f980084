"""The pictures each session made: for ``last``, for variations of our own jobs, and for the gallery.

Kept in memory, bounded (sessions least recently used first, entries oldest first), keyed by
:func:`session_key`: the MCP session id when the transport has one, else a digest of the caller's
own Atlas key in per-user-key mode (stateless hosting has no session), else one local session
over stdio. Nothing here is needed to collect a picture: Atlas keeps the predictions, this only
remembers what a session did.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .render import GenerationResult

__all__ = ["HistoryEntry", "PictureHistory", "session_key"]

_MAX_SESSIONS = 1024
_MAX_ENTRIES = 100
SESSION_HEADER = "mcp-session-id"
LOCAL = "local"


def session_key(headers: Mapping[str, str] | None, user_key: str | None = None) -> str:
    """Which session a request belongs to (never a key itself: a digest of it)."""
    session_id = (headers or {}).get(SESSION_HEADER)
    if session_id:
        return f"session:{session_id[:128]}"
    if user_key:
        return "key:" + hashlib.sha256(user_key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return LOCAL


@dataclass(frozen=True)
class HistoryEntry:
    """One job a session started, as far as this server saw it."""

    prediction_id: str
    tool: str
    model: str
    prompt: str | None
    request_body: dict[str, Any] | None  # None: not known here (a job collected, not started, here)
    outputs: tuple[str, ...] = ()
    paths: tuple[str | None, ...] = ()
    status: str = "created"
    sources: tuple[str, ...] = ()
    created_at: float = field(default_factory=time.time)


class PictureHistory:
    """Per-session lists of :class:`HistoryEntry`, newest last; thread-safe, bounded."""

    def __init__(self, *, max_sessions: int = _MAX_SESSIONS, max_entries: int = _MAX_ENTRIES) -> None:
        self._sessions: OrderedDict[str, deque[HistoryEntry]] = OrderedDict()
        self._max_sessions = max_sessions
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def record(self, session: str, entry: HistoryEntry) -> None:
        """Add ``entry``, or replace the session's earlier entry of the same prediction."""
        with self._lock:
            entries = self._sessions.pop(session, None) or deque(maxlen=self._max_entries)
            kept = [e for e in entries if e.prediction_id != entry.prediction_id]
            entries = deque([*kept, entry], maxlen=self._max_entries)
            self._sessions[session] = entries
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)

    def entries(self, session: str) -> list[HistoryEntry]:
        """The session's jobs, newest first."""
        with self._lock:
            return list(reversed(self._sessions.get(session, ())))

    def last(self, session: str) -> HistoryEntry | None:
        """The session's latest job that produced a picture."""
        return next((e for e in self.entries(session) if e.outputs), None)

    def find(self, session: str, prediction_id: str) -> HistoryEntry | None:
        return next((e for e in self.entries(session) if e.prediction_id == prediction_id), None)

    def completed(self, session: str, entry: HistoryEntry, result: GenerationResult) -> None:
        """Record what a finished call returned for ``entry`` (its outputs and saved paths)."""
        self.record(
            session,
            replace(
                entry,
                outputs=tuple(o.url for o in result.outputs),
                paths=tuple(o.path for o in result.outputs),
                status=result.status,
            ),
        )
