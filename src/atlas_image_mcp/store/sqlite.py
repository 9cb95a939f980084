"""The SQLite engine: one connection, owned by one writer thread, fed by a queue.

A caller puts its transaction body on the queue with a future and awaits the future: that is the
whole cost of a call on the event loop (no worker-thread hop per call). The writer thread takes
whatever has queued up meanwhile (at most ``max_batch`` bodies) and runs it as ONE
``BEGIN IMMEDIATE ... COMMIT``, each body inside its own savepoint, so one body that fails rolls
back only its own statements. The futures are resolved after the COMMIT: a caller learns its answer
only once it is on disk (WAL, ``synchronous=NORMAL``: it survives the process dying; a power cut
may lose the last commits).

``BEGIN IMMEDIATE`` takes the file's write lock, so writers of every process that shares the file
run one at a time: what a transaction reads cannot change before it commits. A file lives on a
local disk (SQLite's locks do not hold on network file systems). Without a path the database is in
this process's memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import LedgerError
from ..settings import env_name
from .engine import Body, Param, Row, drive
from .location import Engine as EngineName

__all__ = ["SqliteEngine"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: ``INSERT ... ON CONFLICT`` (UPSERT) arrived in SQLite 3.24.
_OLDEST = (3, 24, 0)


class _Tx:
    """Statements on the writer thread's connection (they never suspend)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    async def rows(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()


@dataclass
class _Job:
    body: Body[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    alone: bool = False


class SqliteEngine:
    """SQLite through one writer thread. ``path`` None: in memory, this process only."""

    name: EngineName = "sqlite"

    def __init__(self, path: Path | None, *, busy_seconds: float, max_batch: int = 64) -> None:
        self.path = path
        self._busy = busy_seconds
        self._max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopped: asyncio.Future[None] | None = None

    # --- the event loop's side ------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, args=(loop, ready), name="atlas-store-sqlite", daemon=True
        )
        self._thread.start()
        await ready

    async def transaction(self, body: Body[T]) -> T:
        return await self._submit(body, alone=False)

    async def exclusive(self, body: Body[T]) -> T:
        return await self._submit(body, alone=True)

    async def probe(self) -> None:
        async def ping(tx: Any) -> None:
            await tx.rows("SELECT 1")

        await self._submit(ping, alone=False)

    async def recovered(self) -> None:
        return None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None and self._thread.is_alive() and self._stopped is not None:
            self._queue.put(None)
            await self._stopped

    async def _submit(self, body: Body[T], *, alone: bool) -> T:
        if self._closed or self._thread is None:
            raise LedgerError("The store is closed (the server is stopping), so nothing was sent.")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(body, future, loop, alone))
        return await future

    # --- the writer thread ----------------------------------------------------------------

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except LedgerError as exc:
            _resolve(loop, ready, exc, ok=False)
            _resolve(loop, self._stopped, None, ok=True)
            return
        _resolve(loop, ready, None, ok=True)
        carry: _Job | None = None
        try:
            while True:
                job = carry if carry is not None else self._queue.get()
                carry = None
                if job is None:
                    break
                batch = [job]
                while not job.alone and len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None or nxt.alone:
                        carry = nxt
                        if nxt is None:
                            self._queue.put(None)  # stop after this batch
                        break
                    batch.append(nxt)
                self._run(conn, batch)
        finally:
            conn.close()
            while True:  # anything queued after the stop: refused
                try:
                    left = self._queue.get_nowait()
                except queue.Empty:
                    break
                if left is not None:
                    _resolve(left.loop, left.future, LedgerError("The store was closed."), ok=False)
            _resolve(loop, self._stopped, None, ok=True)

    def _run(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        tx = _Tx(conn)
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")  # the file's write lock: other writers wait
        except sqlite3.Error as exc:
            failure = self._failure(exc)
            _deliver(batch, [(False, failure)] * len(batch))
            return
        single = len(batch) == 1
        lost: LedgerError | None = None  # the transaction itself failed: nothing in it holds
        for job in batch:
            if lost is not None:
                outcomes.append((False, lost))
                continue
            try:
                if not single:
                    conn.execute("SAVEPOINT job")
                value = drive(job.body, tx)
                if not single:
                    conn.execute("RELEASE job")
            except Exception as exc:
                outcomes.append((False, self._failure(exc) if isinstance(exc, sqlite3.Error) else exc))
                try:
                    if single:
                        conn.rollback()
                    elif conn.in_transaction:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                    else:  # SQLite rolled the whole transaction back (disk full, I/O error)
                        lost = outcomes[-1][1] if isinstance(outcomes[-1][1], LedgerError) else None
                        lost = lost or LedgerError(
                            "The store's transaction was rolled back; nothing was kept."
                        )
                except sqlite3.Error as undo:
                    lost = self._failure(undo)
                continue
            outcomes.append((True, value))
        if lost is not None:
            if conn.in_transaction:
                conn.rollback()
            outcomes = [(False, lost)] * len(batch)
        elif conn.in_transaction:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.rollback()
                outcomes = [(False, self._failure(exc))] * len(batch)
        _deliver(batch, outcomes)

    def _connect(self) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < _OLDEST:
            raise LedgerError(
                f"This Python links SQLite {sqlite3.sqlite_version}, older than the 3.24 the store needs. "
                "Use a Python built with a newer SQLite, or a PostgreSQL store "
                f"({env_name('database_url')})."
            )
        try:
            if self.path is None:
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # private from the start
                conn = sqlite3.connect(
                    str(self.path), timeout=self._busy, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(
                f"The store file {self.path} cannot be opened ({exc}), so budgets cannot be kept. Set "
                f"{env_name('state_dir')} to a writable folder on a local disk, or "
                f"{env_name('database_url')} to another store."
            ) from exc
        return conn

    def _failure(self, exc: sqlite3.Error) -> LedgerError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return LedgerError(
                "The store is busy (another process held its file too long), so nothing was sent. "
                "Try again in a moment."
            )
        where = str(self.path) if self.path is not None else "in memory"
        return LedgerError(
            f"The store ({where}) could not be read or written ({text}), so nothing was sent. Check "
            f"that its folder is on a local disk with free space, or set {env_name('database_url')} "
            "to another store."
        )


def _resolve(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any] | None, value: Any, *, ok: bool
) -> None:
    """Hand one result to the event loop that waits for it (from the writer thread)."""
    if future is not None:
        _post(loop, [(future, ok, value)])


def _deliver(batch: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
    """Hand a batch's results over: one wake-up of each waiting event loop, not one per result."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for job, (ok, value) in zip(batch, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, ok, value))
    for loop, results in by_loop.items():
        _post(loop, results)


def _post(loop: asyncio.AbstractEventLoop, results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    def settle() -> None:
        for future, ok, value in results:
            if future.done():  # the caller gave up (cancelled): nobody reads it
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody waits any more
        logger.debug("store results dropped: their event loop is closed")
