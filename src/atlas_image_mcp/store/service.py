"""The store as the server uses it: opened once per process, its parts, and its upkeep.

:func:`open_store` picks the engine for a :class:`~.location.Location` (PostgreSQL's driver is
imported only then), migrates, writes this process's first heartbeat and starts the upkeep: every
``heartbeat`` seconds it renews the heartbeat, writes the prediction ids that could not be recorded
while the store was down, runs a round of the sweeper (once one is watching) and, now and then,
drops old rows. :meth:`Store.close` stops it and removes the heartbeat, so the calls this process
leaves open are adopted by another replica at once.

Everything that belongs to someone is keyed by opaque names the server gives: a *bucket* (whose
money a call spends) and an *owner* (whose pictures, sessions and tasks these are).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

from ..errors import LedgerError
from ..redact import register_secret
from .database import Database, StoreStatus
from .engine import Engine
from .keys import LinkedKeys
from .location import Location
from .options import StoreOptions
from .pictures import Pictures
from .replicas import Replicas
from .sessions import Sessions
from .spend import Spend
from .sweeper import Lookup, Sweeper
from .taskstate import TaskStates

__all__ = ["Store", "open_store"]

logger = logging.getLogger(__name__)


class Store:
    """One process's view of the store. Build it with :func:`open_store`."""

    def __init__(self, db: Database, options: StoreOptions) -> None:
        self.db = db
        self.options = options
        self.spend = Spend(db, max_batch=options.max_batch)
        self.pictures = Pictures(db, per_owner=options.pictures_per_owner, scopes=options.picture_scopes)
        self.keys = LinkedKeys(db)
        self.tasks = TaskStates(db)
        self.sessions = Sessions(db)
        self.replicas = Replicas(db, ttl=options.replica_ttl)
        self.sweeper: Sweeper | None = None
        self._upkeep: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._soon: set[asyncio.Task[None]] = set()
        db.on_up = self._back  # a heartbeat (and the prediction ids kept meanwhile) at once

    @property
    def location(self) -> Location:
        return self.db.location

    @property
    def replica(self) -> str:
        """This process's name in the store."""
        return self.db.replica

    def ready(self) -> StoreStatus:
        """The store's state for ``/readyz``: up or down (since when, why), schema, replica."""
        return self.db.status()

    def watch(self, lookup: Lookup) -> None:
        """Settle the calls of dead replicas by asking Atlas through ``lookup`` (see the sweeper)."""
        self.sweeper = Sweeper(self.db, lookup, self.options.sweep)

    async def start(self) -> None:
        await self.db.open()
        if self.db.up:
            await self.upkeep()
        if self.options.heartbeat > 0:
            self._upkeep = asyncio.get_running_loop().create_task(self._keep_up())

    async def upkeep(self) -> None:
        """One round of upkeep (the background task runs it every ``heartbeat`` seconds)."""
        if not self.db.up:
            return
        await self.replicas.beat()
        await self.spend.flush()
        now = time.monotonic()
        if self._pruned_at == 0.0 or now - self._pruned_at >= self.options.prune_every:
            self._pruned_at = now
            await self.prune()
        # After the store was down, give every replica one heartbeat to renew its row before
        # judging who is dead, or live replicas' calls would be adopted.
        settled_in = self.db.up_since + 2 * self.options.heartbeat
        if self.sweeper is not None and self._clock_s() >= settled_in:
            await self.sweeper.sweep()

    async def prune(self) -> None:
        """Drop rows past their time: old settled calls, stale pictures, expired tasks and sessions."""
        await self.spend.prune(self.options.keep_days)
        await self.pictures.prune(self.options.pictures_keep_days)
        await self.tasks.prune()
        await self.sessions.prune()
        await self.replicas.prune(older_than=max(self.options.replica_ttl * 10, 3600.0))

    def _back(self) -> None:
        task = asyncio.get_running_loop().create_task(self._quietly())
        self._soon.add(task)
        task.add_done_callback(self._soon.discard)

    async def _quietly(self) -> None:
        try:
            await self.upkeep()
        except LedgerError as exc:  # down again: the next recovery tries again
            logger.debug("store upkeep after recovery skipped: %s", type(exc).__name__)

    async def close(self) -> None:
        for task in list(self._soon):
            task.cancel()
        await asyncio.gather(*self._soon, return_exceptions=True)
        if self._upkeep is not None:
            self._upkeep.cancel()
            try:
                await self._upkeep
            except asyncio.CancelledError:
                pass
            self._upkeep = None
        await self.spend.drained()
        if self.db.up:
            try:
                await self.replicas.leave()
            except LedgerError as exc:  # its heartbeat lapses instead
                logger.info("store: heartbeat not removed at stop (%s)", type(exc).__name__)
        await self.db.close()

    def _clock_s(self) -> float:
        return self.db.now_ms() / 1000

    async def _keep_up(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat)
            try:
                await self.upkeep()
            except LedgerError as exc:  # down: the gateway recovers by itself
                logger.debug("store upkeep skipped: %s", type(exc).__name__)
            except Exception:  # a bug must not stop the heartbeat for good
                logger.exception("store upkeep failed")


def engine_for(location: Location, options: StoreOptions) -> Engine:
    """The engine of a location; PostgreSQL's driver is imported here, only when it is named."""
    if location.engine == "postgresql":
        try:
            from .postgres import PostgresEngine
        except ImportError as exc:
            raise LedgerError(
                "The store is a PostgreSQL database, but its driver is not installed: "
                'pip install "atlas-image-mcp[postgres]".'
            ) from exc
        return PostgresEngine(location.conninfo, options.pool)
    from .sqlite import SqliteEngine

    return SqliteEngine(location.path, busy_seconds=options.busy_seconds, max_batch=options.max_batch)


async def open_store(
    location: Location,
    options: StoreOptions | None = None,
    *,
    clock: Callable[[], float] = time.time,
    engine: Engine | None = None,
) -> Store:
    """Open the store at ``location`` and start its upkeep; close it with :meth:`Store.close`.

    A database that cannot be reached leaves the store down (paid calls are refused) until it
    answers; a store newer than this release, or a file that cannot be opened, raises LedgerError.
    ``engine``: one built by hand (tests).
    """
    opts = options or StoreOptions()
    for secret in location.secrets():
        register_secret(secret, permanent=True)
    db = Database(
        engine or engine_for(location, opts),
        location,
        clock=clock,
        replica=uuid.uuid4().hex,
        retry=(opts.retry, opts.retry_max),
    )
    store = Store(db, opts)
    try:
        await store.start()
    except BaseException:
        await db.close()
        raise
    return store
