"""This session's pictures: what each picture tool made, newest first, for the viewer's gallery.

One :class:`PictureHistory` lives on the :class:`~atlas_image_mcp.runtime.Runtime` and keeps a short,
bounded list per session (:func:`session_key`). It lives in memory only: a restart forgets it, and
nothing in it is ever sent to Atlas.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .constants import HISTORY_MAX_ENTRIES, HISTORY_MAX_SESSIONS, LOCAL_SESSION, SESSION_ID_HEADER

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

    from .runtime import Runtime

__all__ = ["HistoryEntry", "PictureHistory", "session_key"]


@dataclass(frozen=True)
class HistoryEntry:
    """One prediction a picture tool started or collected in this session."""

    prediction_id: str
    tool: str
    created: float
    model: str | None = None
    prompt: str | None = None
    #: The output URLs at Atlas (temporary), in order; empty while the job runs.
    outputs: tuple[str, ...] = ()
    #: The saved copy of each output (absolute path), or None where it was not saved.
    paths: tuple[str | None, ...] = ()
    request_body: Mapping[str, Any] | None = field(default=None, compare=False)


class PictureHistory:
    """Recent predictions per session, newest first, bounded in sessions and in entries.

    Recording a prediction already known in the session updates it in place (a job submitted by
    one call and collected by a later one stays one entry, with the prompt it was started with).
    """

    def __init__(
        self, max_entries: int = HISTORY_MAX_ENTRIES, max_sessions: int = HISTORY_MAX_SESSIONS
    ) -> None:
        self._max_entries = max(1, max_entries)
        self._max_sessions = max(1, max_sessions)
        self._sessions: OrderedDict[str, list[HistoryEntry]] = OrderedDict()
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

    def last(self, session: str) -> HistoryEntry | None:
        with self._lock:
            entries = self._sessions.get(session)
            return entries[0] if entries else None

    def entries(self, session: str) -> list[HistoryEntry]:
        """Newest first."""
        with self._lock:
            return list(self._sessions.get(session, ()))


def _merge(old: HistoryEntry, new: HistoryEntry) -> HistoryEntry:
    """``new``, keeping what only ``old`` knew (the prompt and body it was started with, its time)."""
    return replace(
        new,
        tool=old.tool,
        created=old.created,
        model=new.model or old.model,
        prompt=new.prompt if new.prompt is not None else old.prompt,
        outputs=new.outputs or old.outputs,
        paths=new.paths or old.paths,
        request_body=new.request_body if new.request_body is not None else old.request_body,
    )


def session_key(ctx: Context[Runtime, Any]) -> str:
    """Whose pictures these are: the MCP session when the transport has one, else the caller's key.

    Over streamable HTTP the ``mcp-session-id`` header names the session; a stateless call in
    per-user-key mode falls back to a digest of the caller's key (never the key itself); stdio,
    and a server with one key of its own, is one local session.
    """
    runtime = ctx.request_context.lifespan_context
    headers = ctx.headers
    if headers:
        session = next((v for k, v in headers.items() if k.lower() == SESSION_ID_HEADER), None)
        if session:
            return "session:" + session[:200]
    if runtime.per_user_keys:
        key = runtime.current_key(headers)
        if key:
            return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return LOCAL_SESSION
