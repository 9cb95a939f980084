"""Admission across replicas: how many sessions each owner holds open, whichever replica holds them.

A session (or SSE stream) is admitted with a token, for an owner (a user or a key's digest), by
the replica that serves it, until it expires unless renewed. :meth:`Sessions.admit` counts the
owner's live sessions and adds one only below the limit, in one transaction that holds the
owner's lock row, so two replicas admitting the owner's last session at once cannot both succeed.
Sessions held by a replica whose heartbeat has lapsed (it died) no longer count: a crash does not
lock its users out until their sessions expire.
"""

from __future__ import annotations

from collections.abc import Sequence

from .database import Database
from .engine import Tx, placeholders

__all__ = ["Sessions"]

_LIVE = (
    "SELECT COUNT(*) FROM sessions s JOIN replicas r ON r.owner = s.replica "
    "WHERE s.owner = ? AND s.token <> ? AND s.expires_ms > ? AND r.alive_until_ms >= ?"
)


class Sessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def admit(self, owner: str, token: str, *, limit: int, ttl: float) -> bool:
        """Admit the session ``token`` of ``owner`` for ``ttl`` seconds if it holds fewer than
        ``limit`` others (a token already admitted is renewed)."""
        now = self._db.now_ms()

        async def body(tx: Tx) -> bool:
            await tx.execute(
                "INSERT INTO session_owners (owner, touched_ms) VALUES (?, ?) "
                "ON CONFLICT (owner) DO UPDATE SET touched_ms = excluded.touched_ms",
                (owner, now),
            )
            ((live,),) = await tx.rows(_LIVE, (owner, token, now, now))
            if int(live) >= limit:
                return False
            await tx.execute(
                "INSERT INTO sessions (token, owner, replica, expires_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (token) DO UPDATE SET owner = excluded.owner, replica = excluded.replica, "
                "expires_ms = excluded.expires_ms",
                (token, owner, self._db.replica, now + int(ttl * 1000)),
            )
            return True

        return await self._db.run(body)

    async def renew(self, token: str, *, ttl: float) -> bool:
        """Keep an admitted session alive for ``ttl`` more seconds; False when it is unknown."""

        async def body(tx: Tx) -> int:
            return await tx.execute(
                "UPDATE sessions SET expires_ms = ? WHERE token = ?",
                (self._db.now_ms() + int(ttl * 1000), token),
            )

        return await self._db.run(body) == 1

    async def renew_held(self, tokens: Sequence[str], *, ttl: float) -> int:
        """Keep these sessions of this replica alive for ``ttl`` more seconds, in one statement per
        hundred; how many it found."""
        expires = self._db.now_ms() + int(ttl * 1000)
        listed = list(dict.fromkeys(tokens))

        async def body(tx: Tx) -> int:
            found = 0
            for start in range(0, len(listed), 100):
                chunk = listed[start : start + 100]
                found += await tx.execute(
                    "UPDATE sessions SET expires_ms = ? WHERE replica = ? "
                    f"AND token IN ({placeholders(len(chunk))})",
                    [expires, self._db.replica, *chunk],
                )
            return found

        return await self._db.run(body) if listed else 0

    async def leave(self, token: str) -> None:
        await self._db.run(lambda tx: tx.execute("DELETE FROM sessions WHERE token = ?", (token,)))

    async def live(self, owner: str) -> int:
        """The owner's sessions that count now."""
        now = self._db.now_ms()
        ((count,),) = await self._db.run(lambda tx: tx.rows(_LIVE, (owner, "", now, now)))
        return int(count)

    async def prune(self) -> int:
        """Drop expired sessions and those of replicas that are gone."""
        now = self._db.now_ms()

        async def body(tx: Tx) -> int:
            gone = await tx.execute("DELETE FROM sessions WHERE expires_ms <= ?", (now,))
            gone += await tx.execute(
                "DELETE FROM sessions WHERE replica NOT IN "
                "(SELECT owner FROM replicas WHERE alive_until_ms >= ?)",
                (now,),
            )
            await tx.execute(
                "DELETE FROM session_owners WHERE touched_ms < ? "
                "AND owner NOT IN (SELECT owner FROM sessions)",
                (now,),
            )
            return gone

        return await self._db.run(body)
