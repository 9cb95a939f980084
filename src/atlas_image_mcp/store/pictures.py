"""The picture history on the store: what each owner made, for ``last``, variations and the gallery.

An *owner* is an opaque name (an identity); a *scope* is one of its connections ('' where requests
stand alone, so those share one list). Each (owner, scope) keeps its ``pictures_per_owner`` most
recent predictions (older ones are dropped on insert). The scopes are bounded too: past
``picture_scopes`` in all, the least recently used scope of the owner holding the most goes, so
one owner opening many connections pushes out only its own. Rows also go ``pictures_keep_days``
after their last change. Recording a prediction the scope already has merges into it: what the new
record leaves empty (no outputs yet, no prompt) keeps its old value, and the tool, creation time
and batch stay those it was started with. Nothing in it is sent to Atlas; the lists and the request
body are JSON text.
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
_COLUMNS = (
    "prediction_id, created_ms, tool, model, prompt, status, outputs, paths, sources, request_body, batch"
)


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
    #: The batch it was one job of (shared by the batch's jobs), if any.
    batch: str | None = None


class Pictures:
    def __init__(self, db: Database, *, per_owner: int, scopes: int) -> None:
        self._db = db
        self._per_owner = max(1, per_owner)
        self._scopes = max(1, scopes)
        self._touched = 0

    async def record(
        self, owner: str, record: PictureRecord, *, scope: str = "", keep: int | None = None,
        scopes: int | None = None,
    ) -> None:  # fmt: skip
        """Add a prediction to the owner's scope, or merge into the one it has.

        ``keep`` and ``scopes`` replace the store's bounds (pictures per scope, scopes in all).
        """
        now = self._db.now_ms()
        per_scope = self._per_owner if keep is None else max(1, keep)
        most = self._scopes if scopes is None else max(1, scopes)
        # strictly increasing in this process, the clock's order across processes
        self._touched = touched = max(now * 1000, self._touched + 1)
        body = (
            record.request_body
            if record.request_body is None or len(record.request_body) <= _MAX_TEXT
            else None
        )
        values = (
            owner, scope, record.prediction_id, record.created_ms, now, record.tool[:64], record.model,
            None if record.prompt is None else record.prompt[:_MAX_TEXT], record.status[:32],
            json.dumps(list(record.outputs)), json.dumps(list(record.paths)),
            json.dumps(list(record.sources)),
            body, None if record.batch is None else record.batch[:64],
        )  # fmt: skip

        async def write(tx: Tx) -> None:
            fresh = not await tx.execute(
                "UPDATE picture_scopes SET touched_us = ? WHERE owner = ? AND scope = ?",
                (touched, owner, scope),
            ) and await tx.execute(
                "INSERT INTO picture_scopes (owner, scope, touched_us) VALUES (?, ?, ?) "
                "ON CONFLICT (owner, scope) DO NOTHING",
                (owner, scope, touched),
            )
            await tx.execute(
                "INSERT INTO pictures (owner, scope, prediction_id, created_ms, updated_ms, tool, model, "
                "prompt, status, outputs, paths, sources, request_body, batch) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (owner, scope, prediction_id) DO UPDATE SET updated_ms = excluded.updated_ms, "
                "model = COALESCE(excluded.model, pictures.model), "
                "prompt = COALESCE(excluded.prompt, pictures.prompt), status = excluded.status, "
                "outputs = CASE WHEN excluded.outputs = '[]' THEN pictures.outputs "
                "ELSE excluded.outputs END, "
                "paths = CASE WHEN excluded.paths = '[]' THEN pictures.paths ELSE excluded.paths END, "
                "sources = CASE WHEN excluded.sources = '[]' THEN pictures.sources "
                "ELSE excluded.sources END, "
                "request_body = COALESCE(excluded.request_body, pictures.request_body), "
                "batch = COALESCE(pictures.batch, excluded.batch)",
                values,
            )
            await tx.execute(
                "DELETE FROM pictures WHERE owner = ? AND scope = ? AND prediction_id NOT IN (SELECT "
                "prediction_id FROM pictures WHERE owner = ? AND scope = ? "
                "ORDER BY created_ms DESC, prediction_id DESC LIMIT ?)",
                (owner, scope, owner, scope, per_scope),
            )
            if fresh:
                await _evict(tx, most)

        await self._db.run_together(write)

    async def entries(self, owner: str, limit: int | None = None, *, scope: str = "") -> list[PictureRecord]:
        """The scope's predictions, newest first."""
        count = self._per_owner if limit is None else max(0, limit)
        return await self._select(
            f"SELECT {_COLUMNS} FROM pictures WHERE owner = ? AND scope = ? "
            "ORDER BY created_ms DESC, prediction_id DESC LIMIT ?",
            (owner, scope, count),
        )

    async def find(self, owner: str, prediction_id: str, *, scope: str = "") -> PictureRecord | None:
        found = await self._select(
            f"SELECT {_COLUMNS} FROM pictures WHERE owner = ? AND scope = ? AND prediction_id = ?",
            (owner, scope, prediction_id),
        )
        return found[0] if found else None

    async def last(self, owner: str, *, scope: str = "") -> PictureRecord | None:
        """The scope's latest prediction that produced a picture."""
        found = await self._select(
            f"SELECT {_COLUMNS} FROM pictures WHERE owner = ? AND scope = ? AND outputs <> '[]' "
            "ORDER BY created_ms DESC, prediction_id DESC LIMIT 1",
            (owner, scope),
        )
        return found[0] if found else None

    async def owns(self, owner: str, prediction_id: str) -> bool:
        """Whether any scope of ``owner`` has ``prediction_id``."""
        found = await self._db.run(
            lambda tx: tx.rows(
                "SELECT 1 FROM pictures WHERE owner = ? AND prediction_id = ? LIMIT 1", (owner, prediction_id)
            )
        )
        return bool(found)

    async def prune(self, keep_days: int) -> int:
        cutoff = self._db.now_ms() - keep_days * _DAY_MS

        async def body(tx: Tx) -> int:
            gone = await tx.execute("DELETE FROM pictures WHERE updated_ms < ?", (cutoff,))
            await tx.execute(
                "DELETE FROM picture_scopes WHERE touched_us < ? AND NOT EXISTS (SELECT 1 FROM pictures p "
                "WHERE p.owner = picture_scopes.owner AND p.scope = picture_scopes.scope)",
                (cutoff * 1000,),
            )
            return gone

        return await self._db.run(body)

    async def _select(self, sql: str, params: Sequence[str | int]) -> list[PictureRecord]:
        rows = await self._db.run(lambda tx: tx.rows(sql, params))
        return [_record(row) for row in rows]


async def _evict(tx: Tx, most: int) -> None:
    """Past ``most`` scopes, drop the least recently used scope of the owner holding the most."""
    ((count,),) = await tx.rows("SELECT COUNT(*) FROM picture_scopes")
    for _ in range(int(count) - most):
        found = await tx.rows(
            "SELECT s.owner, s.scope FROM picture_scopes s JOIN (SELECT owner, COUNT(*) AS n FROM "
            "picture_scopes GROUP BY owner) c ON c.owner = s.owner WHERE c.n = (SELECT MAX(n) FROM "
            "(SELECT COUNT(*) AS n FROM picture_scopes GROUP BY owner) m) ORDER BY s.touched_us LIMIT 1"
        )
        if not found:
            return
        owner, scope = found[0]
        await tx.execute("DELETE FROM pictures WHERE owner = ? AND scope = ?", (owner, scope))
        await tx.execute("DELETE FROM picture_scopes WHERE owner = ? AND scope = ?", (owner, scope))


def _record(row: Row) -> PictureRecord:
    pid, created, tool, model, prompt, status, outputs, paths, sources, body, batch = row
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
        batch=batch,
    )


def _list(text: Any) -> list[Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []
