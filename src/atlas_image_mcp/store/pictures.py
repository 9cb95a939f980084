"""The picture history on the store: what each owner made, for ``last``, variations and the gallery.

An *owner* is an opaque name: a user, or one validated session. Each owner keeps its
``pictures_per_owner`` most recent predictions (older ones are dropped on insert), and an owner's
rows go ``pictures_keep_days`` after their last change. Recording a prediction the owner already
has merges into it: what the new record leaves empty (no outputs yet, no prompt) keeps its old
value, and the tool and creation time stay those it was started with. Nothing in it is sent to
Atlas; the lists and the request body are JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .database import Database
from .engine import Row, Tx

__all__ = ["PictureRecord", "Pictures"]

_DAY_MS = 86_400_000
_MAX_TEXT = 64 * 1024  # a prompt or a request body longer than this is not kept whole
_COLUMNS = "prediction_id, created_ms, tool, model, prompt, status, outputs, paths, sources, request_body"


@dataclass(frozen=True)
class PictureRecord:
    """One prediction an owner started or collected."""

    prediction_id: str
    tool: str
    created_ms: int
    model: str | None = None
    prompt: str | None = None
    status: str = "created"
    #: The output URLs at Atlas, in order; empty while the job runs.
    outputs: tuple[str, ...] = ()
    #: The saved copy of each output (a path), or None where it was not saved.
    paths: tuple[str | None, ...] = ()
    #: The input pictures (URLs) of an edit or a variation.
    sources: tuple[str, ...] = ()
    #: The body it was submitted with (JSON text); None when not known here.
    request_body: str | None = None


class Pictures:
    def __init__(self, db: Database, *, per_owner: int) -> None:
        self._db = db
        self._per_owner = max(1, per_owner)

    async def record(self, owner: str, record: PictureRecord) -> None:
        """Add a prediction to the owner's history, or merge into the one it has."""
        now = self._db.now_ms()
        body = (
            record.request_body
            if record.request_body is None or len(record.request_body) <= _MAX_TEXT
            else None
        )
        values = (
            owner, record.prediction_id, record.created_ms, now, record.tool[:64], record.model,
            None if record.prompt is None else record.prompt[:_MAX_TEXT], record.status[:32],
            json.dumps(list(record.outputs)), json.dumps(list(record.paths)),
            json.dumps(list(record.sources)),
            body,
        )  # fmt: skip

        async def write(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO pictures (owner, prediction_id, created_ms, updated_ms, tool, model, prompt, "
                "status, outputs, paths, sources, request_body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (owner, prediction_id) DO UPDATE SET updated_ms = excluded.updated_ms, "
                "model = COALESCE(excluded.model, pictures.model), "
                "prompt = COALESCE(excluded.prompt, pictures.prompt), status = excluded.status, "
                "outputs = CASE WHEN excluded.outputs = '[]' THEN pictures.outputs "
                "ELSE excluded.outputs END, "
                "paths = CASE WHEN excluded.paths = '[]' THEN pictures.paths ELSE excluded.paths END, "
                "sources = CASE WHEN excluded.sources = '[]' THEN pictures.sources "
                "ELSE excluded.sources END, "
                "request_body = COALESCE(excluded.request_body, pictures.request_body)",
                values,
            )
            await tx.execute(
                "DELETE FROM pictures WHERE owner = ? AND prediction_id NOT IN (SELECT prediction_id FROM "
                "pictures WHERE owner = ? ORDER BY created_ms DESC, prediction_id DESC LIMIT ?)",
                (owner, owner, self._per_owner),
            )

        await self._db.run(write)

    async def entries(self, owner: str, limit: int | None = None) -> list[PictureRecord]:
        """The owner's predictions, newest first."""
        count = self._per_owner if limit is None else max(0, min(limit, self._per_owner))
        return await self._select(
            f"SELECT {_COLUMNS} FROM pictures WHERE owner = ? ORDER BY created_ms DESC, prediction_id DESC "
            "LIMIT ?",
            (owner, count),
        )

    async def find(self, owner: str, prediction_id: str) -> PictureRecord | None:
        found = await self._select(
            f"SELECT {_COLUMNS} FROM pictures WHERE owner = ? AND prediction_id = ?", (owner, prediction_id)
        )
        return found[0] if found else None

    async def last(self, owner: str) -> PictureRecord | None:
        """The owner's latest prediction that produced a picture."""
        found = await self._select(
            f"SELECT {_COLUMNS} FROM pictures WHERE owner = ? AND outputs <> '[]' "
            "ORDER BY created_ms DESC, prediction_id DESC LIMIT 1",
            (owner,),
        )
        return found[0] if found else None

    async def prune(self, keep_days: int) -> int:
        cutoff = self._db.now_ms() - keep_days * _DAY_MS
        return await self._db.run(
            lambda tx: tx.execute("DELETE FROM pictures WHERE updated_ms < ?", (cutoff,))
        )

    async def _select(self, sql: str, params: Sequence[str | int]) -> list[PictureRecord]:
        rows = await self._db.run(lambda tx: tx.rows(sql, params))
        return [_record(row) for row in rows]


def _record(row: Row) -> PictureRecord:
    pid, created, tool, model, prompt, status, outputs, paths, sources, body = row
    return PictureRecord(
        prediction_id=str(pid),
        tool=str(tool),
        created_ms=int(created),
        model=model,
        prompt=prompt,
        status=str(status),
        outputs=tuple(str(u) for u in _list(outputs)),
        paths=tuple(None if p is None else str(p) for p in _list(paths)),
        sources=tuple(str(u) for u in _list(sources)),
        request_body=body,
    )


def _list(text: Any) -> list[Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []
