"""The store's gateway: every transaction goes through here, and here the store is up or down.

When the engine cannot reach its database (connection refused or lost, no connection from the pool
in time), the store is *down*: from then on every transaction is refused at once with
:class:`~atlas_image_mcp.errors.StoreUnavailableError`, without touching the engine, so a paid call
answers in no time and sends nothing. A background task probes the database with a fresh
connection (after ``retry`` seconds, doubling up to ``retry_max``); when it answers, the schema is
migrated if it never was, and the store is *up* again. Nothing has to be restarted.

The clock is wall-clock Unix time (days, hours and heartbeats must mean the same on every replica
and after a restart), injectable so tests can move it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import LedgerError, StoreUnavailableError
from .batching import Batcher
from .engine import Body, Engine, Tx, Unreachable
from .location import Location
from .schema import migrate

__all__ = ["Database", "StoreStatus"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class StoreStatus:
    """What ``/readyz`` shows about the store (nothing secret: the URL has no password)."""

    engine: str
    where: str
    up: bool
    #: Unix time the store was found unreachable (None while up).
    down_since: float | None
    #: Why it is down, in a few words (None while up).
    reason: str | None
    #: The schema version in use (0: not migrated yet, the store was never reached).
    schema: int
    #: This process's name in the store (its heartbeat row).
    replica: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "where": self.where,
            "up": self.up,
            "down_since": self.down_since,
            "reason": self.reason,
            "schema": self.schema,
            "replica": self.replica,
        }


@dataclass(frozen=True)
class _Outcome:
    """One body's result in a shared transaction, or the error it ended with."""

    value: Any


class Database:
    """The engine behind the up/down state. ``replica``: this process's name in the store."""

    def __init__(
        self,
        engine: Engine,
        location: Location,
        *,
        clock: Callable[[], float],
        replica: str,
        retry: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self.engine = engine
        self.location = location
        self.replica = replica
        self._clock = clock
        self._retry, self._retry_max = retry
        self._schema = 0
        self._down_since: float | None = None
        self._reason: str | None = None
        self._up = asyncio.Event()
        self._up_since = 0.0
        self._recovery: asyncio.Task[None] | None = None
        self._closed = False
        #: Called (on the event loop) each time the store comes back after being down.
        self.on_up: Callable[[], None] | None = None
        self._together: Batcher[Body[Any], _Outcome] = Batcher(self._run_all, max_batch=64)

    # --- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the engine and migrate. An unreachable database leaves the store down (it
        recovers by itself); a store newer than this release, or a file that cannot be opened,
        raises ``LedgerError``."""
        try:
            await self.engine.start()
            self._schema = await migrate(self.engine, self.now_ms())
        except Unreachable as exc:
            self._went_down(str(exc))
            return
        self._came_up()

    async def close(self) -> None:
        await self._together.drained()
        self._closed = True
        if self._recovery is not None:
            self._recovery.cancel()
            try:
                await self._recovery
            except asyncio.CancelledError:
                pass
            self._recovery = None
        await self.engine.close()

    # --- transactions -------------------------------------------------------------------------

    async def run(self, body: Body[T]) -> T:
        """Run ``body`` in one transaction; refused at once while the store is down."""
        self.require_up()
        try:
            return await self.engine.transaction(body)
        except Unreachable as exc:
            self._went_down(str(exc))
            raise self._unavailable() from None

    async def run_together(self, body: Body[T]) -> T:
        """:meth:`run`, but concurrent calls share one transaction where the engine gains from it.

        PostgreSQL: the bodies waiting meanwhile run one after the other in one transaction on one
        connection (one commit, one connection from the pool, instead of one each); if one of them
        fails, each runs again on its own, so only that one fails. SQLite's writer thread already
        merges concurrent transactions: there it is :meth:`run`.
        """
        if self.engine.name == "sqlite":
            return await self.run(body)
        self.require_up()
        outcome = await self._together.submit(body)
        if isinstance(outcome.value, BaseException):
            raise outcome.value
        result: T = outcome.value
        return result

    async def _run_all(self, bodies: list[Body[Any]]) -> list[_Outcome]:
        async def all_of(tx: Tx) -> list[Any]:
            return [await body(tx) for body in bodies]

        try:
            return [_Outcome(value) for value in await self.run(all_of)]
        except StoreUnavailableError:
            raise
        except LedgerError as exc:
            if len(bodies) == 1:
                return [_Outcome(exc)]
        outcomes = []
        for body in bodies:  # one of them failed the whole transaction: each on its own
            try:
                outcomes.append(_Outcome(await self.run(body)))
            except StoreUnavailableError:
                raise
            except LedgerError as exc:
                outcomes.append(_Outcome(exc))
        return outcomes

    def require_up(self) -> None:
        """Raise StoreUnavailableError now if the store is down (before anything is sent)."""
        if not self._up.is_set():
            raise self._unavailable()

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- the state ----------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up.is_set()

    @property
    def up_since(self) -> float:
        """Unix time the store was last found reachable (0 while down)."""
        return self._up_since if self.up else 0.0

    async def wait_up(self) -> None:
        """Return once the store is up (at once if it is)."""
        await self._up.wait()

    def status(self) -> StoreStatus:
        return StoreStatus(
            engine=self.engine.name,
            where=self.location.shown,
            up=self.up,
            down_since=self._down_since,
            reason=self._reason,
            schema=self._schema,
            replica=self.replica,
        )

    def _unavailable(self) -> StoreUnavailableError:
        return StoreUnavailableError(
            self.location.shown,
            self._reason or "not reached yet",
            down_since=self._down_since if self._down_since is not None else self._clock(),
        )

    def _went_down(self, reason: str) -> None:
        if self._down_since is None:
            self._down_since = self._clock()
            logger.warning("store %s unreachable (%s): paid calls are refused until it returns",
                           self.location.shown, reason)  # fmt: skip
        self._reason = reason
        self._up.clear()
        if not self._closed and (self._recovery is None or self._recovery.done()):
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    def _came_up(self) -> None:
        returned = self._down_since is not None
        if returned:
            logger.warning("store %s reachable again", self.location.shown)
        self._down_since = None
        self._reason = None
        self._up_since = self._clock()
        self._up.set()
        if returned and self.on_up is not None:
            self.on_up()

    async def _recover(self) -> None:
        delay = self._retry
        while not self._closed:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)
            try:
                await self.engine.probe()
                await self.engine.recovered()
                if self._schema == 0:
                    self._schema = await migrate(self.engine, self.now_ms())
            except Unreachable as exc:
                self._reason = str(exc)
                continue
            except Exception:  # a store that came back newer than this release: stay down, say why
                logger.exception("store %s is reachable but cannot be used", self.location.shown)
                self._reason = "reachable, but its schema cannot be used (see the log)"
                continue
            self._came_up()
            return
