"""The pictures each caller made: for ``last``, for variations of our own jobs, and for the gallery.

A :class:`PictureHistory` keeps, in the server's store (:mod:`atlas_image_mcp.store.pictures`), a
short, bounded list per :class:`HistoryScope`: whose it is (the owner: a digest of the caller's
Atlas key, the one identity the server verified) and which of their connections (a name the server
gave a connection that lasts across requests: a stdio process, a streamable-HTTP session, an SSE
stream; empty where every request stands alone, so the owner's requests without a session share
one list, on every replica that shares the store). Nothing a client sends names a scope. Scopes
least recently added to go first once there are too many, always from the owner that holds the
most, so one caller's many sessions push out only its own; entries go oldest first. Every read is
a read of the store (nothing is cached here, so no replica answers from an old or a foreign copy).
Nothing in it is ever sent to Atlas; Atlas keeps the predictions themselves.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .constants import HISTORY_MAX_ENTRIES, HISTORY_MAX_SESSIONS
from .errors import LedgerError
from .render import GenerationResult
from .shared import SharedStore
from .store import PictureRecord, locate

__all__ = ["HistoryEntry", "HistoryScope", "PictureHistory"]

logger = logging.getLogger(__name__)


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
    call and collected by a later one stays one entry, with what it was started with). ``store``:
    the server's; without one the history opens its own, in memory (close it with :meth:`aclose`).
    """

    def __init__(
        self,
        store: SharedStore | None = None,
        *,
        max_entries: int = HISTORY_MAX_ENTRIES,
        max_sessions: int = HISTORY_MAX_SESSIONS,
    ) -> None:
        self._own = store is None
        self._store = store or SharedStore(locate("sqlite:///:memory:", default_path=None))
        self._max_entries = max(1, max_entries)
        self._max_sessions = max(1, max_sessions)

    async def record(self, scope: HistoryScope, entry: HistoryEntry) -> None:
        """Add ``entry`` to the scope (or merge it into the one it has). Never fails the call: every
        entry is about a prediction that exists, whose answer matters more than remembering it."""
        try:
            pictures = (await self._store.get()).pictures
            await pictures.record(scope.owner, _record_of(entry), scope=scope.session,
                                  keep=self._max_entries, scopes=self._max_sessions)  # fmt: skip
        except LedgerError as err:
            logger.warning("prediction %s not kept in the history: %s", entry.prediction_id, err.message)

    async def entries(self, scope: HistoryScope) -> list[HistoryEntry]:
        """The scope's jobs, newest first."""
        pictures = (await self._store.get()).pictures
        found = await pictures.entries(scope.owner, self._max_entries, scope=scope.session)
        return [_entry_of(record) for record in found]

    async def last(self, scope: HistoryScope) -> HistoryEntry | None:
        """The scope's latest job that produced a picture."""
        found = await (await self._store.get()).pictures.last(scope.owner, scope=scope.session)
        return _entry_of(found) if found is not None else None

    async def find(self, scope: HistoryScope, prediction_id: str) -> HistoryEntry | None:
        pictures = (await self._store.get()).pictures
        found = await pictures.find(scope.owner, prediction_id, scope=scope.session)
        return _entry_of(found) if found is not None else None

    async def lookup(self, scope: HistoryScope, prediction_id: str) -> HistoryEntry | None:
        """:meth:`find` for a call that spends nothing: None while the store cannot be read."""
        try:
            return await self.find(scope, prediction_id)
        except LedgerError as err:
            logger.info("history not read for %s: %s", prediction_id, type(err).__name__)
            return None

    async def owns(self, owner: str, prediction_id: str) -> bool:
        """Whether any scope of ``owner`` knows ``prediction_id`` (a job this owner started or collected)."""
        return await (await self._store.get()).pictures.owns(owner, prediction_id)

    async def completed(self, scope: HistoryScope, entry: HistoryEntry, result: GenerationResult) -> None:
        """Record what a finished call returned for ``entry`` (its outputs and saved paths)."""
        await self.record(
            scope,
            replace(
                entry,
                outputs=tuple(o.url for o in result.outputs),
                paths=tuple(o.path for o in result.outputs),
                status=result.status,
            ),
        )

    async def aclose(self) -> None:
        """Close the store this history opened itself (the server's is closed by the server)."""
        if self._own:
            await self._store.aclose()


def _record_of(entry: HistoryEntry) -> PictureRecord:
    body = entry.request_body
    return PictureRecord(
        prediction_id=entry.prediction_id,
        tool=entry.tool,
        created_ms=int(round(entry.created * 1000)),
        model=entry.model,
        prompt=entry.prompt,
        status=entry.status,
        outputs=entry.outputs,
        paths=entry.paths,
        sources=entry.sources,
        request_body=json.dumps(dict(body), separators=(",", ":"), default=str) if body is not None else None,
        batch=entry.batch,
    )


def _entry_of(record: PictureRecord) -> HistoryEntry:
    return HistoryEntry(
        prediction_id=record.prediction_id,
        tool=record.tool,
        created=record.created_ms / 1000,
        model=record.model,
        prompt=record.prompt,
        outputs=record.outputs,
        paths=record.paths,
        request_body=_body(record.request_body),
        status=record.status,
        sources=record.sources,
        batch=record.batch,
    )


def _body(text: str | None) -> Mapping[str, Any] | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
