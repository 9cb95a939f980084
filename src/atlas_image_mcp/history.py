"""The pictures each caller made: for ``last``, for variations of our own jobs, and for the gallery.

One :class:`PictureHistory` lives on the :class:`~atlas_image_mcp.runtime.Runtime` and keeps a short,
bounded list per :class:`HistoryScope`: whose it is (the owner: a digest of the caller's Atlas key,
the one identity the server verified) and which of their connections (a name the server gave a
connection that lasts across requests: a stdio process, a streamable-HTTP session, an SSE stream;
empty where every request stands alone, so the owner's requests without a session share one list).
Nothing a client sends names a scope. Scopes least recently used go first once there are too many,
always from the owner that holds the most, so one caller's many sessions push out only its own;
entries go oldest first. It lives in memory only: a restart forgets it, Atlas keeps the
predictions, and nothing in it is ever sent to Atlas.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .constants import HISTORY_MAX_ENTRIES, HISTORY_MAX_SESSIONS
from .render import GenerationResult

__all__ = ["HistoryEntry", "HistoryScope", "PictureHistory"]


@dataclass(frozen=True)
class HistoryScope:
    """Whose pictures these are: an owner the server verified, and one of its connections."""

    #: A digest of the caller's Atlas key (never the key); one owner for the server's own key.
    owner: str
    #: The server's name for a connection that lasts across requests; "" where requests stand alone.
    session: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    """One prediction a picture tool started or collected in this scope."""

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
    """Recent predictions per scope, newest first, bounded in scopes (fairly per owner) and in entries.

    Recording a prediction already known in the scope updates it in place (a job submitted by one
    call and collected by a later one stays one entry, with what it was started with).
    """

    def __init__(
        self, max_entries: int = HISTORY_MAX_ENTRIES, max_sessions: int = HISTORY_MAX_SESSIONS
    ) -> None:
        self._max_entries = max(1, max_entries)
        self._max_sessions = max(1, max_sessions)
        self._scopes: OrderedDict[HistoryScope, list[HistoryEntry]] = OrderedDict()  # each newest first
        self._owners: Counter[str] = Counter()  # scopes held per owner
        self._lock = threading.Lock()

    def record(self, scope: HistoryScope, entry: HistoryEntry) -> None:
        with self._lock:
            entries = self._scopes.pop(scope, None)
            if entries is None:
                entries = []
                self._owners[scope.owner] += 1
            self._scopes[scope] = entries  # most recently used scope last
            for i, old in enumerate(entries):
                if old.prediction_id == entry.prediction_id:
                    entries[i] = _merge(old, entry)
                    break
            else:
                entries.insert(0, entry)
                del entries[self._max_entries :]
            while len(self._scopes) > self._max_sessions:
                self._evict()

    def _evict(self) -> None:
        """Forget the least recently used scope among those of the owners holding the most."""
        most = max(self._owners.values())
        oldest = next(s for s in self._scopes if self._owners[s.owner] == most)
        del self._scopes[oldest]
        self._owners[oldest.owner] -= 1
        if not self._owners[oldest.owner]:
            del self._owners[oldest.owner]

    def entries(self, scope: HistoryScope) -> list[HistoryEntry]:
        """The scope's jobs, newest first."""
        with self._lock:
            return list(self._scopes.get(scope, ()))

    def last(self, scope: HistoryScope) -> HistoryEntry | None:
        """The scope's latest job that produced a picture."""
        return next((e for e in self.entries(scope) if e.outputs), None)

    def find(self, scope: HistoryScope, prediction_id: str) -> HistoryEntry | None:
        return next((e for e in self.entries(scope) if e.prediction_id == prediction_id), None)

    def owns(self, owner: str, prediction_id: str) -> bool:
        """Whether any scope of ``owner`` knows ``prediction_id`` (a job this owner started or collected)."""
        with self._lock:
            return any(
                e.prediction_id == prediction_id
                for scope, entries in self._scopes.items()
                if scope.owner == owner
                for e in entries
            )

    def completed(self, scope: HistoryScope, entry: HistoryEntry, result: GenerationResult) -> None:
        """Record what a finished call returned for ``entry`` (its outputs and saved paths)."""
        self.record(
            scope,
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
