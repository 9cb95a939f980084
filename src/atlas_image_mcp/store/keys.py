"""Linked Atlas keys on the store: each account's key, sealed by the server, shared by every replica.

The store never sees a key in clear: it keeps what the server sealed (an authenticated encryption
of the key, as text) and a digest to recognise the key by. Sealing and opening are the server's
business; the store only keeps, returns and forgets the sealed text.
"""

from __future__ import annotations

from dataclasses import dataclass

from .database import Database
from .engine import Tx

__all__ = ["LinkedKey", "LinkedKeys"]

_MAX_SEALED = 4096  # a sealed key is a few hundred characters; more is not a key


@dataclass(frozen=True)
class LinkedKey:
    subject: str
    #: The key as the server sealed it (text); only the server can open it.
    sealed: str
    #: A digest of the key (never the key), to find the subject a key is linked to.
    digest: str
    created_ms: int
    updated_ms: int


class LinkedKeys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, subject: str, sealed: str, digest: str) -> None:
        """Link (or replace) the subject's key."""
        if len(sealed) > _MAX_SEALED:
            raise ValueError(f"a sealed key is at most {_MAX_SEALED} characters")
        now = self._db.now_ms()
        await self._db.run(
            lambda tx: tx.execute(
                "INSERT INTO linked_keys (subject, sealed, digest, created_ms, updated_ms) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (subject) DO UPDATE SET sealed = excluded.sealed, digest = excluded.digest, "
                "updated_ms = excluded.updated_ms",
                (subject, sealed, digest, now, now),
            )
        )

    async def get(self, subject: str) -> LinkedKey | None:
        found = await self._db.run(
            lambda tx: tx.rows(
                "SELECT subject, sealed, digest, created_ms, updated_ms FROM linked_keys WHERE subject = ?",
                (subject,),
            )
        )
        if not found:
            return None
        subject_, sealed, digest, created, updated = found[0]
        return LinkedKey(str(subject_), str(sealed), str(digest), int(created), int(updated))

    async def subjects_of(self, digest: str) -> list[str]:
        """The subjects a key (by its digest) is linked to."""
        rows = await self._db.run(
            lambda tx: tx.rows("SELECT subject FROM linked_keys WHERE digest = ? ORDER BY subject", (digest,))
        )
        return [str(subject) for (subject,) in rows]

    async def remove(self, subject: str) -> bool:
        """Unlink the subject's key; whether there was one."""

        async def body(tx: Tx) -> int:
            return await tx.execute("DELETE FROM linked_keys WHERE subject = ?", (subject,))

        return await self._db.run(body) == 1
