"""Task state on the store: what a task needs that does not fit in its id, until it expires.

Each row belongs to an owner (the caller that started the task): another owner neither reads nor
changes it. A row past its expiry reads as absent and is dropped by the store's upkeep. The state
is text (JSON, as the task runtime writes it), bounded in size.
"""

from __future__ import annotations

from .database import Database
from .engine import Tx

__all__ = ["TaskStates"]

MAX_STATE_CHARS = 64 * 1024


class TaskStates:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, task: str, owner: str, state: str, *, ttl: float) -> bool:
        """Write the task's state for ``ttl`` seconds; False when the task belongs to another owner."""
        if len(state) > MAX_STATE_CHARS:
            raise ValueError(f"a task's state is at most {MAX_STATE_CHARS} characters")
        now = self._db.now_ms()

        async def body(tx: Tx) -> int:
            return await tx.execute(
                "INSERT INTO task_state (task, owner, state, expires_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (task) DO UPDATE SET owner = excluded.owner, state = excluded.state, "
                "expires_ms = excluded.expires_ms "
                "WHERE task_state.owner = excluded.owner OR task_state.expires_ms <= ?",
                (task, owner, state, now + int(ttl * 1000), now),
            )

        return await self._db.run(body) == 1

    async def get(self, task: str, owner: str) -> str | None:
        found = await self._db.run(
            lambda tx: tx.rows(
                "SELECT state FROM task_state WHERE task = ? AND owner = ? AND expires_ms > ?",
                (task, owner, self._db.now_ms()),
            )
        )
        return str(found[0][0]) if found else None

    async def remove(self, task: str, owner: str) -> None:
        await self._db.run(
            lambda tx: tx.execute("DELETE FROM task_state WHERE task = ? AND owner = ?", (task, owner))
        )

    async def prune(self) -> int:
        now = self._db.now_ms()
        return await self._db.run(
            lambda tx: tx.execute("DELETE FROM task_state WHERE expires_ms <= ?", (now,))
        )
