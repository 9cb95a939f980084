"""The PostgreSQL engine: psycopg 3 and a bounded connection pool (the ``postgres`` extra).

Imported only when the store setting names a ``postgresql://`` URL. Everything is bounded:

* the pool holds ``min_size`` to ``max_size`` connections; a transaction waits at most
  ``pool_timeout`` seconds for one (then a fresh connection is tried: if it cannot be made the
  store counts as unreachable, else it is busy and this call is refused), and at most
  ``max_waiting`` transactions wait at once (then the store is busy);
* each connection asks the server for ``lock_timeout``, ``statement_timeout`` and
  ``idle_in_transaction_session_timeout``, so no backend waits or holds a lock for long after its
  client is gone, and each connection is checked when it leaves the pool, so connections broken by
  a restart of the server are replaced instead of failing a call;
* a whole transaction gets at most ``transaction_timeout`` seconds.

Transactions run at READ COMMITTED (PostgreSQL's default): each statement sees what was committed
before it began. The store's reservation relies on that: it first locks its bucket's row (waiting
for any transaction holding it to commit), then reads the sums in a second statement.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout, TooManyRequests

from ..errors import LedgerError
from .engine import Body, Param, Row, Unreachable
from .location import Engine as EngineName
from .options import PoolOptions

__all__ = ["PostgresEngine"]

T = TypeVar("T")
#: pg_advisory_xact_lock key held while migrating ("atlas" in ASCII): replicas that start together
#: migrate one after the other.
MIGRATION_LOCK = 0x61746C6173
_APPLICATION = "atlas-image-mcp"


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """The store's SQL with psycopg's placeholders (our SQL holds no literal ``?`` or ``%``)."""
    return sql.replace("?", "%s")


class _Tx:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        cursor = await self._conn.execute(_pg(sql), params)
        return cursor.rowcount

    async def rows(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        cursor = await self._conn.execute(_pg(sql), params)
        return await cursor.fetchall()


class PostgresEngine:
    """PostgreSQL at ``conninfo`` (a libpq URL; a secret: never shown)."""

    name: EngineName = "postgresql"

    def __init__(self, conninfo: str, options: PoolOptions | None = None) -> None:
        self._conninfo = conninfo
        self.options = options or PoolOptions()
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    def _connection_kwargs(self) -> dict[str, Any]:
        o = self.options
        return {
            "autocommit": True,  # transactions are explicit: conn.transaction()
            "connect_timeout": max(1, round(o.connect_timeout)),
            "application_name": _APPLICATION,
            "options": (
                f"-c lock_timeout={o.lock_timeout_ms} -c statement_timeout={o.statement_timeout_ms} "
                f"-c idle_in_transaction_session_timeout={o.idle_in_transaction_ms}"
            ),
        }

    async def start(self) -> None:
        self._pool = await self._open_pool()

    async def recovered(self) -> None:
        """A new pool: the old one may be waiting out a long back-off before it reconnects."""
        old, self._pool = self._pool, await self._open_pool()
        if old is not None:
            await old.close(timeout=1.0)

    async def _open_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        o = self.options
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self._conninfo,
            min_size=o.min_size,
            max_size=o.max_size,
            timeout=o.pool_timeout,
            max_waiting=o.max_waiting,
            max_idle=300.0,
            max_lifetime=3600.0,
            reconnect_timeout=60.0,
            check=AsyncConnectionPool.check_connection,
            kwargs=self._connection_kwargs(),
            open=False,
            name="atlas-store",
        )
        await pool.open(wait=False)
        return pool

    async def transaction(self, body: Body[T]) -> T:
        return await self._run(body, lock=False)

    async def exclusive(self, body: Body[T]) -> T:
        return await self._run(body, lock=True)

    async def probe(self) -> None:
        """A fresh connection (not the pool's): does the server answer now?"""
        try:
            with anyio.fail_after(self.options.connect_timeout + 1):
                conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._connection_kwargs())
                try:
                    await conn.execute("SELECT 1")
                finally:
                    await conn.close()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise Unreachable(_reason(exc)) from None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close(timeout=5.0)
            self._pool = None

    async def _run(self, body: Body[T], *, lock: bool) -> T:
        if self._pool is None:
            raise LedgerError("The store is closed (the server is stopping), so nothing was sent.")
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            with anyio.fail_after(self.options.transaction_timeout):
                async with self._pool.connection() as conn, conn.transaction():
                    tx = _Tx(conn)
                    if lock:
                        await tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
                    return await body(tx)
        except TooManyRequests as exc:
            raise LedgerError(
                "The store has too many calls waiting for it, so nothing was sent. Try again in a moment."
            ) from exc
        except PoolTimeout as exc:
            # Every connection busy, or none can be made? A fresh connection tells (bounded).
            await self.probe()  # raises Unreachable when the database does not answer
            raise LedgerError(
                f"The store is busy (no free connection within {self.options.pool_timeout:g} s), so "
                "nothing was sent. Try again in a moment."
            ) from exc
        except TimeoutError as exc:
            raise Unreachable(f"no answer within {self.options.transaction_timeout:g} s") from exc
        except psycopg.Error as exc:
            if conn is None or conn.broken or conn.closed:
                raise Unreachable(_reason(exc)) from exc
            raise _failure(exc) from exc


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong (libpq's messages carry no password)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text and text[0] else type(exc).__name__


def _failure(exc: psycopg.Error) -> LedgerError:
    if isinstance(exc, (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled)):
        return LedgerError(
            "The store is busy (a lock or a statement took too long), so nothing was sent. Try again "
            "in a moment."
        )
    return LedgerError(f"The store could not run a statement ({_reason(exc)}), so nothing was sent.")
