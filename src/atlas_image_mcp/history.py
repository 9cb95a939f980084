"""The pictures each session made: for ``last``, for variations of our own jobs, and for the gallery.

One :class:`PictureHistory` lives on the :class:`~atlas_image_mcp.runtime.Runtime` and keeps a short,
bounded list per session (sessions least recently used first out, entries oldest first out), keyed
by :func:`session_key`: the MCP session id when the transport has one, else a digest of the
caller's own Atlas key in per-user-key mode (stateless hosting has no session), else one local
session. It lives in memory only: a restart forgets it, Atlas keeps the predictions, and nothing in
it is ever sent to Atlas.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .constants import HISTORY_MAX_ENTRIES, HISTORY_MAX_SESSIONS, LOCAL_SESSION, SESSION_ID_HEADER
from .redact import key_digest
from .render import GenerationResult

__all__ = ["HistoryEntry", "PictureHistory", "session_key"]


def session_key(headers: Mapping[str, str] | None, user_key: str | None = None) -> str:
    """Whose pictures these are (never a key itself: a digest of it)."""
    session = next((v for k, v in (headers or {}).items() if k.lower() == SESSION_ID_HEADER), None)
    if session:
        return "session:" + session[:200]
    if user_key:
        return "key:" + key_digest(user_key)[:32]
    return LOCAL_SESSION


@dataclass(frozen=True)
class HistoryEntry:
    """One prediction a picture tool started or collected in this session."""

    prediction_id: str
    tool: str
    created: float = field(default_factory=time.time)
    model: str | None = None
    prompt: str | None = None
    #: The output URLs at Atlas (temporary), in order; empty while the job runs.
    outputs: tuple[str, ...] = ()
    #: The saved copy of each output (absolute path), or None where it was not saved.
    paths: tuple[str | None, ...] = ()
    #: The body it was submitted with; None when not known here (a job collected, not started, here).
    request_body: Mapping[str, Any] | None = field(default=None, compare=False)
    status: str = "created"
    #: The input pictures (URLs) of an edit or a variation.
    sources: tuple[str, ...] = ()
    #: The batch it was one job of (the batch's id, shared by its jobs), if any.
    batch: str | None = None


class PictureHistory:
    """Recent predictions per session, newest first, bounded in sessions and in entries.

    Recording a prediction already known in the session updates it in place (a job submitted by
    one call and collected by a later one stays one entry, with what it was started with).
    """

    def __init__(
        self, max_entries: int = HISTORY_MAX_ENTRIES, max_sessions: int = HISTORY_MAX_SESSIONS
    ) -> None:
        self._max_entries = max(1, max_entries)
        self._max_sessions = max(1, max_sessions)
        self._sessions: OrderedDict[str, list[HistoryEntry]] = OrderedDict()  # each newest first
        self._lock = threading.Lock()

    def record(self, session: str, entry: HistoryEntry) -> None:
        with self._lock:
            entries = self._sessions.pop(session, [])
            self._sessions[session] = entries  # most recently used session last
            for i, old in enumerate(entries):
                if old.prediction_id == entry.prediction_id:
                    entries[i] = _merge(old, entry)
                    break
            else:
                entries.insert(0, entry)
                del entries[self._max_entries :]
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)

    def entries(self, session: str) -> list[HistoryEntry]:
        """The session's jobs, newest first."""
        with self._lock:
            return list(self._sessions.get(session, ()))

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


def _merge(old: HistoryEntry, new: HistoryEntry) -> HistoryEntry:
    """``new``, keeping what only ``old`` knew (the tool, prompt, body and inputs it was started with)."""
    return replace(
        new,
        tool=old.tool,
        created=old.created,
        model=new.model or old.model,
        prompt=new.prompt if new.prompt is not None else old.prompt,
        outputs=new.outputs or old.outputs,
        paths=new.paths or old.paths,
        request_body=new.request_body if new.request_body is not None else old.request_body,
        sources=new.sources or old.sources,
        batch=old.batch or new.batch,
    )
