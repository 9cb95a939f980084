"""Replica heartbeats: which processes of the server are alive, as the store sees it.

Each process renews its row every ``heartbeat`` seconds, promising to be alive until
``replica_ttl`` seconds later; one write per replica, not per call. A row not renewed in time
belongs to a process that died (or lost the store): its open calls are adopted by the sweeper and
its sessions stop counting. Times come from each replica's clock: keep the TTL far above the clock
skew between hosts (seconds, with NTP).
"""

from __future__ import annotations

from .database import Database
from .engine import Tx

__all__ = ["Replicas"]


class Replicas:
    def __init__(self, db: Database, *, ttl: float) -> None:
        self._db = db
        self._ttl_ms = int(ttl * 1000)
        self._started_ms = db.now_ms()

    async def beat(self) -> None:
        """This replica is alive for one more TTL."""
        now = self._db.now_ms()
        await self._db.run(
            lambda tx: tx.execute(
                "INSERT INTO replicas (owner, started_ms, alive_until_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (owner) DO UPDATE SET alive_until_ms = excluded.alive_until_ms",
                (self._db.replica, self._started_ms, now + self._ttl_ms),
            )
        )

    async def leave(self) -> None:
        """A clean stop: the row goes, so what this replica left open is adopted at once."""
        await self._db.run(lambda tx: tx.execute("DELETE FROM replicas WHERE owner = ?", (self._db.replica,)))

    async def alive(self) -> list[str]:
        """The replicas alive now (their names), oldest first."""
        rows = await self._db.run(
            lambda tx: tx.rows(
                "SELECT owner FROM replicas WHERE alive_until_ms >= ? ORDER BY started_ms, owner",
                (self._db.now_ms(),),
            )
        )
        return [str(owner) for (owner,) in rows]

    async def prune(self, older_than: float) -> int:
        """Forget replicas dead for more than ``older_than`` seconds."""
        cutoff = self._db.now_ms() - int(older_than * 1000)

        async def body(tx: Tx) -> int:
            return await tx.execute("DELETE FROM replicas WHERE alive_until_ms < ?", (cutoff,))

        return await self._db.run(body)
